"""Hostile and unusual images through the whole service: each case is one product of a
request whose other product is a good image. The case must end with its reason code,
the good image must still be compressed, and the request must finish in bounded time.

The service runs with IMAGE_FETCH_ALLOW_NETWORKS=127.0.0.1/32 (the origin lives there),
a 2 s total deadline per download and 2 attempts for transient failures (conftest.py).
"""

import gzip
import io
import struct
import time
import uuid
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import urllib3
from PIL import Image, ImageCms

from tests.harness.origin import Origin
from tests.harness.service import Service
from tests.support import encoded, get_json, multipart_upload, photo, wait_until

pytestmark = pytest.mark.e2e

GOOD_JPEG = encoded(photo(320, 240, 9), "JPEG", quality=90)


def drip(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(len(GOOD_JPEG)))
    handler.end_headers()
    for byte in GOOD_JPEG:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.2)


def endless(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.end_headers()
    chunk = GOOD_JPEG[:2] + b"\0" * (1024 * 1024 - 2)
    while True:
        handler.wfile.write(chunk)


def short_content_length(handler: BaseHTTPRequestHandler) -> None:
    # Says 2,000 bytes and sends the whole file: only the first 2,000 are the image.
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", "2000")
    handler.end_headers()
    handler.wfile.write(GOOD_JPEG)


def huge_content_length(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(10 * 1024**3))
    handler.end_headers()
    handler.wfile.write(GOOD_JPEG)


def redirect_to(location: Callable[[BaseHTTPRequestHandler], str]) -> Any:
    def serve(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location(handler))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return serve


def png_bomb() -> bytes:
    """A 10,000 x 10,000 grey PNG (100 megapixels) in well under a megabyte."""
    width = height = 10_000
    row = b"\0" + b"\0" * width
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def run_case(service: Service, origin: Origin, hostile_url: str) -> tuple[dict[str, Any], float]:
    good_url = origin.add(f"/{uuid.uuid4().hex}/good.jpg", GOOD_JPEG)
    csv_text = f"S. No.,Product Name,Input Image Urls\n1,Hostile,{hostile_url}\n2,Good,{good_url}\n"
    started = time.monotonic()
    response = multipart_upload(service.base_url, csv_text)
    assert response.status == 202, response.data
    request_id = response.json()["request_id"]

    def finished() -> dict[str, Any] | None:
        _, body = get_json(f"{service.base_url}/api/status/{request_id}/")
        return body if body["status"] not in {"pending", "processing"} else None

    status = wait_until(finished, timeout=60, interval=0.1, what="the request to finish")
    elapsed = time.monotonic() - started
    _, products = get_json(status["products_url"])
    good = products["results"][1]["images"][0]
    assert good["status"] == "succeeded"
    return products["results"][0]["images"][0] | {"request_status": status["status"]}, elapsed


@pytest.mark.parametrize(
    ("case", "reason", "within"),
    [
        ("drip", "timeout", 20),
        ("endless", "too_large", 30),
        ("short-content-length", "corrupt_image", 10),
        ("huge-content-length", "too_large", 10),
        ("redirect-chain-to-loopback-alias", "blocked_address", 10),
        ("redirect-loop", "too_many_redirects", 10),
        ("bomb", "too_many_pixels", 10),
        ("truncated", "corrupt_image", 10),
        ("html-named-jpg", "not_an_image", 10),
        ("svg", "not_an_image", 10),
        ("server-error", "http_503", 10),
    ],
)
def test_a_hostile_image_fails_alone_with_its_reason(
    embedded_service: Service, origin: Origin, case: str, reason: str, within: float
) -> None:
    # Given an origin that misbehaves in one way
    path = f"/{uuid.uuid4().hex}/{case}.jpg"
    port = origin.port
    serve: dict[str, Any] = {
        "drip": {"serve": drip},
        "endless": {"serve": endless},
        "short-content-length": {"serve": short_content_length},
        "huge-content-length": {"serve": huge_content_length},
        # Two hops on the allowed origin, then a third to 127.0.0.2: loopback, not allowed.
        "redirect-chain-to-loopback-alias": {"serve": redirect_to(lambda handler: f"{path}/hop-2")},
        "redirect-loop": {"serve": redirect_to(lambda handler: handler.path)},
        "bomb": {"body": png_bomb(), "content_type": "image/png"},
        "truncated": {"body": GOOD_JPEG[: len(GOOD_JPEG) // 2]},
        "html-named-jpg": {"body": b"<!doctype html><title>Sale!</title>"},
        "svg": {
            "body": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
            "content_type": "image/svg+xml",
        },
        "server-error": {"status": 503, "body": b"down"},
    }[case]
    url = origin.add(path, **serve)
    origin.add(f"{path}/hop-2", serve=redirect_to(lambda handler: f"{path}/hop-3"))
    origin.add(
        f"{path}/hop-3",
        serve=redirect_to(lambda handler: f"http://127.0.0.2:{port}/anything.jpg"),
    )

    # When it is part of an upload
    image, elapsed = run_case(embedded_service, origin, url)

    # Then only that image fails, with its reason, in bounded time
    assert image["status"] == "failed"
    assert image["error_code"] == reason
    assert image["request_status"] == "completed_with_errors"
    assert elapsed < within


def test_a_transient_failure_is_retried_and_then_succeeds(
    embedded_service: Service, origin: Origin
) -> None:
    # Given an origin that answers 503 once, then the image
    path = f"/{uuid.uuid4().hex}/flaky.jpg"
    answers = iter([503])

    def flaky(handler: BaseHTTPRequestHandler) -> None:
        status = next(answers, 200)
        body = GOOD_JPEG if status == 200 else b"busy"
        handler.send_response(status)
        handler.send_header("Retry-After", "0")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    url = origin.add(path, serve=flaky)

    # When it is uploaded, then the second attempt succeeds
    image, _ = run_case(embedded_service, origin, url)
    assert image["status"] == "succeeded"
    assert image["error_code"] == ""
    assert origin.hits[path] == 2
    assert image["request_status"] == "completed"


def test_an_image_sent_gzip_compressed_unasked_is_compressed_like_any_other(
    embedded_service: Service, origin: Origin
) -> None:
    # Given an origin that sends the JPEG gzip-compressed, as S3 serves an object uploaded
    # compressed whatever Accept-Encoding said
    def pre_gzipped(handler: BaseHTTPRequestHandler) -> None:
        body = gzip.compress(GOOD_JPEG)
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    url = origin.add(f"/{uuid.uuid4().hex}/pre-gzipped.jpg", serve=pre_gzipped)

    # When it is uploaded, then it is compressed from the decompressed bytes
    image, _ = run_case(embedded_service, origin, url)
    assert image["status"] == "succeeded", image
    assert image["input_bytes"] == len(GOOD_JPEG)


def cmyk_jpeg() -> bytes:
    return encoded(photo(120, 90, 3).convert("CMYK"), "JPEG", quality=90)


def palette_png_with_transparency() -> bytes:
    image = photo(120, 90, 4).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    return encoded(image, "PNG", transparency=0)


def sixteen_bit_png() -> bytes:
    # A photo's tones, which a JPEG holds in fewer bytes (a smooth gradient stays the
    # smaller PNG it is)
    grey = photo(120, 90).convert("L").convert("I")
    return encoded(grey.point(lambda value: value * 257).convert("I;16"), "PNG")


def animated_gif() -> bytes:
    frames = [photo(120, 90, seed).convert("P") for seed in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def rgba(image: Image.Image) -> Image.Image:
    with_alpha = image.convert("RGBA")
    with_alpha.paste((0, 0, 0, 0), (0, 0, 30, 30))
    return with_alpha


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

FORMATS: dict[str, tuple[Callable[[], bytes], str]] = {
    "baseline-jpeg": (lambda: GOOD_JPEG, "JPEG"),
    "progressive-jpeg": (
        lambda: encoded(photo(120, 90, 1), "JPEG", quality=90, progressive=True),
        "JPEG",
    ),
    "cmyk-jpeg": (cmyk_jpeg, "JPEG"),
    "grayscale-jpeg": (lambda: encoded(photo(120, 90).convert("L"), "JPEG", quality=90), "JPEG"),
    "jpeg-with-icc": (
        lambda: encoded(photo(120, 90), "JPEG", quality=90, icc_profile=SRGB),
        "JPEG",
    ),
    "png-8bit": (lambda: encoded(photo(120, 90), "PNG"), "JPEG"),
    "png-16bit": (sixteen_bit_png, "JPEG"),
    "png-palette-transparent": (palette_png_with_transparency, "WEBP"),
    "png-alpha": (lambda: encoded(rgba(photo(120, 90)), "PNG"), "WEBP"),
    "gif-still": (lambda: encoded(photo(120, 90).convert("P"), "GIF"), "JPEG"),
    "gif-animated": (animated_gif, "JPEG"),
    "webp-lossy": (lambda: encoded(photo(120, 90), "WEBP", quality=90), "WEBP"),
    "webp-lossless": (lambda: encoded(photo(120, 90), "WEBP", lossless=True), "WEBP"),
    "webp-alpha": (lambda: encoded(rgba(photo(120, 90)), "WEBP", quality=90), "WEBP"),
    "bmp": (lambda: encoded(photo(120, 90), "BMP"), "JPEG"),
    "tiff": (lambda: encoded(photo(120, 90), "TIFF"), "JPEG"),
    "avif": (lambda: encoded(photo(120, 90), "AVIF", quality=90), "AVIF"),
}


@pytest.mark.parametrize("name", FORMATS)
def test_each_supported_format_comes_out_compressed(
    embedded_service: Service, origin: Origin, name: str
) -> None:
    make, expected_format = FORMATS[name]
    source = make()
    url = origin.add(f"/{uuid.uuid4().hex}/{name}", source, content_type="application/octet-stream")

    image, elapsed = run_case(embedded_service, origin, url)

    assert image["status"] == "succeeded", image
    assert image["request_status"] == "completed"
    output = Image.open(io.BytesIO(urllib3.request("GET", image["output_url"]).data))
    assert output.format == expected_format
    assert output.size == Image.open(io.BytesIO(source)).size
    assert elapsed < 20
