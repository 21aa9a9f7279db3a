"""Re-encode an image at a lower quality, keeping its dimensions, orientation and colours.

JPEG stays JPEG and WebP stays WebP. Every other format becomes JPEG, or WebP where it
has transparency (JPEG would paint it black). An animated GIF or WebP keeps its first
frame. EXIF orientation is applied to the pixels; the ICC profile is kept; all other
metadata (EXIF, GPS, XMP, comments) is dropped.
"""

import io
from dataclasses import dataclass
from typing import Final, Literal

from PIL import Image, ImageOps

from imaging.errors import ImagingError
from imaging.inspect import JPEG_FORMATS, decode, estimate_jpeg_quality, open_image

QualityMode = Literal["fixed", "relative"]
ColourSpace = Literal["gray", "rgb", "cmyk", "other"]

MIME_TYPES: Final = {"JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS: Final = {"JPEG": "jpg", "WEBP": "webp"}
HIGH_BIT_DEPTH_MODES: Final = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


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
    data: bytes, *, quality: int, mode: QualityMode = "fixed", max_pixels: int
) -> CompressedImage:
    """Re-encode data at quality (or at half its estimated quality in relative mode)."""
    image = open_image(data, max_pixels=max_pixels)
    source_format = image.format or "UNKNOWN"
    source_quality = estimate_jpeg_quality(image) if source_format in JPEG_FORMATS else None
    target_quality = quality
    if mode == "relative" and source_quality is not None:
        target_quality = max(1, round(source_quality / 2))
    icc_profile = image.info.get("icc_profile")
    source_space = _colour_space(image)
    decode(image)

    # In place: without it Pillow returns a full copy even when there is nothing to turn.
    ImageOps.exif_transpose(image, in_place=True)
    upright = image
    output_format = _output_format(source_format, upright)
    pixels = _convert_for(output_format, upright)
    keep_icc = icc_profile if _colour_space(pixels) == source_space else None
    encoded = _encode(pixels, output_format, target_quality, keep_icc)

    same_format = source_format == output_format or (
        output_format == "JPEG" and source_format in JPEG_FORMATS
    )
    kept_original = same_format and len(encoded) >= len(data)
    return CompressedImage(
        data=data if kept_original else encoded,
        format=output_format,
        width=pixels.width,
        height=pixels.height,
        source_format=source_format,
        source_quality=source_quality,
        quality=target_quality,
        kept_original=kept_original,
    )


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
        raise ImagingError("encode_failed", f"Could not encode the image: {error}.") from None
    return buffer.getvalue()


def _colour_space(image: Image.Image) -> ColourSpace:
    if image.mode in {"L", "LA", "1", "La", *HIGH_BIT_DEPTH_MODES}:
        return "gray"
    if image.mode in {"RGB", "RGBA", "RGBX", "P", "PA", "RGBa"}:
        return "rgb"
    if image.mode == "CMYK":
        return "cmyk"
    return "other"
