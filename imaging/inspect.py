"""Open untrusted bytes as an image, refusing what is not one or is too big to decode."""

import io
import warnings
from typing import Final

from PIL import Image, ImageFile, UnidentifiedImageError

from imaging.errors import ImageReason, ImagingError
from imaging.guard import jpeg_frame

# Only formats a product photo comes in (JPEG covers MPO, which cameras write). Pillow
# would otherwise also try EPS (which runs Ghostscript), PSD, ICO and dozens more on bytes
# that a stranger chose.
ACCEPTED_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")
JPEG_FORMATS: Final = frozenset({"JPEG", "MPO"})
DECODE_BLOCK_BYTES: Final = 8192

# The IJG (libjpeg) luminance table for quality 50, in natural order. Every encoder built on
# libjpeg scales it by quality, so a file's table says what quality it was saved at.
IJG_LUMINANCE: Final = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip


# What is most often found where a product photo should be, by its first bytes (lower case),
# with what to do about it: the fix differs (export the photo again, or mend the link).
NOT_IMAGES: Final = (
    ((b"%pdf-",), 0, "The file is a PDF document, not an image: link to the image itself."),
    (
        (b"<svg", b"<?xml"),
        0,
        "The file is an SVG drawing (or other XML), which is not supported: export it as PNG.",
    ),
    (
        (b"<!doctype html", b"<html", b"<head", b"<body"),
        0,
        "The file is a web page (HTML), not an image: the link leads to a page, maybe an "
        "error page; link to the image itself.",
    ),
    (
        (b"\xff\x0a", b"\x00\x00\x00\x0cjxl \r\n\x87\n"),  # its codestream, its box
        0,
        "The file is a JPEG XL image, which is not supported: save it as JPEG.",
    ),
    (
        (b"8bps",),
        0,
        "The file is a Photoshop document (PSD), which is not supported: export it as JPEG or PNG.",
    ),
    (
        (b"\x00\x00\x01\x00",),
        0,
        "The file is an icon (ICO), which is not supported: link to the product's photo, "
        "as JPEG or PNG.",
    ),
)
_HEIC: Final = (
    "The file is a HEIC/HEIF image (as iPhones save photos), which is not supported: "
    "save it as JPEG."
)
# An ISO media file's brands (its ftyp box) that say HEVC inside: its major brand may be
# the generic mif1 or msf1, with heic among its compatible ones.
_HEIC_BRANDS: Final = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"})


def not_an_image_message(data: bytes) -> str:
    """Why data, which no accepted format's decoder took, is not an image, in words a shop
    can act on."""
    start = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if data[4:8] == b"ftyp" and _HEIC_BRANDS & _iso_brands(data):
        return _HEIC
    for signatures, offset, message in NOT_IMAGES:
        if any(start[offset:].startswith(signature) for signature in signatures):
            return message
    frame = jpeg_frame(data)
    if frame is not None and (precision := frame[1]) != 8:
        return (
            f"The file is a {precision}-bit JPEG (lossless or extended, as medical and "
            "scientific imaging writes), which is not supported: save it as a standard "
            "8-bit JPEG or as PNG."
        )
    return "The file is not an image in a supported format."


def _iso_brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO media file's leading ftyp box."""
    size = min(int.from_bytes(data[:4], "big"), len(data), 4096)
    return {data[8:12]} | {data[at : at + 4] for at in range(16, size - 3, 4)}


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Identify data and check its size from the header, before any pixel is decoded."""
    if not data:  # a server's answer to a file it could not find or had not written yet
        raise ImagingError(ImageReason.NOT_AN_IMAGE, "The server sent an empty file (0 bytes).")
    with warnings.catch_warnings():
        # The bomb check below is ours, against our own limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except UnidentifiedImageError:
            raise ImagingError(ImageReason.NOT_AN_IMAGE, not_an_image_message(data)) from None
        except Image.DecompressionBombError:
            raise _too_many_pixels(max_pixels) from None
        except ImagingError:
            raise  # the time limit, stopping a header built to be slow to read
        except Exception as error:
            raise ImagingError(
                ImageReason.CORRUPT_IMAGE, f"The image header is damaged: {error}."
            ) from None
    if image.width * image.height > max_pixels:
        raise _too_many_pixels(max_pixels)
    if image.width == 0 or image.height == 0:
        raise ImagingError(ImageReason.CORRUPT_IMAGE, "The image has no pixels.")
    return image


def decode(image: Image.Image) -> None:
    """Decode the pixels of an opened image; damaged data becomes corrupt_image."""
    # Fed to the codec 8 KiB at a time instead of Pillow's 64 KiB, so that the time limit
    # (guard.time_limit) can stop a file built to be slow within a fraction of a second:
    # 0.7 s at most against 5 s for a crafted 49 MP JPEG, at no cost measurable on photos.
    if isinstance(image, ImageFile.ImageFile):
        image.decodermaxblock = DECODE_BLOCK_BYTES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image.load()
        except ImagingError:
            raise  # the time limit, stopping the decode
        except Exception as error:
            raise ImagingError(
                ImageReason.CORRUPT_IMAGE, f"The image data is damaged: {error}."
            ) from None


def estimate_jpeg_quality(image: Image.Image) -> int | None:
    """The IJG quality (1-100) whose luminance table best matches this JPEG's; None if none."""
    tables = getattr(image, "quantization", None)
    if not tables or 0 not in tables:
        return None
    target = sum(tables[0])
    return min(range(1, 101), key=lambda quality: abs(IJG_TABLE_SUMS[quality] - target))


def _ijg_table_sum(quality: int) -> int:
    scale = 5000 // quality if quality < 50 else 200 - quality * 2
    return sum(min(max((value * scale + 50) // 100, 1), 255) for value in IJG_LUMINANCE)


# The luminance table's sum at each quality, 1 to 100 (index 0 unused).
IJG_TABLE_SUMS: Final = (0, *(_ijg_table_sum(quality) for quality in range(1, 101)))


def _too_many_pixels(max_pixels: int) -> ImagingError:
    return ImagingError(
        ImageReason.TOO_MANY_PIXELS, f"The image has more than {max_pixels:,} pixels."
    )
