"""An S3-compatible object store: moto's standalone server on a spare port of 127.0.0.1."""

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

from tests.harness.service import BIN
from tests.support import free_port, wait_until


@dataclass
class ObjectStore:
    """The store's endpoint, with one bucket."""

    endpoint_url: str
    bucket: str = "imgsvc-outputs"

    def service_env(self) -> dict[str, str]:
        return {
            "S3_BUCKET": self.bucket,
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_REGION": "us-east-1",
            "S3_ACCESS_KEY_ID": "tests-only",
            "S3_SECRET_ACCESS_KEY": "tests-only",
            "S3_ADDRESSING_STYLE": "path",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="tests-only",
            aws_secret_access_key="tests-only",
        )

    def keys(self, prefix: str = "") -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for item in listed.get("Contents", [])]


@contextlib.contextmanager
def object_store_serve(workdir: Path) -> Iterator[ObjectStore]:
    """moto's server with the bucket made, until the block ends."""
    port = free_port()
    log = (workdir / "moto.log").open("ab")
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    store = ObjectStore(endpoint_url=f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: _answers(store), timeout=30, what="moto's S3 server to answer")
        store.client().create_bucket(Bucket=store.bucket)
        yield store
    finally:
        process.kill()
        process.wait(timeout=10)


def _answers(store: ObjectStore) -> bool:
    try:
        return urllib3.request("GET", store.endpoint_url, timeout=2, retries=False).status == 200
    except urllib3.exceptions.HTTPError:
        return False
