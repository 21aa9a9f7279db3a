"""A shop's whole journey, through HTTP, against the service running as separate processes
(gunicorn and a Celery worker from the Procfile) on each stack: the embedded default and
PostgreSQL + Redis. Images come from a real HTTP origin on 127.0.0.1."""

import csv
import io
import uuid
from datetime import datetime, timedelta

import pytest
from PIL import Image
from standardwebhooks.webhooks import Webhook

from tests.harness.origin import Origin
from tests.harness.service import Service
from tests.support import (
    IJG_Q50_LUMINANCE,
    encoded,
    fetch_bytes,
    get_json,
    multipart_upload,
    photo,
    wait_for_finish,
    wait_until,
)

pytestmark = pytest.mark.e2e


def ijg_table(quality: int) -> list[int]:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(max((value * scale + 50) // 100, 1), 255) for value in IJG_Q50_LUMINANCE]


def unsigned(url: str | None) -> str:
    """An output URL without its query: an object store's presigned URLs are signed anew
    each time they are handed out."""
    return (url or "").split("?", 1)[0]


def test_a_catalogue_is_compressed_and_reported_end_to_end(
    service: Service, origin: Origin
) -> None:
    # Given an origin serving a shop's images, and a CSV that lists them
    run = uuid.uuid4().hex[:8]
    sources = {
        "shoe.jpg": (encoded(photo(800, 600, 1), "JPEG", quality=90), "image/jpeg"),
        "shoe-side.jpg": (encoded(photo(320, 240, 2), "JPEG", quality=90), "image/jpeg"),
        "hat.png": (encoded(photo(300, 200, 3), "PNG"), "image/png"),
        "glass.png": (encoded(transparent_image(), "PNG"), "image/png"),
        "lamp.webp": (encoded(photo(400, 300, 4), "WEBP", quality=90), "image/webp"),
        "page.jpg": (b"<html><body>Not here</body></html>", "text/html"),
    }
    url = {name: origin.add(f"/{run}/{name}", body, kind) for name, (body, kind) in sources.items()}
    url["missing.jpg"] = f"{origin.base_url}/{run}/missing.jpg"
    csv_text = (
        "S. No.,Product Name,Input Image Urls\n"
        f'1,Red shoe,"{url["shoe.jpg"]}, {url["shoe-side.jpg"]}"\n'
        f"2,Blue hat,{url['hat.png']}\n"
        f'3,Glass,"{url["glass.png"]},{url["lamp.webp"]}"\n'
        f'4,=Broken,"{url["page.jpg"]},{url["missing.jpg"]},{url["shoe.jpg"]}"\n'
    )
    webhook = f"{origin.base_url}/{run}/hook"

    # When the shop uploads it
    response = multipart_upload(service.base_url, csv_text, webhook_url=webhook)

    # Then it gets a request id at once, and the request finishes
    assert response.status == 202, response.data
    accepted = response.json()
    request_id = accepted["request_id"]
    assert accepted == {
        "request_id": request_id,
        "message": "CSV uploaded successfully. Processing started.",
        "status_url": f"{service.base_url}/api/status/{request_id}/",
        "total_products": 4,
        "total_images": 8,
    }
    status = wait_for_finish(service.base_url, request_id, timeout=90)
    status_url = accepted["status_url"]
    webhook_state = status.pop("webhook")
    assert status == {
        "request_id": request_id,
        "status": "completed_with_errors",
        "file_name": "products.csv",
        "created_at": status["created_at"],
        "updated_at": status["updated_at"],
        "progress": {"total": 8, "succeeded": 6, "failed": 2, "pending": 0, "cancelled": 0},
        "outputs": {"compressed": 6, "reused": 0},
        "bytes": status["bytes"],
        "settings": {
            "quality": 50,
            "quality_mode": "fixed",
            "target": None,
            "target_score": None,
            "output_format": "same",
            "metadata": "strip",
            "score": False,
        },
        "score": status["score"],
        "output_csv_url": f"{service.base_url}/api/requests/{request_id}/output.csv",
        "products_url": f"{service.base_url}/api/requests/{request_id}/products/",
        "cancel_requested_at": None,
        "source_request_id": None,
        # Kept RETENTION_DAYS (30 by default) after it finished.
        "expires_at": status["expires_at"],
    }
    # Fixed quality: no score by default (IMAGE_SCORE_ALL_MODES)
    assert status["score"] == {"p5": None, "median": None}
    finished = datetime.fromisoformat(status["updated_at"])
    kept = datetime.fromisoformat(status["expires_at"]) - finished
    assert abs(kept - timedelta(days=30)) < timedelta(seconds=5)
    # A URL repeated within the request was downloaded once.
    assert origin.hits[f"/{run}/shoe.jpg"] == 1

    # And every product lists its images in input order, with their outcome
    code, products = get_json(status["products_url"])
    assert code == 200
    assert products["count"] == 4
    assert products["next"] is None
    assert [p["serial_number"] for p in products["results"]] == [1, 2, 3, 4]
    assert [p["product_name"] for p in products["results"]] == [
        "Red shoe",
        "Blue hat",
        "Glass",
        "=Broken",
    ]
    images = [image for product in products["results"] for image in product["images"]]
    assert [image["input_url"] for image in images] == [
        url["shoe.jpg"],
        url["shoe-side.jpg"],
        url["hat.png"],
        url["glass.png"],
        url["lamp.webp"],
        url["page.jpg"],
        url["missing.jpg"],
        url["shoe.jpg"],
    ]
    assert [(image["status"], image["error_code"]) for image in images] == [
        ("succeeded", ""),
        ("succeeded", ""),
        ("succeeded", ""),
        ("succeeded", ""),
        ("succeeded", ""),
        ("failed", "not_an_image"),
        ("failed", "http_404"),
        ("succeeded", ""),
    ]
    assert images[6]["error"] == "The server answered HTTP 404."
    assert images[6]["output_url"] is None
    assert unsigned(images[0]["output_url"]) == unsigned(images[7]["output_url"])
    # The status's bytes are the succeeded images' (a URL used twice counted twice)
    succeeded = [image for image in images if image["status"] == "succeeded"]
    assert status["bytes"] == {
        "input": sum(image["input_bytes"] for image in succeeded),
        "output": sum(image["output_bytes"] for image in succeeded),
    }
    # Output URLs point where the files are: the web's /media/, or the object store.
    for image in images:
        assert image["output_url"] is None or image["output_url"].startswith(service.output_base)

    # And each output is the same picture, smaller, in the promised format and quality
    expected_formats = ["JPEG", "JPEG", "JPEG", "WEBP", "WEBP", None, None, "JPEG"]
    input_names = [
        "shoe.jpg",
        "shoe-side.jpg",
        "hat.png",
        "glass.png",
        "lamp.webp",
        None,
        None,
        "shoe.jpg",
    ]
    for image, expected_format, name in zip(images, expected_formats, input_names, strict=True):
        if expected_format is None or name is None:
            continue
        source_bytes = sources[name][0]
        output_bytes = fetch_bytes(image["output_url"])
        source = Image.open(io.BytesIO(source_bytes))
        output = Image.open(io.BytesIO(output_bytes))
        assert output.format == expected_format, name
        assert output.size == source.size, name
        assert (image["width"], image["height"]) == source.size
        assert image["input_bytes"] == len(source_bytes)
        assert image["output_bytes"] == len(output_bytes)
        if name.endswith(".jpg"):
            assert output.quantization[0] == IJG_Q50_LUMINANCE, name  # type: ignore[attr-defined]
            assert len(output_bytes) < len(source_bytes), name
    glass = Image.open(io.BytesIO(fetch_bytes(images[3]["output_url"])))
    assert glass.mode == "RGBA"
    assert glass.getpixel((0, 0))[3] == 0  # type: ignore[index]

    # And the output CSV pairs every input URL with its output URL, in place
    rows = list(csv.reader(io.StringIO(fetch_bytes(status["output_csv_url"]).decode())))
    assert rows[0] == ["S. No.", "Product Name", "Input Image Urls", "Output Image Urls"]
    assert [row[:2] for row in rows[1:]] == [
        ["1", "Red shoe"],
        ["2", "Blue hat"],
        ["3", "Glass"],
        ["4", "'=Broken"],  # neutralised: a spreadsheet must not run it as a formula
    ]
    per_product = [product["images"] for product in products["results"]]
    for row, product_images in zip(rows[1:], per_product, strict=True):
        assert row[2].split(",") == [image["input_url"] for image in product_images]
        assert [unsigned(url) for url in row[3].split(",")] == [
            unsigned(image["output_url"]) for image in product_images
        ]

    # And the webhook was told, signed, with what the status API says
    assert webhook_state is None or webhook_state["state"] in {"pending", "delivered"}
    posts = wait_until(lambda: origin.posts_to(f"/{run}/hook"), timeout=30, what="the webhook call")
    headers, body = posts[0]
    assert headers["Content-Type"] == "application/json"
    sent = Webhook(service.webhook_secret).verify(body, headers)
    assert sent["request_id"] == request_id
    assert sent["status"] == "completed_with_errors"
    assert sent["progress"] == status["progress"]
    assert sent["output_csv_url"] == status["output_csv_url"]
    delivered = wait_until(
        lambda: (body := get_json(status_url)[1])["webhook"]["state"] == "delivered" and body,
        timeout=30,
        what="the delivery to be recorded",
    )
    assert delivered["webhook"] == {
        "event_id": headers["webhook-id"],
        "state": "delivered",
        "attempts": 1,
        "last_attempt_at": delivered["webhook"]["last_attempt_at"],
        "last_status_code": 204,
        "last_error": None,
        "next_attempt_at": None,
    }


def test_quality_can_be_chosen_per_upload_fixed_or_relative(
    service: Service, origin: Origin
) -> None:
    # Given a JPEG saved at quality 80
    run = uuid.uuid4().hex[:8]
    source = origin.add(f"/{run}/q80.jpg", encoded(photo(400, 300, 5), "JPEG", quality=80))
    csv_text = f"S. No.,Product Name,Input Image Urls\n1,Chair,{source}\n"

    # When it is uploaded once at quality 30, once at half its own quality
    fixed = multipart_upload(service.base_url, csv_text, quality="30").json()["request_id"]
    relative = multipart_upload(service.base_url, csv_text, quality_mode="relative").json()[
        "request_id"
    ]

    # Then each output carries the quantisation table of the quality asked for
    for request_id, expected_quality in ((fixed, 30), (relative, 40)):
        status = wait_for_finish(service.base_url, request_id, timeout=90)
        assert status["status"] == "completed"
        _, products = get_json(status["products_url"])
        image = products["results"][0]["images"][0]
        assert image["quality"] == expected_quality
        assert image["source_quality"] == 80
        output = Image.open(io.BytesIO(fetch_bytes(image["output_url"])))
        assert output.quantization[0] == ijg_table(expected_quality)  # type: ignore[attr-defined]


def test_unknown_or_malformed_request_ids_are_not_found(embedded_service: Service) -> None:
    status, body = get_json(f"{embedded_service.base_url}/api/status/{uuid.uuid4()}/")
    assert (status, body) == (404, {"error": "Request not found.", "code": "not_found"})
    status, body = get_json(f"{embedded_service.base_url}/api/status/not-a-uuid/")
    assert (status, body) == (404, {"error": "Request not found.", "code": "not_found"})


def transparent_image() -> Image.Image:
    image = photo(240, 160, 6).convert("RGBA")
    alpha = Image.new("L", image.size, 255)
    alpha.paste(0, (0, 0, 80, 80))
    image.putalpha(alpha)
    return image


def test_a_webhook_to_a_blocked_address_is_refused_at_upload(
    embedded_service: Service, origin: Origin
) -> None:
    # Given an upload whose webhook points at 127.0.0.2, outside the allowed 127.0.0.1/32
    source = origin.add(f"/{uuid.uuid4().hex}/a.jpg", encoded(photo(64, 48), "JPEG", quality=90))
    csv_text = f"S. No.,Product Name,Input Image Urls\n1,Lamp,{source}\n"
    webhook = f"http://127.0.0.2:{origin.port}/hook"

    # When it is uploaded, then it is refused, saying which field and why, but not where
    # the address leads (a name that resolves to one is refused when the event is sent:
    # tests/processing/test_webhooks.py)
    response = multipart_upload(embedded_service.base_url, csv_text, webhook_url=webhook)
    assert response.status == 400
    assert response.json() == {
        "error": "Invalid input.",
        "code": "invalid_input",
        "details": [{"field": "webhook_url", "message": "The address is not allowed."}],
    }
