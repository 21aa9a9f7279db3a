"""postman_collection.json, run by newman against the running service on each stack.

The sample CSV's image URLs point at 127.0.0.1:9000 (for a person trying it by hand);
here the same images are served by the test origin and the CSV is rewritten to match.
"""

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.harness.origin import Origin
from tests.harness.service import ROOT, Service

pytestmark = pytest.mark.e2e

SAMPLE_PREFIX = "http://127.0.0.1:9000/"


def test_the_postman_collection_passes_under_newman(
    service: Service, origin: Origin, tmp_path: Path
) -> None:
    # Given the sample images on the origin and the sample CSV pointing at them
    for image in (ROOT / "postman" / "images").iterdir():
        origin.add(f"/postman/{image.name}", image.read_bytes())
    sample = (ROOT / "postman" / "sample.csv").read_text()
    assert SAMPLE_PREFIX in sample
    (tmp_path / "postman").mkdir()
    (tmp_path / "postman" / "sample.csv").write_text(
        sample.replace(SAMPLE_PREFIX, f"{origin.base_url}/postman/")
    )
    report = tmp_path / "report.json"
    hook = f"/postman/hook-{uuid.uuid4().hex}"  # the origin serves every service of the run

    # When newman runs the collection against the service
    result = subprocess.run(
        [
            str(ROOT / "node_modules" / ".bin" / "newman"),
            "run",
            str(ROOT / "postman_collection.json"),
            "--working-dir",
            str(tmp_path),
            "--env-var",
            f"base_url={service.base_url}",
            "--env-var",
            f"api_key={service.api_key}",
            "--env-var",
            f"receiver_url={origin.base_url}{hook}",
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(report),
            "--bail",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # Then every request ran and every assertion held
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(report.read_text())["run"]
    assert run["stats"]["assertions"]["failed"] == 0
    assert run["stats"]["requests"]["failed"] == 0
    # And the test event reached the receiver (the origin, allowed for webhooks)
    assert len(origin.posts_to(hook)) == 1
    ran = list(dict.fromkeys(execution["item"]["name"] for execution in run["executions"]))
    assert ran == [
        "Upload without a key",
        "Upload without a file",
        "Upload the sample CSV",
        "The same upload sent again with its Idempotency-Key",
        "Status until finished",
        "Status again with its ETag",
        "Products",
        "Products with a failed image",
        "Output CSV",
        "Cancel the finished request",
        "Retry with nothing failed",
        "Re-run at quality 30 as WebP",
        "Status of the re-run",
        "Re-run at the perceptual target medium",
        "Status of the perceptual re-run until finished",
        "The account's requests, newest first",
        "Delete the first request's results",
        "Status of the deleted request",
        "The deleted request, as the list shows it",
        "Send a test event to a webhook receiver",
        "Status of an unknown request",
    ]
