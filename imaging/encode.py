"""Re-encode an image at a lower quality, keeping its dimensions, orientation and colours.

JPEG stays JPEG and WebP stays WebP. Every other format becomes JPEG, or WebP where it
has transparency (JPEG would paint it black). An animated GIF or WebP keeps its first
frame. EXIF orientation is applied to the pixels; the ICC profile is kept; all other
metadata (EXIF, GPS, XMP, comments) is dropped.

Most product photos are upright YCbCr or grayscale JPEGs. Those take libjpeg-turbo's
YUV path (through PyTurboJPEG, when the system has libturbojpeg): decoded to YUV planes
and encoded again at the new quality with the source's chroma subsampling, skipping the
colour conversion both ways, about a third faster than Pillow. Everything else (rotated
by EXIF, CMYK, MPO, damaged, every other format) goes through Pillow.
"""

import functools
import io
import logging
import warnings
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from PIL import Image, ImageOps

from imaging.errors import ImageReason, ImagingError
from imaging.inspect import JPEG_FORMATS, decode, estimate_jpeg_quality, open_image

ColourSpace = Literal["gray", "rgb", "cmyk", "other"]

MIME_TYPES: Final = {"JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS: Final = {"JPEG": "jpg", "WEBP": "webp"}
HIGH_BIT_DEPTH_MODES: Final = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
EXIF_ORIENTATION: Final = 0x0112
ICC_SIGNATURE: Final = b"ICC_PROFILE\x00"
# A JPEG segment holds at most 65,533 bytes after its length; the signature and the two
# sequence bytes take 14 of them.
ICC_CHUNK_BYTES: Final = 65_533 - len(ICC_SIGNATURE) - 2

logger = logging.getLogger(__name__)


class QualityMode(StrEnum):
    """How the encoder's quality is chosen: the one list of modes (settings, models and the
    API take theirs from here)."""

    FIXED = "fixed"  # the quality asked for
    RELATIVE = "relative"  # half the source's estimated JPEG quality


@dataclass(frozen=True)
class CompressedImage:
    data: bytes
    format: Literal["JPEG", "WEBP"]
    width: int
    height: int
    source_format: str
    source_quality: int | None  # estimated from a JPEG's quantisation tables
    quality: int  # what the output was encoded at
    kept_original: bool  # re-encoding would have grown the file: data is the input

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.format]


def compress(
    data: bytes,
    *,
    quality: int,
    mode: QualityMode = QualityMode.FIXED,
    max_pixels: int,
    fast_jpeg: bool = True,
) -> CompressedImage:
    """Re-encode data at quality (or at half its estimated quality in relative mode).

    fast_jpeg=False sends JPEGs through Pillow too (to compare, or where libjpeg-turbo's
    output is not wanted)."""
    image = open_image(data, max_pixels=max_pixels)
    source_format = image.format or "UNKNOWN"
    source_quality = estimate_jpeg_quality(image) if source_format in JPEG_FORMATS else None
    target_quality = quality
    if mode == QualityMode.RELATIVE and source_quality is not None:
        target_quality = max(1, round(source_quality / 2))
    icc_profile = image.info.get("icc_profile")

    fast = _jpeg_yuv_reencode(data, image, target_quality) if fast_jpeg else None
    if fast is not None:
        output_format: Literal["JPEG", "WEBP"] = "JPEG"
        encoded = _with_icc_profile(fast, icc_profile) if icc_profile else fast
        width, height = image.size
    else:
        source_space = _colour_space(image)
        decode(image)
        # In place: without it Pillow returns a full copy even when there is nothing to turn.
        ImageOps.exif_transpose(image, in_place=True)
        output_format = _output_format(source_format, image)
        pixels = _convert_for(output_format, image)
        keep_icc = icc_profile if _colour_space(pixels) == source_space else None
        encoded = _encode(pixels, output_format, target_quality, keep_icc)
        width, height = pixels.size

    same_format = source_format == output_format or (
        output_format == "JPEG" and source_format in JPEG_FORMATS
    )
    kept_original = same_format and len(encoded) >= len(data)
    return CompressedImage(
        data=data if kept_original else encoded,
        format=output_format,
        width=width,
        height=height,
        source_format=source_format,
        source_quality=source_quality,
        quality=target_quality,
        kept_original=kept_original,
    )


@functools.cache
def _turbojpeg() -> Any:
    """PyTurboJPEG bound to the system's libturbojpeg, or None where it is missing."""
    try:
        from turbojpeg import TurboJPEG

        return TurboJPEG()
    except (ImportError, OSError, RuntimeError) as error:
        logger.warning("libjpeg-turbo's YUV path is unavailable (%s); JPEGs use Pillow", error)
        return None


def _jpeg_yuv_reencode(data: bytes, image: Image.Image, quality: int) -> bytes | None:
    """data re-encoded through YUV planes, or None where this path does not apply."""
    turbo = _turbojpeg()
    if turbo is None or image.format != "JPEG" or image.mode not in {"RGB", "L"}:
        return None
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:
        return None  # damaged EXIF: Pillow's path decides what to make of it
    if orientation != 1:
        return None  # the pixels must be turned: Pillow does that
    if "adobe" in image.info and image.mode == "RGB" and image.info.get("adobe_transform") == 0:
        return None  # stored as RGB, not YCbCr: there are no YUV planes to keep
    try:
        with warnings.catch_warnings():
            # libjpeg-turbo warns, and goes on, on a truncated file: Pillow reports it.
            warnings.simplefilter("error")
            encoded = turbo.scale_with_quality(data, quality=quality)
    except Exception:
        return None
    return bytes(encoded)


def _with_icc_profile(jpeg: bytes, icc_profile: bytes) -> bytes:
    """jpeg with icc_profile in APP2 segments, after the JFIF header as the ICC spec says."""
    chunks = [
        icc_profile[start : start + ICC_CHUNK_BYTES]
        for start in range(0, len(icc_profile), ICC_CHUNK_BYTES)
    ]
    if len(chunks) > 255:
        raise ImagingError(ImageReason.ENCODE_FAILED, "The ICC profile is too large to embed.")
    segments = b"".join(
        b"\xff\xe2"
        + (2 + len(ICC_SIGNATURE) + 2 + len(chunk)).to_bytes(2, "big")
        + ICC_SIGNATURE
        + bytes([number, len(chunks)])
        + chunk
        for number, chunk in enumerate(chunks, start=1)
    )
    position = 2  # after SOI
    if jpeg[2:4] == b"\xff\xe0":  # the JFIF APP0 segment stays first
        position = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:position] + segments + jpeg[position:]


def has_transparency(image: Image.Image) -> bool:
    """True if any pixel is less than fully opaque."""
    if image.mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        alpha = image.getchannel("A")
        return alpha.getextrema()[0] < 255  # type: ignore[operator]
    return "transparency" in image.info


def _output_format(source_format: str, image: Image.Image) -> Literal["JPEG", "WEBP"]:
    if source_format in JPEG_FORMATS:
        return "JPEG"
    if source_format == "WEBP":
        return "WEBP"
    return "WEBP" if has_transparency(image) else "JPEG"


def _convert_for(output_format: str, image: Image.Image) -> Image.Image:
    if image.mode in HIGH_BIT_DEPTH_MODES:
        # convert("L") would clip 16-bit values at 255 (a white image); scale them instead.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    if output_format == "WEBP":
        wants_alpha = has_transparency(image)
        return image.convert("RGBA" if wants_alpha else "RGB")
    if image.mode in {"L", "RGB", "CMYK"}:
        return image
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def _encode(
    image: Image.Image, output_format: str, quality: int, icc_profile: bytes | None
) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": quality}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if output_format == "WEBP":
        options["method"] = 4
    try:
        image.save(buffer, output_format, **options)
    except (OSError, ValueError) as error:
        raise ImagingError(
            ImageReason.ENCODE_FAILED, f"Could not encode the image: {error}."
        ) from None
    return buffer.getvalue()


def _colour_space(image: Image.Image) -> ColourSpace:
    if image.mode in {"L", "LA", "1", "La", *HIGH_BIT_DEPTH_MODES}:
        return "gray"
    if image.mode in {"RGB", "RGBA", "RGBX", "P", "PA", "RGBa"}:
        return "rgb"
    if image.mode == "CMYK":
        return "cmyk"
    return "other"
