"""open_image() and estimate_jpeg_quality(): identifying untrusted bytes."""

import io
import struct
import zlib

import pytest
from PIL import Image

from imaging.encode import compress
from imaging.errors import ImagingError
from imaging.inspect import estimate_jpeg_quality, open_image
from tests.support import encoded, photo


@pytest.mark.parametrize(
    "data",
    [
        b"<!doctype html><html><body>Not found</body></html>",
        b"",
        bytes(range(256)) * 4,
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
    ],
    ids=["html", "empty", "noise", "eps"],
)
def test_bytes_that_are_not_an_accepted_image_are_not_an_image(data: bytes) -> None:
    with pytest.raises(ImagingError) as raised:
        open_image(data, max_pixels=1_000_000)
    assert raised.value.reason == "not_an_image"


@pytest.mark.parametrize(
    ("data", "told"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "a HEIC/HEIF image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "a PDF document"),
        (b'\xef\xbb\xbf<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG"),
        (b"\n  <!DOCTYPE html>\n<html><body>Product not found</body></html>", "a web page"),
        (bytes(range(256)) * 4, "not an image in a supported format"),
        # A generic major brand, HEVC among the compatible ones
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heicmiaf" + bytes(64), "HEIC/HEIF"),
        (encoded(Image.new("RGB", (32, 32), "red"), "ICO"), "an icon (ICO)"),
        (b"8BPS\x00\x01" + bytes(6) + b"\x00\x03\x00\x00\x00\x10" + bytes(64), "Photoshop"),
        (b"\xff\x0a\xfa\x7f\x01\x90\x08" + bytes(64), "a JPEG XL image"),
        (b"\x00\x00\x00\x0cJXL \r\n\x87\n\x00\x00\x00\x14ftypjxl " + bytes(64), "JPEG XL"),
        # A lossless JPEG's frame (SOF3) of 16 bits a sample, 120 x 160, one component
        (
            b"\xff\xd8\xff\xc3\x00\x0b\x10\x00\x78\x00\xa0\x01\x01\x11\x00" + bytes(64),
            "16-bit JPEG",
        ),
    ],
    ids=[
        "heic",
        "pdf",
        "svg",
        "html soft 404",
        "noise",
        "heif mif1",
        "ico",
        "psd",
        "jxl",
        "jxl box",
        "lossless jpeg",
    ],
)
def test_what_is_not_an_image_is_told_for_what_it_is(data: bytes, told: str) -> None:
    """Each was "not an image in a supported format": re-exporting an iPhone's photo and
    mending a link that leads to an error page are different fixes."""
    with pytest.raises(ImagingError) as raised:
        open_image(data, max_pixels=1_000_000)
    assert raised.value.reason == "not_an_image"
    assert told in str(raised.value)


def test_an_empty_file_is_told_as_empty() -> None:
    with pytest.raises(ImagingError) as raised:
        compress(b"", quality=50, max_pixels=1_000_000)
    assert (raised.value.reason, str(raised.value)) == (
        "not_an_image",
        "The server sent an empty file (0 bytes).",
    )


def test_an_ico_file_is_refused_although_pillow_could_read_it() -> None:
    data = encoded(Image.new("RGB", (32, 32), "red"), "ICO")
    with pytest.raises(ImagingError) as raised:
        open_image(data, max_pixels=1_000_000)
    assert raised.value.reason == "not_an_image"


def test_too_many_pixels_is_refused_from_the_header_alone() -> None:
    # Given a PNG whose header claims 100,000 x 100,000 pixels and has no pixel data
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )

    # When opened with a limit of one megapixel, then it is refused before decoding
    with pytest.raises(ImagingError) as raised:
        open_image(data, max_pixels=1_000_000)
    assert raised.value.reason == "too_many_pixels"
    assert raised.value.message == "The image has more than 1,000,000 pixels."


def test_an_image_within_the_limit_opens_without_decoding() -> None:
    image = open_image(encoded(photo(100, 100), "PNG"), max_pixels=10_000)
    assert image.size == (100, 100)
    assert image.format == "PNG"


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 90, 95])
def test_jpeg_quality_is_estimated_from_its_tables(quality: int) -> None:
    image = Image.open(io.BytesIO(encoded(photo(64, 64), "JPEG", quality=quality)))
    estimate = estimate_jpeg_quality(image)
    assert estimate is not None
    assert abs(estimate - quality) <= 1


def test_a_png_has_no_jpeg_quality() -> None:
    assert estimate_jpeg_quality(Image.open(io.BytesIO(encoded(photo(8, 8), "PNG")))) is None


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
