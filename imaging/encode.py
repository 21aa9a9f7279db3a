"""Re-encode an image at a lower quality, keeping its dimensions, orientation and colours.

In the format asked for (OutputFormat), or by default the same: JPEG stays JPEG and WebP
stays WebP; every other format becomes JPEG, or WebP where it has transparency (JPEG
would paint it black). WebP and AVIF keep transparency; a transparent image asked for as
JPEG is painted on white, and says so (`flattened`). An animated GIF or WebP keeps its
first frame. EXIF orientation is applied to the pixels; the ICC profile is kept; all other
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
from imaging.guard import (
    bytes_per_pixel,
    check_decode_budget,
    check_jpeg_scans,
    jpeg_scan_count,
)
from imaging.inspect import JPEG_FORMATS, decode, estimate_jpeg_quality, open_image
from imaging.metadata import EXIF_ORIENTATION, metadata_stripped

ColourSpace = Literal["gray", "rgb", "cmyk", "other"]

MIME_TYPES: Final = {"JPEG": "image/jpeg", "WEBP": "image/webp", "AVIF": "image/avif"}
EXTENSIONS: Final = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}
HIGH_BIT_DEPTH_MODES: Final = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
ALPHA_MODES: Final = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# The service's defaults (config/settings.py reads IMAGE_MAX_DECODE_BYTES and
# IMAGE_MAX_JPEG_SCANS): a 50 MP RGBA image fits the budget; no camera writes 100 scans.
DEFAULT_MAX_DECODE_BYTES: Final = 512 * 1024 * 1024
DEFAULT_MAX_JPEG_SCANS: Final = 100
# What libwebp holds while it encodes, per pixel (decode_cost).
WEBP_BYTES_PER_PIXEL: Final = 6
WEBP_ALPHA_BYTES_PER_PIXEL: Final = 14
# libavif's, measured the same way on a 12 MP noise image: 24 and 27 bytes a pixel.
AVIF_BYTES_PER_PIXEL: Final = 25
AVIF_ALPHA_BYTES_PER_PIXEL: Final = 28
# libavif's speed (0 slowest, 10 fastest): a 1600 x 1200 photo took 376 ms at its default
# of 6, 127 ms at 8 and 41 ms at 9, for files 0%, 18% and 25% larger than at 6.
AVIF_SPEED: Final = 8
# Baseline JPEGs have 1 scan, libjpeg's progressive ones 10, other encoders' a few more.
YUV_MAX_SCANS: Final = 16
ICC_SIGNATURE: Final = b"ICC_PROFILE\x00"
# A JPEG segment holds at most 65,533 bytes after its length; the signature and the two
# sequence bytes take 14 of them.
ICC_CHUNK_BYTES: Final = 65_533 - len(ICC_SIGNATURE) - 2

logger = logging.getLogger(__name__)


class OutputFormat(StrEnum):
    """The format an output is asked for in: the one list (settings, models and the API
    take theirs from here)."""

    SAME = "same"  # JPEG stays JPEG, WebP stays WebP, others JPEG (WebP if transparent)
    JPEG = "jpeg"
    WEBP = "webp"
    AVIF = "avif"


OutputName = Literal["JPEG", "WEBP", "AVIF"]


class QualityMode(StrEnum):
    """How the encoder's quality is chosen: the one list of modes (settings, models and the
    API take theirs from here)."""

    FIXED = "fixed"  # the quality asked for
    RELATIVE = "relative"  # half the source's estimated JPEG quality


@dataclass(frozen=True)
class CompressedImage:
    data: bytes
    format: OutputName
    width: int
    height: int
    source_format: str
    source_quality: int | None  # estimated from a JPEG's quantisation tables
    quality: int  # what the output was encoded at
    kept_original: bool  # re-encoding would have grown the file: data is the input
    flattened: bool = False  # its transparency painted on white (asked for as JPEG)

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
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS,
    fast_jpeg: bool = True,
    output_format: OutputFormat = OutputFormat.SAME,
) -> CompressedImage:
    """Re-encode data at quality (or at half its estimated quality in relative mode), in
    output_format.

    Before a pixel is decoded, the image is refused if it has more than max_pixels, needs
    more than max_decode_bytes of memory to decode and re-encode, or is a JPEG of more than
    max_jpeg_scans scans. fast_jpeg=False sends JPEGs through Pillow too (to compare, or
    where libjpeg-turbo's output is not wanted)."""
    image = open_image(data, max_pixels=max_pixels)
    source_format = image.format or "UNKNOWN"
    scans = jpeg_scan_count(data) if source_format in JPEG_FORMATS else 0
    check_jpeg_scans(scans, max_scans=max_jpeg_scans)
    check_decode_budget(decode_cost(image, output_format), max_bytes=max_decode_bytes)
    source_quality = estimate_jpeg_quality(image) if source_format in JPEG_FORMATS else None
    target_quality = quality
    if mode == QualityMode.RELATIVE and source_quality is not None:
        target_quality = max(1, round(source_quality / 2))
    icc_profile = image.info.get("icc_profile")
    orientation = _orientation(image)

    # The YUV path is one call into libjpeg-turbo that no time limit can interrupt: a JPEG
    # of more scans than a camera writes goes through Pillow, which decodes in steps.
    fast = None
    if fast_jpeg and scans <= YUV_MAX_SCANS and output_format in _JPEG_ASKED:
        fast = _jpeg_yuv_reencode(data, image, target_quality, orientation)
    flattened = False
    if fast is not None:
        name: OutputName = "JPEG"
        encoded = _with_icc_profile(fast, icc_profile) if icc_profile else fast
        width, height = image.size
    else:
        source_space = _colour_space(image)
        decode(image)
        # In place: without it Pillow returns a full copy even when there is nothing to turn.
        ImageOps.exif_transpose(image, in_place=True)
        transparent = has_transparency(image)
        name = _output_name(source_format, transparent, output_format)
        flattened = transparent and name == "JPEG"
        pixels = _convert_for(name, image, transparent)
        keep_icc = icc_profile if _colour_space(pixels) == source_space else None
        encoded = _encode(pixels, name, target_quality, keep_icc)
        width, height = pixels.size

    same_format = source_format == name or (name == "JPEG" and source_format in JPEG_FORMATS)
    kept_original = same_format and len(encoded) >= len(data)
    if kept_original:
        # The original's pixels, without its metadata (GPS and all); the orientation stays,
        # since these pixels were not turned.
        encoded = metadata_stripped(data, source_format, orientation=orientation)
    return CompressedImage(
        data=encoded,
        format=name,
        width=width,
        height=height,
        source_format=source_format,
        source_quality=source_quality,
        quality=target_quality,
        kept_original=kept_original,
        flattened=flattened and not kept_original,
    )


# What asks for a JPEG from a JPEG, the only case libjpeg-turbo's YUV path makes.
_JPEG_ASKED: Final = frozenset({OutputFormat.SAME, OutputFormat.JPEG})


def decode_cost(image: Image.Image, output_format: OutputFormat = OutputFormat.SAME) -> int:
    """Bytes of memory the image will take at its peak, told from its header: its decoded
    pixels, the converted copy the encoder is given where the mode must change, and what
    the encoder itself holds. Measured on 49 MP images (BENCHMARKS.md): libjpeg reads rows
    where they lie; libwebp takes about 5.6 bytes a pixel for RGB and 13.7 for RGBA, most of
    it to compress the alpha plane."""
    decoded = bytes_per_pixel(image.mode)
    alpha = image.format not in JPEG_FORMATS and (
        image.mode in ALPHA_MODES or "transparency" in image.info
    )
    name = _output_name(image.format or "", alpha, output_format)
    if name == "AVIF":
        output_mode = "RGBA" if alpha else "RGB"
        encoder = AVIF_ALPHA_BYTES_PER_PIXEL if alpha else AVIF_BYTES_PER_PIXEL
    elif name == "WEBP":
        output_mode = "RGBA" if alpha else "RGB"
        encoder = WEBP_ALPHA_BYTES_PER_PIXEL if alpha else WEBP_BYTES_PER_PIXEL
    elif alpha:  # painted on white: an RGBA copy, then the RGB one
        output_mode, encoder = "RGB", bytes_per_pixel("RGBA")
    else:
        output_mode = image.mode if image.mode in {"L", "RGB", "CMYK"} else "RGB"
        if image.mode in {"1", *HIGH_BIT_DEPTH_MODES}:
            output_mode = "L"
        encoder = 0
    converted = 0
    if image.mode in HIGH_BIT_DEPTH_MODES:
        converted = decoded + 1  # the scaled copy (_eight_bit), then its 8 bits
    elif output_mode != image.mode:
        converted = bytes_per_pixel(output_mode)
    return image.width * image.height * (decoded + converted + encoder)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:
        return 1  # damaged EXIF: Pillow's path decides what to make of it


@functools.cache
def _turbojpeg() -> Any:
    """PyTurboJPEG bound to the system's libturbojpeg, or None where it is missing."""
    try:
        from turbojpeg import TurboJPEG

        return TurboJPEG()
    except (ImportError, OSError, RuntimeError) as error:
        logger.warning("libjpeg-turbo's YUV path is unavailable (%s); JPEGs use Pillow", error)
        return None


def _jpeg_yuv_reencode(
    data: bytes, image: Image.Image, quality: int, orientation: int
) -> bytes | None:
    """data re-encoded through YUV planes, or None where this path does not apply."""
    turbo = _turbojpeg()
    if turbo is None or image.format != "JPEG" or image.mode not in {"RGB", "L"}:
        return None
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
    """True if any pixel of the decoded image is less than fully opaque."""
    if image.mode in ALPHA_MODES:
        # getextrema reads every band where it lies (alpha is the last): no copy of it.
        extrema: Any = image.getextrema()
        return bool(extrema[-1][0] < 255)
    return "transparency" in image.info


def _output_name(source_format: str, transparent: bool, asked: OutputFormat) -> OutputName:
    if asked == OutputFormat.JPEG:
        return "JPEG"
    if asked == OutputFormat.WEBP:
        return "WEBP"
    if asked == OutputFormat.AVIF:
        return "AVIF"
    if source_format in JPEG_FORMATS:
        return "JPEG"
    if source_format == "WEBP":
        return "WEBP"
    return "WEBP" if transparent else "JPEG"


def _convert_for(output_format: str, image: Image.Image, transparent: bool) -> Image.Image:
    if image.mode in HIGH_BIT_DEPTH_MODES:
        image = _eight_bit(image)
    if output_format in {"WEBP", "AVIF"}:
        wanted = "RGBA" if transparent else "RGB"
        return image if image.mode == wanted else image.convert(wanted)
    if transparent:  # JPEG has no alpha: painted on white, never on black
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    if image.mode in {"L", "RGB", "CMYK"}:
        return image
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or floating-point grey image as 8-bit grey that looks like it:
    convert("L") alone would clip every value above 255 (a white image) or round a
    0-to-1 float image to black."""
    if image.mode in {"I;16B", "I;16L", "I;16N"}:
        image = image.convert("I")  # point() takes I;16 and I, not these
    extrema: Any = image.getextrema()  # one band: (lowest, highest)
    high = float(extrema[1])
    if image.mode == "F" and high <= 1.0:
        scale = 255.0  # a 0-to-1 float image, as TIFF writers store them
    elif image.mode == "I;16" or 255 < high <= 65535:
        scale = 1 / 256  # 16-bit values
    elif high > 65535:
        scale = 255 / high
    else:
        scale = 1.0
    if scale != 1.0:
        image = image.point(lambda value: value * scale)
    return image.convert("L")


def _encode(
    image: Image.Image, output_format: str, quality: int, icc_profile: bytes | None
) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": quality}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if output_format == "WEBP":
        options["method"] = 4
    if output_format == "AVIF":
        options["speed"] = AVIF_SPEED
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
