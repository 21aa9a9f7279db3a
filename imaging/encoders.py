"""The two ways an image is encoded, each able to encode at any quality (the perceptual
search tries several) and to give back pixels to score: the source's, and an output's.

Most product photos are upright YCbCr or grayscale JPEGs. Those take libjpeg-turbo's YUV
path (through PyTurboJPEG, when the system has libturbojpeg): decoded once to YUV planes
and encoded from them at each quality with the source's chroma subsampling, skipping the
colour conversion both ways, about a third faster than Pillow. Everything else goes
through Pillow, from pixels already decoded, turned and converted for the output format.
"""

import functools
import io
import logging
from typing import Any, Final, Protocol

import numpy as np
from PIL import Image
from turbojpeg import TJCS_GRAY, TJPF_RGB, TurboJPEG

from imaging.errors import ImageReason, ImagingError
from imaging.icc import MatrixProfile, matrix_profile
from imaging.metadata import Credits, credits_exif, credits_xmp, jpeg_with_segments
from imaging.score import Pixels

# libavif's speed (0 slowest, 10 fastest): a 1600 x 1200 photo took 376 ms at its default
# of 6, 127 ms at 8 and 41 ms at 9, for files 0%, 18% and 25% larger than at 6.
AVIF_SPEED: Final = 8
ICC_SIGNATURE: Final = b"ICC_PROFILE\x00"
# A JPEG segment holds at most 65,533 bytes after its length; the signature and the two
# sequence bytes take 14 of them.
ICC_CHUNK_BYTES: Final = 65_533 - len(ICC_SIGNATURE) - 2
_END_OF_IMAGE: Final = b"\xff\xd9"
# Modes with an alpha band.
ALPHA_MODES: Final = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Transparent pixels are scored as seen on a mid-grey page, the same for source and output.
SCORE_BACKGROUND: Final = (128, 128, 128, 255)
_BAND_ROWS: Final = 256
_GREY_MODES: Final = frozenset({"1", "L", "LA", "La"})
_RGB_MODES: Final = frozenset({"RGB", "RGBA", "RGBX", "RGBa", "P", "PA"})

logger = logging.getLogger(__name__)


class Encoder(Protocol):
    @property
    def profile(self) -> MatrixProfile | None:
        """How the source's pixels and every output's are read for the score (icc.py):
        through the ICC profile both carry, the one the outputs are given. None: as sRGB.
        Read when a score asks: an unscored image does not pay for its profile's parse."""
        ...

    def encode(self, quality: int) -> bytes: ...

    def source_pixels(self) -> Pixels:
        """The pixels the outputs are made from, as RGB."""
        ...

    def output_pixels(self, data: bytes) -> Pixels:
        """An output decoded, as RGB, as source_pixels decodes the source."""
        ...


@functools.cache
def turbojpeg() -> Any:
    """PyTurboJPEG bound to the system's libturbojpeg, or None where it is missing."""
    try:
        return TurboJPEG()
    except (OSError, RuntimeError) as error:
        logger.warning("libjpeg-turbo's YUV path is unavailable (%s); JPEGs use Pillow", error)
        return None


class YuvEncoder:
    """A JPEG's YUV planes, decoded once, encoded at any quality with its subsampling."""

    def __init__(self, data: bytes, icc_profile: bytes | None) -> None:
        self._turbo = turbojpeg()
        self._data = data
        self._icc_profile = icc_profile
        self._width, self._height, self._subsampling, self._colours = self._turbo.decode_header(
            data
        )
        self._planes, _ = self._turbo.decode_to_yuv(data)

    @functools.cached_property
    def profile(self) -> MatrixProfile | None:
        return matrix_profile(self._icc_profile, grey=self._colours == TJCS_GRAY)

    @classmethod
    def of(cls, data: bytes, image: Image.Image, icc_profile: bytes | None) -> "YuvEncoder | None":
        """An encoder for data, or None where this path does not apply (Pillow's does)."""
        if turbojpeg() is None or image.format != "JPEG" or image.mode not in {"RGB", "L"}:
            return None
        if "adobe" in image.info and image.mode == "RGB" and image.info.get("adobe_transform") == 0:
            return None  # stored as RGB, not YCbCr: there are no YUV planes to keep
        if not data.rstrip(b"\x00").endswith(_END_OF_IMAGE):
            # Truncated, or something after the image: libjpeg-turbo would only warn and go
            # on, and a warning cannot be caught safely here (warnings.catch_warnings sets
            # the process's filters, which the worker's other threads share). Pillow
            # decodes it, and reports a truncated one.
            return None
        try:
            return cls(data, icc_profile)
        except ImagingError:
            # The time limit, fired during libjpeg-turbo's call: falling back to Pillow
            # here ran the whole decode again with the limit spent, for minutes.
            raise
        except Exception:
            return None

    def encode(self, quality: int) -> bytes:
        try:
            encoded = self._turbo.encode_from_yuv(
                self._planes,
                self._height,
                self._width,
                quality=quality,
                jpeg_subsample=self._subsampling,
            )
        except Exception as error:
            raise ImagingError(
                ImageReason.ENCODE_FAILED, f"Could not encode the image: {error}."
            ) from None
        encoded = bytes(encoded)
        return with_icc_profile(encoded, self._icc_profile) if self._icc_profile else encoded

    def source_pixels(self) -> Pixels:
        return self.output_pixels(self._data)

    def output_pixels(self, data: bytes) -> Pixels:
        return np.asarray(self._turbo.decode(data, pixel_format=TJPF_RGB), dtype=np.uint8)


class PillowEncoder:
    """Decoded pixels, ready for the output format, encoded by Pillow at any quality."""

    def __init__(
        self,
        pixels: Image.Image,
        output_format: str,
        icc_profile: bytes | None,
        *,
        credits: Credits | None = None,
        subsampling: int | None = None,
    ) -> None:
        self._pixels = pixels
        self._format = output_format
        self._icc_profile = icc_profile
        # A JPEG source's chroma subsampling, kept (Pillow's own default is 4:2:0, which
        # smeared the red and blue of a 4:4:4 source's lettering).
        self._subsampling = subsampling if output_format == "JPEG" else None
        # WebP and AVIF carry the credits their encoder is given; JPEG gets its segments
        # afterwards (encode.compress), as the YUV path's JPEGs do.
        self._credits = credits if credits and output_format != "JPEG" else None

    @functools.cached_property
    def profile(self) -> MatrixProfile | None:
        # The profile the outputs are given fits these pixels (encode.py keeps it only where
        # it does); none on CMYK, which the score reads as Pillow converts it.
        mode = self._pixels.mode
        if mode not in _GREY_MODES and mode not in _RGB_MODES:
            return None
        return matrix_profile(self._icc_profile, grey=mode in _GREY_MODES)

    def encode(self, quality: int) -> bytes:
        buffer = io.BytesIO()
        # Always given, None included: Pillow's AVIF encoder otherwise takes the profile
        # the pixels still carry in their info, a grey or CMYK one on RGB pixels.
        options: dict[str, object] = {"quality": quality, "icc_profile": self._icc_profile}
        if self._subsampling is not None:
            options["subsampling"] = self._subsampling
        if self._format == "WEBP":
            options["method"] = 4
        if self._format == "AVIF":
            options["speed"] = AVIF_SPEED
        if self._credits:
            options["exif"] = credits_exif(self._credits)
            options["xmp"] = credits_xmp(self._credits)
        try:
            self._pixels.save(buffer, self._format, **options)
        except (OSError, ValueError, RuntimeError) as error:  # RuntimeError: libavif's
            raise ImagingError(
                ImageReason.ENCODE_FAILED, f"Could not encode the image: {error}."
            ) from None
        return buffer.getvalue()

    def source_pixels(self) -> Pixels:
        return rgb_pixels(self._pixels)

    def output_pixels(self, data: bytes) -> Pixels:
        with Image.open(io.BytesIO(data)) as output:
            output.load()
            return rgb_pixels(output)


def rgb_pixels(image: Image.Image) -> Pixels:
    """image as RGB pixels for the score: grey and CMYK converted, transparency laid on
    mid-grey a band of rows at a time (at most the RGBA copy and the RGB result)."""
    if image.mode not in ALPHA_MODES and "transparency" not in image.info:
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    rgba = np.asarray(image if image.mode == "RGBA" else image.convert("RGBA"))
    rgb = np.empty((*rgba.shape[:2], 3), dtype=np.uint8)
    background = np.uint16(SCORE_BACKGROUND[0])
    for top in range(0, rgba.shape[0], _BAND_ROWS):
        band = rgba[top : top + _BAND_ROWS].astype(np.uint16)
        alpha = band[..., 3:]
        rgb[top : top + _BAND_ROWS] = (band[..., :3] * alpha + background * (255 - alpha)) // 255
    return rgb


def with_icc_profile(jpeg: bytes, icc_profile: bytes) -> bytes:
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
    return jpeg_with_segments(jpeg, segments)
