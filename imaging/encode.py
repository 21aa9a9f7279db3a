"""Re-encode an image at a lower quality, keeping its dimensions, orientation and colours.

In the format asked for (OutputFormat), or by default the same: JPEG stays JPEG, WebP
stays WebP and AVIF stays AVIF; every other format becomes JPEG, or WebP where it has
transparency (JPEG would paint it black; AVIF where it is too long for WebP), but a PNG,
GIF or BMP whose output would be larger, or a PNG that no format holds, is kept, and a TIFF
whose output would be larger becomes a PNG of its pixels where that is smaller. An
image longer than its output format holds (MAX_SIDE) is refused from its header. WebP and
AVIF keep transparency; a transparent image asked for as JPEG is painted on white, and says
so (`flattened`). An animated GIF, WebP or PNG keeps its first frame, a TIFF its first page,
and says so (`note`). EXIF orientation is applied
to the pixels; the ICC profile is kept; all other metadata (EXIF, GPS, XMP, comments) is
dropped, but for the credits if asked to keep them.

The quality is the one asked for, half the source's (relative), or the lowest that reaches
a perceptual target (quality.py); every output is scored against its source (score.py).
Upright YCbCr and grayscale JPEGs take libjpeg-turbo's YUV path, everything else (rotated
by EXIF, CMYK, MPO, damaged, every other format) Pillow's (encoders.py), from pixels
converted for the output format (convert.py).
"""

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from PIL import Image, ImageOps, JpegImagePlugin

from imaging.convert import HIGH_BIT_DEPTH_MODES, colour_space, converted_for, has_transparency
from imaging.encoders import ALPHA_MODES, Encoder, PillowEncoder, YuvEncoder
from imaging.errors import ImageReason, ImagingError
from imaging.guard import (
    ARITHMETIC_FRAMES,
    bytes_per_pixel,
    check_decode_budget,
    check_jpeg_scans,
    check_jpeg_segments,
    jpeg_coefficient_bytes,
    jpeg_frame,
    jpeg_scan_count,
)
from imaging.inspect import (
    JPEG_FORMATS,
    decode,
    estimate_jpeg_quality,
    open_image,
)
from imaging.metadata import (
    EXIF_ORIENTATION,
    Credits,
    MetadataMode,
    credits_of,
    jpeg_with_credits,
    metadata_stripped,
)
from imaging.quality import (
    DEFAULT_MAX_TRIES,
    QUALITY_CURVES,
    Choice,
    QualityCurve,
    quality_search,
    starting_quality,
)
from imaging.score import Reference

MIME_TYPES: Final = {
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
    "PNG": "image/png",  # a PNG, GIF or BMP source kept, a TIFF made lossless (compress)
    "GIF": "image/gif",
    "BMP": "image/bmp",
}
EXTENSIONS: Final = {
    "JPEG": "jpg",
    "WEBP": "webp",
    "AVIF": "avif",
    "PNG": "png",
    "GIF": "gif",
    "BMP": "bmp",
}
# Sources whose own file stands for an output that would be larger, in `same`: a drawing,
# a size chart or a logo is often smaller in them than in any JPEG or WebP of it. Not a
# TIFF, which browsers but Safari do not show: its pixels are made a PNG instead.
LOSSLESS_KEPT: Final[dict[str, "OutputName"]] = {"PNG": "PNG", "GIF": "GIF", "BMP": "BMP"}
# The service's defaults (config/settings.py reads IMAGE_MAX_DECODE_BYTES and
# IMAGE_MAX_JPEG_SCANS): a 50 MP RGBA image fits the budget as JPEG, a 24 MP photo as WebP
# or AVIF, at the most their encoders may take; no camera writes 100 scans.
DEFAULT_MAX_DECODE_BYTES: Final = 1024 * 1024 * 1024
DEFAULT_MAX_JPEG_SCANS: Final = 100
# What an encoder holds while it encodes, per pixel (decode_cost), at its most: measured on
# 3 and 12 MP of noise, which leaves nothing to compress (BENCHMARKS.md, "Memory of the
# worst image"). libwebp holds up to 19 and 40 bytes a pixel there, where a photo takes 6
# and 14; libavif 30 and 37; a JPEG's output and its copy, 2.
WEBP_BYTES_PER_PIXEL: Final = 21
WEBP_ALPHA_BYTES_PER_PIXEL: Final = 42
AVIF_BYTES_PER_PIXEL: Final = 30
AVIF_ALPHA_BYTES_PER_PIXEL: Final = 38
JPEG_BYTES_PER_PIXEL: Final = 3
# What a decoder holds beside the decoded pixels, per pixel, the same way: Pillow's WebP
# decoder keeps libwebp's canvas for as long as the image is open (14 bytes a pixel at its
# peak), its AVIF decoder libavif's planes (9).
DECODER_BYTES_PER_PIXEL: Final = {"WEBP": 15, "AVIF": 10}
# What scoring holds beside the encoder's own, measured with tracemalloc on a 6 MP JPEG and
# a 16 MP RGBA PNG: a decoded output and its RGB pixels, the whole image's linear light at
# 1:4 for both sides (3 bytes a pixel each), the tiles; with transparency, Pillow's decode
# of each output and its RGBA copy too.
SCORE_BYTES_PER_PIXEL: Final = 10
SCORE_ALPHA_BYTES_PER_PIXEL: Final = 14
# Which rules made an output from its source, beyond its settings: outputs made under
# earlier ones are not re-used (processing/reuse.py). 2, since 2026-11-28: no original
# kept with metadata nothing strips (AVIF), frames after its first (MPO, animations), or
# bytes after its image's end, nor a non-JPEG turned by EXIF; a JPEG source's chroma
# subsampling kept on Pillow's path. 3, since 2026-11-28: a CMYK or grey image made WebP
# or AVIF converted through its ICC profile. 4, since 2026-11-29: a PNG whose JPEG or WebP
# would be larger kept, as a PNG, where the source's format was asked for. 5, since
# 2026-11-29 (later): no AVIF longer than 32,768 pixels a side (libavif's decoder refused
# them); a big-endian 16-bit image scaled by its bit depth, as a little-endian one is; a
# PNG whose tRNS colour no pixel has taken as opaque; an AVIF stays AVIF in `same` (it
# became JPEG, several times larger), and a still GIF whose output would be larger is
# kept; a transparent grey image through its grey profile (made WebP or AVIF, converted;
# made JPEG, painted on white in grey, the profile kept). 6: unused (a check of a JPEG's
# missing data on the YUV path, taken back). 7, since 2026-11-29 (later): a BMP
# whose JPEG or WebP would be larger kept, as a PNG or a GIF is, and a TIFF made a PNG
# where smaller than its JPEG or WebP. 8, since
# 2026-11-29 (later): an output of an animation or of a TIFF of several pages says what it
# dropped (`note`), which one made earlier would not. 9, since 2026-11-29 (later): a PNG with EXIF
# or XMP whose JPEG or WebP would be larger kept, as one without them is (it became the
# larger JPEG), with its credits written again where they are asked for.
OUTPUT_RULES: Final = 9
# The longest side each output format holds: libjpeg's JPEG_MAX_DIMENSION, WebP's 14-bit
# sizes, and libavif's default decode limit (its encoder writes larger AVIFs, which its
# own decoder, Pillow's and browsers' refuse).
MAX_SIDE: Final = {"JPEG": 65_500, "WEBP": 16_383, "AVIF": 32_768}
# Baseline JPEGs have 1 scan, libjpeg's progressive ones 10, other encoders' a few more.
YUV_MAX_SCANS: Final = 16


class OutputFormat(StrEnum):
    """The format an output is asked for in: the one list (settings, models and the API
    take theirs from here)."""

    SAME = "same"  # JPEG, WebP and AVIF stay so, others JPEG (WebP if transparent);
    # a PNG, GIF or BMP whose JPEG or WebP would be larger is kept, a TIFF made a PNG
    JPEG = "jpeg"
    WEBP = "webp"
    AVIF = "avif"


# PNG, GIF, BMP: a source kept, never encoded (but a TIFF's pixels made a PNG)
OutputName = Literal["JPEG", "WEBP", "AVIF", "PNG", "GIF", "BMP"]


class QualityMode(StrEnum):
    """How the encoder's quality is chosen: the one list of modes (settings, models and the
    API take theirs from here)."""

    FIXED = "fixed"  # the quality asked for
    RELATIVE = "relative"  # half the source's estimated JPEG quality
    PERCEPTUAL = "perceptual"  # the lowest whose output reaches a target score


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
    score: float | None = None  # SSIMULACRA2 against the source (score.py); None: unscored
    tries: int = 1  # encodes it took
    target_met: bool | None = None  # perceptual mode: reached the target, or fell back
    # What the output leaves out of its source, in words: the frames of an animation, the
    # pages of a TIFF after its first. Empty where nothing is.
    note: str = ""

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
    target_score: float | None = None,
    max_tries: int = DEFAULT_MAX_TRIES,
    scored: bool = False,
    metadata: MetadataMode = MetadataMode.STRIP,
    max_seconds: float | None = None,
) -> CompressedImage:
    """Re-encode data in output_format at quality (fixed mode), at half its estimated
    quality (relative), or at the lowest quality whose output scores target_score in at
    most max_tries encodes, quality where none does (perceptual). scored=True scores the
    output in the other modes too (a perceptual one always is): two decodes and a
    comparison, several times the encode's cost. metadata=copyright keeps the source's
    credits (metadata.py). max_seconds, the time the caller allows (guard.time_limit):
    the perceptual search starts no try that might not fit in it.

    Before a pixel is decoded, the image is refused if it has more than max_pixels, needs
    more than max_decode_bytes of memory to decode and re-encode, or is a JPEG of more than
    max_jpeg_scans scans. fast_jpeg=False sends JPEGs through Pillow too (to compare, or
    where libjpeg-turbo's output is not wanted)."""
    started = time.monotonic()
    perceptual = mode == QualityMode.PERCEPTUAL
    if perceptual and target_score is None:
        raise ValueError("The perceptual mode needs a target score.")
    scored = scored or perceptual
    check_jpeg_segments(data)
    image = open_image(data, max_pixels=max_pixels)
    source_format = image.format or "UNKNOWN"
    scans = jpeg_scan_count(data) if source_format in JPEG_FORMATS else 0
    check_jpeg_scans(scans, max_scans=max_jpeg_scans)
    check_output_size(image, source_format, output_format)
    cost = decode_cost(image, output_format, scans=scans)
    if scored:
        per_pixel = SCORE_ALPHA_BYTES_PER_PIXEL if _has_alpha(image) else SCORE_BYTES_PER_PIXEL
        cost += image.width * image.height * per_pixel
    check_decode_budget(cost, max_bytes=max_decode_bytes)
    source_quality = estimate_jpeg_quality(image) if source_format in JPEG_FORMATS else None
    fixed_quality = quality
    if mode == QualityMode.RELATIVE and source_quality is not None:
        fixed_quality = max(1, round(source_quality / 2))
    icc_profile = image.info.get("icc_profile")
    orientation = _orientation(image)
    credits = credits_of(image) if metadata == MetadataMode.COPYRIGHT else Credits()

    # The YUV path is one call into libjpeg-turbo that no time limit can interrupt: a JPEG
    # of more scans than a camera writes goes through Pillow, which decodes in steps. Its
    # pixels must not need turning by EXIF either.
    encoder: Encoder | None = None
    note = ""
    if fast_jpeg and scans <= YUV_MAX_SCANS and output_format in _JPEG_ASKED and orientation == 1:
        encoder = YuvEncoder.of(data, image, icc_profile)
    flattened = False
    if encoder is not None:
        name: OutputName = "JPEG"
        width, height = image.size
    else:
        source_space = colour_space(image)
        # -1 where it is not a YCbCr or grey JPEG (Pillow then picks)
        sampling = JpegImagePlugin.get_sampling(image) if source_format in JPEG_FORMATS else -1
        subsampling = sampling if sampling >= 0 else None
        if source_format in JPEG_FORMATS and _arithmetic_coded(data):
            raise ImagingError(
                ImageReason.NOT_AN_IMAGE,
                "The JPEG uses arithmetic coding, which is read here only where it stays an "
                "upright JPEG: save it again as a standard (Huffman-coded) JPEG.",
            )
        # Counted before the decode: a GIF's count walks its frames' blocks (not decoding
        # them), and seeks back to the first, which a decoded image would decode again.
        note = _frames_note(image, source_format)
        decode(image)
        # In place: without it Pillow returns a full copy even when there is nothing to turn.
        ImageOps.exif_transpose(image, in_place=True)
        transparent = has_transparency(image)
        fitting = _output_name(source_format, transparent, output_format, image.size)
        if fitting is None:
            # A PNG no format it may become in `same` can hold: kept as the PNG it is, but
            # where that would not show what an output does (an animation, EXIF turning).
            animated = getattr(image, "n_frames", 1) > 1
            if source_format != "PNG" or animated or orientation != 1:
                raise _too_long(image.size, transparent)
            return CompressedImage(
                data=metadata_stripped(data, "PNG", credits=credits),
                format="PNG",
                width=image.width,
                height=image.height,
                source_format=source_format,
                source_quality=None,
                quality=fixed_quality,
                kept_original=True,
                score=100.0 if scored else None,
                tries=0,
                target_met=True if perceptual else None,
            )
        name = fitting
        flattened = transparent and name == "JPEG"
        pixels = converted_for(name, image, transparent, icc_profile)
        keep_icc = icc_profile if colour_space(pixels) == source_space else None
        encoder = PillowEncoder(pixels, name, keep_icc, credits=credits, subsampling=subsampling)
        width, height = pixels.size

    if perceptual:
        assert target_score is not None
        curve = QUALITY_CURVES[name]
        # A source's JPEG quality bounds a JPEG's start only: other encoders' qualities
        # are on scales of their own.
        bound = source_quality if name == "JPEG" else None
        chosen = _searched(
            encoder,
            target=target_score,
            start=starting_quality(target_score, bound, curve),
            fallback=fixed_quality,
            max_tries=max_tries,
            curve=curve,
            # A tenth of the time kept for what follows the search (credits, the output).
            deadline=started + 0.9 * max_seconds if max_seconds else None,
        )
    else:
        chosen = _encoded(encoder, fixed_quality, scored=scored)

    encoded = chosen.data
    if credits and name == "JPEG":
        encoded = jpeg_with_credits(encoded, credits)
    same_format = source_format == name or (name == "JPEG" and source_format in JPEG_FORMATS)
    # A drawing, a size chart or a logo saved as PNG, GIF or BMP may be smaller than any
    # JPEG or WebP of it (16 KB as PNG, 56 KB as JPEG at 50; a 1.7 KB GIF, 6.3 KB; a 270-
    # byte BMP divider, 1 KB): where the source's format was asked for, it is kept, as a
    # file already in its output format is.
    lossless_kept = output_format == OutputFormat.SAME and source_format in LOSSLESS_KEPT
    kept_original = (
        (same_format or lossless_kept)
        and len(encoded) >= len(data)
        and _original_keepable(image, source_format, orientation)
    )
    if kept_original:
        # The original's pixels, without its metadata (GPS and all); the orientation stays,
        # since these pixels were not turned.
        try:
            encoded = metadata_stripped(
                data, source_format, orientation=orientation, credits=credits
            )
        except ImagingError:
            if source_format != "GIF":
                raise
            # A GIF Pillow reads whose blocks the stripper does not (a stray byte between
            # them, its last block's end missing) gets its output: it failed whole.
            kept_original = False
    # A TIFF in `same`: browsers but Safari do not show one, so it is not kept; a drawing
    # whose JPEG or WebP would be larger than it (a 13 KB deflated size chart, 48 KB)
    # becomes a PNG of its very pixels where that is smaller (9.6 KB). Not where credits are
    # asked for, which the JPEG carries.
    made_png = False
    if (
        output_format == OutputFormat.SAME
        and source_format == "TIFF"
        and len(encoded) >= len(data)
        and not credits
    ):
        lossless = _png_of(image, icc_profile)
        if lossless is not None and len(lossless) < len(encoded):
            encoded, name, flattened, made_png = lossless, "PNG", False, True
    # The source's own pixels: they score 100 against themselves, and meet any target.
    own_pixels = kept_original or made_png
    return CompressedImage(
        data=encoded,
        format=LOSSLESS_KEPT[source_format] if lossless_kept and kept_original else name,
        width=width,
        height=height,
        source_format=source_format,
        source_quality=source_quality,
        quality=chosen.quality,
        kept_original=kept_original,
        flattened=flattened and not kept_original,
        score=100.0 if own_pixels and chosen.score is not None else chosen.score,
        tries=chosen.tries,
        target_met=True if own_pixels and chosen.target_met is not None else chosen.target_met,
        note=note,
    )


def _encoded(encoder: Encoder, quality: int, *, scored: bool) -> Choice:
    data = encoder.encode(quality)
    score = None
    if scored and (reference := _reference(encoder)) is not None:
        score = reference(data)
    return Choice(data, quality, score, tries=1, target_met=None)


def _searched(
    encoder: Encoder,
    *,
    target: float,
    start: int,
    fallback: int,
    max_tries: int,
    curve: QualityCurve,
    deadline: float | None,
) -> Choice:
    reference = _reference(encoder)
    if reference is None:  # too small to score: the fixed quality, no target to speak of
        return Choice(encoder.encode(fallback), fallback, None, tries=1, target_met=None)
    return quality_search(
        encoder.encode,
        reference,
        target=target,
        start=start,
        fallback=fallback,
        max_tries=max_tries,
        curve=curve,
        deadline=deadline,
    )


def _reference(encoder: Encoder) -> Callable[[bytes], float] | None:
    """A function scoring an output's bytes against the source, or None where the image is
    too small for the score (under 8 pixels a side)."""
    try:
        reference = Reference(encoder.source_pixels(), profile=encoder.profile)
    except ValueError:
        return None

    def score(output: bytes) -> float:
        return round(reference.score(encoder.output_pixels(output)), 2)

    return score


# What asks for a JPEG from a JPEG, the only case libjpeg-turbo's YUV path makes.
_JPEG_ASKED: Final = frozenset({OutputFormat.SAME, OutputFormat.JPEG})


def decode_cost(
    image: Image.Image, output_format: OutputFormat = OutputFormat.SAME, *, scans: int = 1
) -> int:
    """Bytes of memory the image will take at its peak, told from its header: its decoded
    pixels and what its decoder holds beside them, the converted copy the encoder is given
    where the mode must change, and what the encoder itself holds, at their most (the
    constants above). libjpeg reads rows where they lie, but for a progressive JPEG or one
    of several scans (jpeg_scan_count), whose coefficients it holds whole while it decodes,
    and frees before anything is encoded: the larger of the two phases."""
    decoded = bytes_per_pixel(image.mode)
    decoder = DECODER_BYTES_PER_PIXEL.get(image.format or "", 0)
    alpha = _has_alpha(image)
    name = _output_name(image.format or "", alpha, output_format, image.size)
    if name is None:  # a PNG kept as it is (compress), or refused
        return image.width * image.height * decoded
    if name == "AVIF":
        output_mode = "RGBA" if alpha else "RGB"
        encoder = AVIF_ALPHA_BYTES_PER_PIXEL if alpha else AVIF_BYTES_PER_PIXEL
    elif name == "WEBP":
        output_mode = "RGBA" if alpha else "RGB"
        encoder = WEBP_ALPHA_BYTES_PER_PIXEL if alpha else WEBP_BYTES_PER_PIXEL
    elif alpha:  # painted on white: an RGBA copy, then the RGB one
        output_mode, encoder = "RGB", bytes_per_pixel("RGBA") + JPEG_BYTES_PER_PIXEL
    else:
        output_mode = image.mode if image.mode in {"L", "RGB", "CMYK"} else "RGB"
        if image.mode in {"1", *HIGH_BIT_DEPTH_MODES}:
            output_mode = "L"
        encoder = JPEG_BYTES_PER_PIXEL
    converted = 0
    if image.mode in HIGH_BIT_DEPTH_MODES:
        converted = decoded + 1  # the scaled copy (convert.py's eight_bit), then its 8 bits
    elif output_mode != image.mode:
        converted = bytes_per_pixel(output_mode)
    pixels = image.width * image.height
    cost = pixels * (decoded + decoder + converted + encoder)
    layers = getattr(image, "layer", None)
    if image.format in JPEG_FORMATS and layers and (scans > 1 or image.info.get("progressive")):
        sampling = [(h, v) for _, h, v, _ in layers]
        coefficients = jpeg_coefficient_bytes(image.width, image.height, sampling)
        # Added to the encoder's, a 36 MP progressive JPEG asked for as WebP was refused at
        # 1,030 MiB; it peaks at 490.
        cost = max(cost, pixels * (decoded + decoder) + coefficients)
    return cost


def _has_alpha(image: Image.Image) -> bool:
    """Whether an opened image may be transparent, told from its header."""
    return image.format not in JPEG_FORMATS and (
        image.mode in ALPHA_MODES or "transparency" in image.info
    )


def _frames_note(image: Image.Image, source_format: str) -> str:
    """Words for the frames an output drops: every frame of an animated GIF, WebP or PNG
    but its first, every page of a TIFF but its first (an MPO's other pictures, a depth
    map or a preview, are not the shop's to see). Only the first is decoded and encoded:
    the budget (decode_cost) and the time limit are for one picture, and `same` makes a
    GIF a JPEG, which has no frames."""
    if source_format in JPEG_FORMATS or not getattr(image, "is_animated", False):
        return ""
    if source_format == "TIFF":
        # Not counted: Pillow reads each page's directory to count them, 0.3 ms a page,
        # 6 s for a 2.5 MB TIFF of 20,000 one-pixel pages. Whether there is a second one
        # is the first directory's last four bytes.
        return "A TIFF of several pages: only the first kept."
    # An APNG's or a WebP's count is in its header; a GIF's is a walk of its blocks,
    # not decoded (1 s for 15 MB of a million one-pixel frames).
    frames: int = getattr(image, "n_frames", 1)
    return f"Animated source: {frames:,} frames, only the first kept."


def _png_of(image: Image.Image, icc_profile: bytes | None) -> bytes | None:
    """The image's pixels as a PNG, its ICC profile with them; None for a mode PNG does
    not hold as it is (CMYK, 32-bit or float grey), whose conversion would not be
    lossless."""
    if image.mode not in {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}:
        return None
    output = io.BytesIO()
    image.save(output, "PNG", icc_profile=icc_profile)
    return output.getvalue()


def _original_keepable(image: Image.Image, source_format: str, orientation: int) -> bool:
    """Whether the source's own bytes may stand for an output that came out larger: only
    where they show what the output would, less their metadata (metadata_stripped). Not
    an animation (outputs keep the first frame); not pixels turned by EXIF but in a JPEG,
    whose stripped EXIF carries the orientation (a kept WebP showed sideways); not an
    AVIF with EXIF or XMP, which nothing here strips (a kept one kept its GPS). A PNG's
    are stripped, and its credits written again, as a WebP's (a flat PNG with XMP became
    a JPEG 1.7 times its size)."""
    if getattr(image, "n_frames", 1) > 1:
        return False
    if source_format in JPEG_FORMATS:
        return True
    if orientation != 1:
        return False
    return source_format in _STRIPPED_FORMATS or not (
        image.info.get("exif") or image.info.get("xmp")
    )


# What metadata_stripped takes EXIF and XMP from, beside a JPEG (a GIF's Pillow reads not).
_STRIPPED_FORMATS: Final = frozenset({"WEBP", "PNG", "GIF"})


def _arithmetic_coded(data: bytes) -> bool:
    """Whether a JPEG is arithmetic-coded: Pillow's libjpeg is built without that decoder
    (its error read "The image data is damaged"), the system's libjpeg-turbo has it."""
    frame = jpeg_frame(data)
    return frame is not None and frame[0] in ARITHMETIC_FRAMES


def _orientation(image: Image.Image) -> int:
    try:
        # A PNG is decoded here (its EXIF may follow its pixels), under the time limit
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except ImagingError:
        raise  # the time limit: taken for damaged EXIF, the decode ran again without one
    except Exception:
        return 1  # damaged EXIF: Pillow's path decides what to make of it


def check_output_size(image: Image.Image, source_format: str, asked: OutputFormat) -> None:
    """Refuse, from its header, an image no output it may become can hold: one side
    longer than the format asked for takes (MAX_SIDE), or than JPEG takes in `same`, but
    for a PNG, which `same` keeps as it is."""
    if asked == OutputFormat.SAME:
        if source_format != "PNG" and max(image.size) > MAX_SIDE["JPEG"]:
            raise _too_long(image.size, transparent=False)
        return
    name = _ASKED_NAMES[asked]
    if max(image.size) > MAX_SIDE[name]:
        raise ImagingError(
            ImageReason.TOO_MANY_PIXELS,
            f"The image is {image.width:,} x {image.height:,} pixels; {_FORMAT_NAMES[name]} "
            f"holds at most {MAX_SIDE[name]:,} pixels a side.",
        )


def _too_long(size: tuple[int, int], transparent: bool) -> ImagingError:
    width, height = size
    if transparent:
        holds = (
            f"WebP holds at most {MAX_SIDE['WEBP']:,} pixels a side and AVIF "
            f"{MAX_SIDE['AVIF']:,} (JPEG has no transparency)"
        )
    else:
        holds = f"JPEG holds at most {MAX_SIDE['JPEG']:,} pixels a side"
    return ImagingError(
        ImageReason.TOO_MANY_PIXELS, f"The image is {width:,} x {height:,} pixels; {holds}."
    )


_ASKED_NAMES: Final[dict[OutputFormat, OutputName]] = {
    OutputFormat.JPEG: "JPEG",
    OutputFormat.WEBP: "WEBP",
    OutputFormat.AVIF: "AVIF",
}
_FORMAT_NAMES: Final = {"JPEG": "JPEG", "WEBP": "WebP", "AVIF": "AVIF"}


def _output_name(
    source_format: str, transparent: bool, asked: OutputFormat, size: tuple[int, int]
) -> OutputName | None:
    """The format an image becomes; in `same`, the first that holds its size (a
    transparent image too long for WebP becomes AVIF), None where none does."""
    if asked in _ASKED_NAMES:
        return _ASKED_NAMES[asked]
    if source_format in JPEG_FORMATS:
        return "JPEG"
    if source_format == "WEBP":
        return "WEBP"
    if source_format == "AVIF" and max(size) <= MAX_SIDE["AVIF"]:
        return "AVIF"  # made JPEG, a small AVIF grew 5.7 times
    candidates: tuple[OutputName, ...] = ("WEBP", "AVIF") if transparent else ("JPEG",)
    return next((name for name in candidates if max(size) <= MAX_SIDE[name]), None)
