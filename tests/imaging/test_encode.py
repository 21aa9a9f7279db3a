"""compress(): bytes in, bytes out, no Django. Every input is made here with Pillow."""

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageCms, ImageStat, JpegImagePlugin

from imaging.encode import CompressedImage, OutputFormat, compress
from imaging.encoders import turbojpeg
from imaging.errors import ImagingError
from imaging.inspect import estimate_jpeg_quality
from imaging.score import Reference
from tests.support import (
    IJG_Q50_LUMINANCE,
    cmyk_profile,
    display_p3_profile,
    encoded,
    grey_profile,
    noisy_photo,
    photo,
)

MAX_PIXELS = 50_000_000


def run(data: bytes, **options: object) -> tuple[Image.Image, object]:
    result = compress(data, quality=50, max_pixels=MAX_PIXELS, **options)  # type: ignore[arg-type]
    return Image.open(io.BytesIO(result.data)), result


def test_a_jpeg_stays_jpeg_at_quality_50_same_size_smaller() -> None:
    # Given a quality-90 JPEG
    source = encoded(photo(640, 480), "JPEG", quality=90)

    # When it is compressed
    output, result = run(source)

    # Then it is a JPEG carrying the quality-50 tables, as large in pixels, smaller in bytes
    assert output.format == "JPEG"
    assert output.size == (640, 480)
    assert output.quantization[0] == IJG_Q50_LUMINANCE  # type: ignore[attr-defined]
    assert len(result.data) < len(source)  # type: ignore[attr-defined]
    assert result.source_quality == 90  # type: ignore[attr-defined]
    assert result.kept_original is False  # type: ignore[attr-defined]


def test_relative_mode_encodes_at_half_the_estimated_quality() -> None:
    source = encoded(photo(320, 240), "JPEG", quality=80)
    output, result = run(source, mode="relative")
    assert result.quality == 40  # type: ignore[attr-defined]
    assert estimate_jpeg_quality(output) == 40


def test_relative_mode_falls_back_to_the_fixed_quality_without_tables() -> None:
    _, result = run(encoded(photo(100, 80), "PNG"), mode="relative")
    assert result.quality == 50  # type: ignore[attr-defined]
    assert result.source_quality is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("format", ["PNG", "BMP", "TIFF", "GIF"])
def test_opaque_formats_without_quality_become_jpeg(format: str) -> None:
    source = encoded(photo(200, 150), format)
    output, _ = run(source)
    assert output.format == "JPEG"
    assert output.size == (200, 150)


def test_transparent_png_becomes_webp_keeping_transparency() -> None:
    image = photo(120, 90).convert("RGBA")
    image.putpixel((0, 0), (255, 0, 0, 0))
    image.paste((0, 0, 255, 0), (60, 0, 120, 45))
    output, _ = run(encoded(image, "PNG"))
    assert output.format == "WEBP"
    assert output.mode == "RGBA"
    assert output.getpixel((100, 20))[3] == 0  # type: ignore[index]
    assert output.getpixel((30, 70))[3] == 255  # type: ignore[index]


def test_an_alpha_channel_that_is_fully_opaque_does_not_force_webp() -> None:
    output, _ = run(encoded(photo(120, 90).convert("RGBA"), "PNG"))
    assert output.format == "JPEG"


def test_palette_png_with_a_transparent_index_becomes_webp() -> None:
    image = photo(120, 90).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    image.info["transparency"] = image.getpixel((0, 0))
    output, _ = run(encoded(image, "PNG", transparency=image.getpixel((0, 0))))
    assert output.format == "WEBP"
    assert output.getpixel((0, 0))[3] == 0  # type: ignore[index]


def unused_transparency(mode: str) -> bytes:
    """A PNG of mode whose tRNS names a colour (a palette entry) no pixel has."""
    if mode == "P":
        image = photo(120, 90).convert("P", palette=Image.Palette.ADAPTIVE, colors=63)
        palette = image.getpalette() or []
        image.putpalette([*palette, 0, 0, 0])  # a 64th entry, which no pixel has
        return encoded(image, "PNG", transparency=len(palette) // 3)
    image = photo(120, 90).convert(mode)
    if mode == "L":
        image = image.point(lambda value: max(value, 1))
        return encoded(image, "PNG", transparency=0)
    image.paste((1, 2, 3), (0, 0, 4, 4))
    return encoded(image, "PNG", transparency=(1, 2, 4))


@pytest.mark.parametrize("mode", ["P", "L", "RGB"])
def test_a_png_whose_transparent_colour_no_pixel_has_is_opaque(mode: str) -> None:
    # Given a PNG whose tRNS names a colour none of its pixels has
    source = unused_transparency(mode)
    assert "transparency" in Image.open(io.BytesIO(source)).info

    # When compressed, then it is opaque: a JPEG in the same format, not painted on white
    # as a JPEG
    output, _ = run(source)
    assert output.format == "JPEG"
    _, result = run(source, output_format=OutputFormat.JPEG)
    assert result.flattened is False  # type: ignore[attr-defined]


def test_an_rgb_png_whose_transparent_colour_a_pixel_has_becomes_webp() -> None:
    image = photo(120, 90)
    image.paste((1, 2, 3), (0, 0, 4, 4))
    output, _ = run(encoded(image, "PNG", transparency=(1, 2, 3)))
    assert output.format == "WEBP"
    assert output.getpixel((1, 1))[3] == 0  # type: ignore[index]


def sixteen_bit_rgb_png(pixels: "np.ndarray[Any, Any]", transparent: tuple[int, ...]) -> bytes:
    """A 16-bit RGB PNG (which Pillow writes only as 8 bits) of pixels, its tRNS naming
    the 16-bit colour transparent."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    height, width, _ = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tRNS", struct.pack(">HHH", *transparent))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_a_16_bit_grey_png_whose_transparent_grey_its_pixels_have_keeps_it() -> None:
    """Its 8-bit copy dropped the tRNS grey: made WebP it showed, made JPEG it said
    flattened and painted nothing."""
    grey = np.full((64, 64), 40000, np.uint16)
    grey[:, :32] = 1234  # the key grey, on the left half
    source = encoded(Image.fromarray(grey), "PNG", transparency=1234)

    webp, made = run(source)
    assert made.format == "WEBP"  # type: ignore[attr-defined]
    assert webp.convert("RGBA").getpixel((8, 8))[3] == 0  # type: ignore[index]
    assert webp.convert("RGBA").getpixel((48, 8))[3] == 255  # type: ignore[index]
    jpeg, flattened = run(source, output_format=OutputFormat.JPEG)
    assert flattened.flattened  # type: ignore[attr-defined]
    assert jpeg.convert("L").getpixel((8, 8)) >= 250  # type: ignore[operator]


def test_a_16_bit_png_whose_transparent_colour_its_pixels_have_becomes_webp() -> None:
    # Given a 16-bit RGB PNG whose left half is its tRNS colour, full red
    pixels = np.full((64, 64, 3), 20_000, dtype=np.uint16)
    pixels[:, :32] = (65535, 0, 0)
    source = sixteen_bit_rgb_png(pixels, (65535, 0, 0))
    # When compressed, then that half is transparent, not a red JPEG
    output, _ = run(source)
    assert output.format == "WEBP"
    assert output.getpixel((1, 1))[3] == 0  # type: ignore[index]
    assert output.getpixel((60, 1))[3] == 255  # type: ignore[index]


def test_webp_stays_webp() -> None:
    output, _ = run(encoded(photo(200, 150), "WEBP", quality=95))
    assert output.format == "WEBP"
    assert output.size == (200, 150)


def test_sixteen_bit_grayscale_keeps_its_tones() -> None:
    # Given a 16-bit gradient whose values run from 0 at the top to 65535 at the bottom
    gradient = Image.linear_gradient("L").resize((64, 256)).convert("I")
    deep = gradient.point(lambda value: value * 257)
    source = encoded(deep.convert("I;16"), "PNG")
    assert Image.open(io.BytesIO(source)).mode == "I;16"

    # When compressed as JPEG (as the source, a smooth gradient stays the smaller PNG),
    # then the tones survive (a naive conversion clips them to white)
    output, _ = run(source, output_format=OutputFormat.JPEG)
    assert output.mode == "L"
    top, bottom = output.getpixel((30, 5)), output.getpixel((30, 250))
    assert isinstance(top, int)
    assert isinstance(bottom, int)
    assert top < 30
    assert bottom > 225


def mean(image: Image.Image) -> float:
    return float(ImageStat.Stat(image.convert("L")).mean[0])


@pytest.mark.parametrize(
    ("mode", "scale"),
    [
        ("F", 1 / 255),  # floating point from 0 to 1, as most writers store it
        ("F", 1.0),  # floating point from 0 to 255
        ("I;16", 257),  # 16 bits, little-endian
        ("I;16B", 257),  # 16 bits, big-endian (Pillow reads it as its own mode)
    ],
)
def test_float_and_sixteen_bit_tiffs_look_like_their_source(mode: str, scale: float) -> None:
    # Given a photo's grey tones stored as floats or 16-bit integers in a TIFF
    grey = photo(160, 120).convert("L")
    deep = grey.convert("F").point(lambda value: value * scale)
    stored = deep if mode == "F" else deep.convert("I").convert(mode)
    source = encoded(stored, "TIFF")
    assert Image.open(io.BytesIO(source)).mode == mode

    # When compressed, then the output is as bright as the photo, within 10%
    output, result = run(source)
    assert result.format == "JPEG"  # type: ignore[attr-defined]
    assert abs(mean(output) - mean(grey)) <= 0.1 * mean(grey)


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_a_nearly_black_sixteen_bit_tiff_stays_black(mode: str) -> None:
    # Given a 16-bit TIFF whose values run from 0 to 199 of 65,535: black to the eye
    ramp = Image.linear_gradient("L").resize((64, 200)).convert("I")
    source = encoded(ramp.point(lambda value: value * 199 / 255).convert(mode), "TIFF")
    assert Image.open(io.BytesIO(source)).mode == mode

    # When compressed, then it is black, in either byte order (its bit depth is its
    # mode's, not guessed from its brightest value)
    output, _ = run(source)
    assert output.getextrema() == (0, 0)


def test_grayscale_and_cmyk_jpegs_keep_their_colour_space() -> None:
    gray, _ = run(encoded(photo(100, 80).convert("L"), "JPEG", quality=90))
    cmyk, _ = run(encoded(photo(100, 80).convert("CMYK"), "JPEG", quality=90))
    assert gray.mode == "L"
    assert cmyk.mode == "CMYK"


@pytest.mark.parametrize("output_format", [OutputFormat.WEBP, OutputFormat.AVIF])
def test_a_cmyk_jpeg_made_webp_or_avif_has_the_colours_its_profile_gives(
    output_format: OutputFormat,
) -> None:
    # Given a printer's CMYK JPEG, bands of each ink alone and of none, with its ICC profile
    profile = cmyk_profile(paper=(95.0, 0.0, 4.0))
    inks = Image.new("CMYK", (160, 120))
    for band, ink in enumerate([(0, 0, 0, 0), (255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0)]):
        inks.paste(ink, (band * 40, 0, band * 40 + 40, 120))
    source = encoded(inks, "JPEG", quality=95, icc_profile=profile)

    # When it is asked for as WebP or AVIF (RGB only: no CMYK, so no CMYK profile)
    result = compress(source, quality=90, max_pixels=MAX_PIXELS, output_format=output_format)

    # Then its colours are what the profile says they look like, not Pillow's inks-as-
    # primaries (full cyan as 0, 255, 255)
    output = Image.open(io.BytesIO(result.data)).convert("RGB")
    decoded = Image.open(io.BytesIO(source))
    source_profile = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    srgb = ImageCms.createProfile("sRGB")
    managed = ImageCms.profileToProfile(decoded, source_profile, srgb, outputMode="RGB")
    assert managed is not None
    middles = [(band * 40 + 20, 60) for band in range(4)]
    for middle in middles:
        assert channel_gap(output, managed, middle) <= 12
    assert channel_gap(output, decoded.convert("RGB"), middles[1]) > 60  # cyan
    assert not output.info.get("icc_profile")  # sRGB, as an image without one is read


@pytest.mark.parametrize("output_format", [OutputFormat.WEBP, OutputFormat.AVIF])
def test_a_grey_image_made_webp_or_avif_has_the_tones_its_profile_gives(
    output_format: OutputFormat,
) -> None:
    # Given a flat grey PNG whose profile says its values are linear light (gamma 1.0)
    source = encoded(Image.new("L", (64, 48), 128), "PNG", icc_profile=grey_profile(1.0))

    # When it is asked for as WebP or AVIF
    result = compress(source, quality=90, max_pixels=MAX_PIXELS, output_format=output_format)

    # Then it is as light as its profile says (sRGB 188), not sRGB's own 128
    output = Image.open(io.BytesIO(result.data)).convert("RGB")
    assert channel_gap(output, Image.new("RGB", output.size, (188, 188, 188)), (32, 24)) <= 3
    assert not output.info.get("icc_profile")


@pytest.mark.parametrize("output_format", [OutputFormat.SAME, OutputFormat.AVIF])
def test_a_transparent_grey_image_keeps_its_tones_and_its_alpha(
    output_format: OutputFormat,
) -> None:
    """Grey with alpha skipped the profile: linear 128 came out as sRGB 129, not 188."""
    # Given a grey PNG, half of it transparent, whose profile says its values are linear
    grey = Image.new("LA", (64, 48), (128, 255))
    grey.paste((128, 0), (0, 0, 32, 48))
    source = encoded(grey, "PNG", icc_profile=grey_profile(1.0))

    # When it is compressed (to WebP in `same`, for its transparency) or asked for as AVIF
    result = compress(source, quality=90, max_pixels=MAX_PIXELS, output_format=output_format)

    # Then its opaque half is as light as its profile says, and its other half transparent
    output = Image.open(io.BytesIO(result.data)).convert("RGBA")
    opaque: Any = output.getpixel((48, 24))
    assert abs(opaque[0] - 188) <= 3
    assert opaque[3] == 255
    assert output.getpixel((8, 24))[3] < 8  # type: ignore[index]


def test_a_transparent_grey_image_made_jpeg_stays_grey_with_its_profile() -> None:
    # Given a grey PNG with a transparent half and a linear profile
    grey = Image.new("LA", (64, 48), (128, 255))
    grey.paste((128, 0), (0, 0, 32, 48))
    profile = grey_profile(1.0)
    source = encoded(grey, "PNG", icc_profile=profile)

    # When it is asked for as JPEG
    result = compress(source, quality=90, max_pixels=MAX_PIXELS, output_format=OutputFormat.JPEG)

    # Then it is painted on white in grey, its profile kept to tell its tones
    output = Image.open(io.BytesIO(result.data))
    assert output.mode == "L"
    assert result.flattened
    assert output.info.get("icc_profile") == profile
    assert output.getpixel((8, 24)) >= 250  # type: ignore[operator]


def channel_gap(first: Image.Image, second: Image.Image, xy: tuple[int, int]) -> int:
    """The largest difference of a channel between two RGB images' pixels at xy."""
    pixels: list[Any] = [first.getpixel(xy), second.getpixel(xy)]
    return int(max(abs(a - b) for a, b in zip(*pixels, strict=True)))


def test_a_cmyk_jpeg_with_a_broken_profile_made_webp_takes_pillows_colours() -> None:
    cmyk = photo(80, 60).convert("CMYK")
    source = encoded(cmyk, "JPEG", quality=90, icc_profile=b"not a profile")
    result = compress(source, quality=50, max_pixels=MAX_PIXELS, output_format=OutputFormat.WEBP)
    assert Image.open(io.BytesIO(result.data)).mode == "RGB"


def in_srgb(data: bytes) -> np.ndarray:
    """An image's pixels as LittleCMS takes them to sRGB through their profile, unoptimised
    (its optimised grey transform read a linear profile's 1 as 6, not 13)."""
    image = Image.open(io.BytesIO(data))
    profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
    srgb = ImageCms.createProfile("sRGB")
    flags = ImageCms.Flags.NOOPTIMIZE
    transform = ImageCms.buildTransform(profile, srgb, image.mode, "RGB", flags=flags)
    return np.asarray(ImageCms.applyTransform(image, transform))


def as_srgb(data: bytes) -> np.ndarray:
    """An image's pixels as they are, read as sRGB whatever its profile."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def display_p3_photo(format: str) -> bytes:
    """A photo tagged Display P3, its colours mostly inside sRGB's gamut (half saturated):
    LittleCMS clips those outside it to 8-bit sRGB, where the score reads them whole."""
    colours = noisy_photo(640, 480)
    photo = Image.blend(colours.convert("L").convert("RGB"), colours, 0.5)
    options = {"quality": 92} if format == "JPEG" else {}
    return encoded(photo, format, icc_profile=display_p3_profile(), **options)


@pytest.mark.parametrize(
    ("source", "quality"),
    [
        (display_p3_photo("JPEG"), 30),  # libjpeg-turbo's YUV path
        (display_p3_photo("PNG"), 30),  # Pillow's
        (encoded(noisy_photo(640, 480).convert("L"), "JPEG", icc_profile=grey_profile(1.0)), 60),
    ],
    ids=["display-p3-jpeg", "display-p3-png", "linear-grey-jpeg"],
)
def test_an_image_with_a_profile_is_scored_as_it_looks(source: bytes, quality: int) -> None:
    """Its device values were read as sRGB's: P3 scored 0.7-1.9 high, linear grey 3-14 low,
    and the perceptual search chose its quality on that score."""
    # Given a photo whose profile is a matrix and tone curves (Display P3, linear grey)
    # When it is compressed and scored (its output keeps its profile)
    result = compress(source, quality=quality, max_pixels=MAX_PIXELS, scored=True)

    # Then its score is both images' in sRGB, as LittleCMS converts them (its 8-bit
    # rounding takes 0.3-0.5 off), not what their values score read as sRGB
    assert result.score is not None
    in_srgb_score = Reference(in_srgb(source)).score(in_srgb(result.data))
    assert result.score == pytest.approx(in_srgb_score, abs=0.5)
    as_srgb_score = Reference(as_srgb(source)).score(as_srgb(result.data))
    assert abs(as_srgb_score - in_srgb_score) > 0.5


@pytest.mark.parametrize(
    "profile",
    [
        ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        b"not a profile",
        cmyk_profile(paper=(95.0, 0.0, 4.0)),  # tables, and CMYK
        grey_profile(1.0),  # grey, on RGB pixels
    ],
    ids=["srgb", "damaged", "cmyk-tables", "grey"],
)
@pytest.mark.parametrize("format", ["JPEG", "PNG"])
def test_an_image_with_srgb_s_or_a_profile_not_read_scores_as_one_without(
    profile: bytes, format: str
) -> None:
    # Given the same photo with a profile the score reads as sRGB, and without one
    photo = noisy_photo(320, 240)
    tagged = encoded(photo, format, icc_profile=profile)
    untagged = encoded(photo, format)

    # When both are compressed and scored, Then they score the same, to the last digit
    scores = [
        compress(data, quality=40, max_pixels=MAX_PIXELS, scored=True).score
        for data in (tagged, untagged)
    ]
    assert scores[0] is not None
    assert scores[0] == scores[1]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_to_the_pixels(orientation: int) -> None:
    # Given a 200x100 image whose top-left corner is red, tagged with an orientation
    image = Image.new("RGB", (200, 100), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 50, 25))
    exif = Image.Exif()
    exif[0x0112] = orientation
    source = encoded(image, "JPEG", quality=95, exif=exif.tobytes())

    # When compressed
    output, _ = run(source)

    # Then the output looks as a viewer would show the source, and carries no orientation
    upright = Image.open(io.BytesIO(source))
    from PIL import ImageOps

    expected = ImageOps.exif_transpose(upright)
    assert output.size == expected.size
    assert output.getexif().get(0x0112) is None
    for x, y in [(5, 5), (expected.width - 5, 5), (5, expected.height - 5)]:
        got, want = output.getpixel((x, y)), expected.getpixel((x, y))
        assert isinstance(got, tuple)
        assert isinstance(want, tuple)
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 40


def test_icc_profile_is_kept_and_other_metadata_dropped() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif[0x8825] = {1: "N"}  # a GPS block
    source = encoded(photo(160, 120), "JPEG", quality=90, icc_profile=profile, exif=exif.tobytes())
    output, _ = run(source)
    assert output.info.get("icc_profile") == profile
    assert "exif" not in output.info
    assert len(output.getexif()) == 0


def test_colours_survive_on_a_known_patch() -> None:
    image = Image.new("RGB", (128, 128), (200, 30, 60))
    output, _ = run(encoded(image, "PNG"))
    pixel = output.convert("RGB").getpixel((64, 64))
    assert isinstance(pixel, tuple)
    assert max(abs(a - b) for a, b in zip(pixel, (200, 30, 60), strict=True)) <= 6


def test_an_animated_gif_keeps_its_first_frame() -> None:
    frames = [Image.new("RGB", (64, 64), colour) for colour in [(250, 0, 0), (0, 250, 0)]]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    output, result = run(buffer.getvalue())
    assert output.format == "JPEG"
    assert getattr(output, "n_frames", 1) == 1
    pixel = output.getpixel((32, 32))
    assert isinstance(pixel, tuple)
    assert pixel[0] > 200
    assert pixel[1] < 50
    assert result.note == "Animated source: 2 frames, only the first kept."  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("format", "note"),
    [
        ("WEBP", "Animated source: 3 frames, only the first kept."),
        ("PNG", "Animated source: 3 frames, only the first kept."),
        ("TIFF", "A TIFF of several pages: only the first kept."),
    ],
)
def test_an_animation_or_a_tiff_of_pages_says_it_kept_the_first_alone(
    format: str, note: str
) -> None:
    # Given three frames (or pages), red, green and blue
    frames = [Image.new("RGB", (64, 64), colour) for colour in ["red", "green", "blue"]]
    source = encoded(frames[0], format, save_all=True, append_images=frames[1:], duration=100)

    # When compressed, then the output is the first, and says what it left out
    output, result = run(source)
    pixel = output.convert("RGB").getpixel((32, 32))
    assert isinstance(pixel, tuple)
    assert pixel[0] > 200
    assert pixel[1] < 50
    assert result.note == note  # type: ignore[attr-defined]
    # A still image has nothing to say
    assert run(encoded(frames[0], format))[1].note == ""  # type: ignore[attr-defined]


def test_an_output_that_would_grow_keeps_the_input_bytes() -> None:
    # Given a JPEG already at quality 10: at 50 it would be larger
    source = encoded(photo(200, 150), "JPEG", quality=10)
    _, result = run(source)
    assert result.kept_original is True  # type: ignore[attr-defined]
    assert result.data == source  # type: ignore[attr-defined]


def test_an_avif_stays_avif_and_is_kept_where_it_would_grow() -> None:
    """An AVIF became a JPEG in `same`: a small one came out 5.7 times larger."""
    output, made = run(encoded(photo(96, 64), "AVIF", quality=90))
    assert (output.format, output.size) == ("AVIF", (96, 64))
    assert made.kept_original is False  # type: ignore[attr-defined]
    small = encoded(photo(96, 64), "AVIF", quality=20)
    _, kept = run(small)
    assert kept.kept_original is True  # type: ignore[attr-defined]
    assert kept.format == "AVIF"  # type: ignore[attr-defined]


def test_a_truncated_jpeg_is_a_corrupt_image() -> None:
    source = encoded(photo(320, 240), "JPEG", quality=90)
    with pytest.raises(ImagingError) as raised:
        compress(source[: len(source) // 2], quality=50, max_pixels=MAX_PIXELS)
    assert raised.value.reason == "corrupt_image"
    assert raised.value.transient is False


# --- libjpeg-turbo's YUV path for plain JPEGs ----------------------------------------------


def test_the_yuv_path_is_available_where_the_tests_run() -> None:
    # make test installs libturbojpeg0; without it every JPEG would quietly use Pillow.
    assert turbojpeg() is not None


@pytest.mark.parametrize(("subsampling", "sampling"), [("4:4:4", 0), ("4:2:2", 1), ("4:2:0", 2)])
def test_a_plain_jpeg_keeps_its_chroma_subsampling_on_the_yuv_path(
    subsampling: str, sampling: int
) -> None:
    # Given an upright quality-90 JPEG with a given subsampling
    source = encoded(photo(320, 240), "JPEG", quality=90, subsampling=subsampling)

    # When it is compressed
    output, result = run(source)

    # Then the YUV path kept the source's planes (Pillow would choose 4:2:0 itself)
    assert JpegImagePlugin.get_sampling(output) == sampling
    assert output.quantization[0] == IJG_Q50_LUMINANCE  # type: ignore[attr-defined]
    assert output.size == (320, 240)
    assert result.quality == 50  # type: ignore[attr-defined]


def test_the_yuv_path_is_as_faithful_to_the_source_as_pillow() -> None:
    # Given a photo, saved at quality 90
    original = photo(400, 300, seed=3)
    source = encoded(original, "JPEG", quality=90)

    # When it is compressed on the YUV path and, to compare, by Pillow
    fast = compress(source, quality=50, max_pixels=MAX_PIXELS)
    slow = compress(source, quality=50, max_pixels=MAX_PIXELS, fast_jpeg=False)

    # Then both are the same size, and stray from the photo by about as much
    def error(data: bytes) -> float:
        decoded = Image.open(io.BytesIO(data)).convert("RGB")
        return sum(ImageStat.Stat(ImageChops.difference(original, decoded)).mean) / 3

    assert (fast.width, fast.height) == (slow.width, slow.height) == (400, 300)
    assert error(fast.data) <= error(slow.data) * 1.15


def test_an_icc_profile_longer_than_one_segment_is_kept_whole() -> None:
    # Given a JPEG whose profile spans two APP2 segments (Pillow checks no profile content)
    profile = bytes(range(256)) * 400  # 102,400 bytes
    source = encoded(photo(160, 120), "JPEG", quality=90, icc_profile=profile)

    output, _ = run(source)

    assert output.info.get("icc_profile") == profile
    assert output.info.get("jfif") is not None  # the JFIF header stays first


def transparent_png() -> bytes:
    """A 120 x 90 photo with a fully transparent top-right quarter."""
    image = photo(120, 90).convert("RGBA")
    image.paste((0, 0, 255, 0), (60, 0, 120, 45))
    return encoded(image, "PNG")


@pytest.mark.parametrize(
    ("asked", "name"), [(OutputFormat.WEBP, "WEBP"), (OutputFormat.AVIF, "AVIF")]
)
def test_a_transparent_png_asked_for_as_webp_or_avif_keeps_its_transparency(
    asked: OutputFormat, name: str
) -> None:
    output, result = run(transparent_png(), output_format=asked)
    assert isinstance(result, CompressedImage)
    assert (output.format, result.format, result.extension) == (name, name, name.lower())
    assert output.size == (120, 90)
    assert output.mode == "RGBA"
    assert output.getpixel((100, 20))[3] == 0  # type: ignore[index]
    assert output.getpixel((30, 70))[3] == 255  # type: ignore[index]
    assert result.flattened is False


def test_a_transparent_png_asked_for_as_jpeg_is_painted_on_white_and_says_so() -> None:
    output, result = run(transparent_png(), output_format=OutputFormat.JPEG)
    assert isinstance(result, CompressedImage)
    assert (output.format, output.mode, output.size) == ("JPEG", "RGB", (120, 90))
    assert result.flattened is True
    # the transparent quarter is white, not black; the rest is the photo
    red, green, blue = output.getpixel((100, 20))  # type: ignore[misc]
    assert min(red, green, blue) > 235


def test_a_jpeg_asked_for_as_avif_is_smaller_upright_and_keeps_its_icc_profile() -> None:
    # Given a JPEG photo with an ICC profile, turned by its EXIF orientation (6: 90 degrees)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x8825] = {1: "N"}  # a GPS block
    source = encoded(photo(320, 240), "JPEG", quality=90, icc_profile=profile, exif=exif.tobytes())

    # When it is asked for as AVIF, and as JPEG
    avif, as_avif = run(source, output_format=OutputFormat.AVIF)
    jpeg, as_jpeg = run(source, output_format=OutputFormat.JPEG)

    # Then the AVIF is upright, keeps the profile and drops the GPS, and is smaller than
    # the JPEG at the same quality number
    assert isinstance(as_avif, CompressedImage)
    assert isinstance(as_jpeg, CompressedImage)
    assert (avif.format, avif.size, jpeg.size) == ("AVIF", (240, 320), (240, 320))
    assert avif.info.get("icc_profile") == profile
    assert len(avif.getexif()) == 0
    assert len(as_avif.data) < len(as_jpeg.data) < len(source)


def test_the_memory_budget_counts_the_encoder_of_the_format_asked_for() -> None:
    # Given a 2000 x 2000 photo: 12 MB of pixels, up to 96 MB with libwebp's encoder and
    # 132 MB with libavif's
    source = encoded(photo(2000, 2000), "PNG")

    # When the budget fits JPEG and WebP but not AVIF
    for asked in (OutputFormat.JPEG, OutputFormat.WEBP):
        run(source, output_format=asked, max_decode_bytes=110_000_000)
    with pytest.raises(ImagingError) as refused:
        run(source, output_format=OutputFormat.AVIF, max_decode_bytes=110_000_000)

    # Then the AVIF is refused before anything is decoded
    assert refused.value.reason == "too_many_pixels"


@pytest.mark.parametrize(("subsampling", "name"), [(0, "4:4:4"), (1, "4:2:2")])
def test_a_jpeg_turned_by_exif_keeps_its_chroma_subsampling_through_pillow(
    subsampling: int, name: str
) -> None:
    """Pillow's own default is 4:2:0: a 4:4:4 source turned by EXIF lost half its colour
    detail, smearing red and blue lettering, where an upright one kept it."""
    exif = Image.Exif()
    exif[0x0112] = 6
    source = encoded(photo(320, 240), "JPEG", quality=90, subsampling=subsampling, exif=exif)
    result = compress(source, quality=80, max_pixels=MAX_PIXELS)
    assert not result.kept_original
    output = Image.open(io.BytesIO(result.data))
    assert output.size == (240, 320)
    assert JpegImagePlugin.get_sampling(output) == subsampling, name


def test_a_grey_profile_is_not_written_on_rgb_avif_pixels() -> None:
    """Pillow's AVIF encoder took the profile the converted pixels still carried in their
    info: a grey ICC profile on an RGB image, which colour management refuses."""
    lab_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    grey = photo(160, 120).convert("L")
    grey.info["icc_profile"] = lab_profile
    source = encoded(grey, "PNG", icc_profile=lab_profile)
    result = compress(source, quality=50, max_pixels=MAX_PIXELS, output_format=OutputFormat.AVIF)
    output = Image.open(io.BytesIO(result.data))
    assert output.mode == "RGB"
    assert not output.info.get("icc_profile")


@pytest.mark.parametrize(
    ("size", "output_format", "told"),
    [
        ((16_384, 8), "webp", "The image is 16,384 x 8 pixels; WebP holds at most 16,383"),
        ((8, 32_769), "avif", "The image is 8 x 32,769 pixels; AVIF holds at most 32,768"),
        ((65_501, 2), "jpeg", "The image is 65,501 x 2 pixels; JPEG holds at most 65,500"),
    ],
)
def test_an_image_longer_than_the_format_asked_for_holds_is_refused_before_decoding(
    size: tuple[int, int], output_format: str, told: str
) -> None:
    # Given a PNG one side of which the format asked for cannot hold, cut after its
    # header (decoding it would fail as damaged)
    whole = encoded(Image.new("L", size, 90), "PNG")
    source = whole[: whole.index(b"IDAT") + 8]

    # When it is compressed in that format, then it is refused for its size, not encoded
    # (libavif wrote AVIFs its own decoder refused, libwebp and libjpeg failed obscurely)
    with pytest.raises(ImagingError) as refused:
        run(source, output_format=output_format)
    assert refused.value.reason == "too_many_pixels"
    assert refused.value.message.startswith(told)


def test_an_avif_as_long_as_avif_holds_can_be_read_back() -> None:
    output, result = run(encoded(Image.new("L", (4, 32_768), 90), "PNG"), output_format="avif")
    output.load()
    assert output.size == (4, 32_768)
    assert result.format == "AVIF"  # type: ignore[attr-defined]


def test_a_gif_a_jpeg_would_grow_is_kept_without_its_comment() -> None:
    # Given a two-colour logo as GIF, with a comment
    logo = Image.new("P", (200, 80), 0)
    logo.putpalette([255, 255, 255, 200, 30, 30] + [0] * 762)
    logo.paste(1, (20, 20, 180, 60))
    source = encoded(logo, "GIF", comment=b"made by an editor, 2019")

    # When it is compressed in the source's format, which a JPEG would make larger
    output, result = run(source)

    # Then the GIF is kept, its comment gone, its pixels as they were
    assert result.kept_original is True  # type: ignore[attr-defined]
    assert (result.format, output.format) == ("GIF", "GIF")  # type: ignore[attr-defined]
    assert b"made by an editor" in source
    assert b"made by an editor" not in result.data  # type: ignore[attr-defined]
    assert output.convert("RGB").tobytes() == logo.convert("RGB").tobytes()


@pytest.mark.parametrize(
    "mended",
    [
        lambda gif: gif[:-1] + b"\0;",  # a stray byte before the trailer
        lambda gif: gif[:-2],  # its last block's end and the trailer missing
    ],
    ids=["stray byte", "last block unended"],
)
def test_a_gif_pillow_reads_but_that_cannot_be_stripped_gets_its_output(
    mended: Callable[[bytes], bytes],
) -> None:
    # Given a logo as GIF, a JPEG of which would be larger, whose blocks Pillow reads
    # though they are not as the format has them
    logo = Image.new("P", (200, 80), 0)
    logo.putpalette([255, 255, 255, 200, 30, 30] + [0] * 762)
    logo.paste(1, (20, 20, 180, 60))
    source = mended(encoded(logo, "GIF"))
    Image.open(io.BytesIO(source)).load()

    # When it is compressed in the source's format, then it is not kept, and not refused
    output, result = run(source)
    assert result.kept_original is False  # type: ignore[attr-defined]
    assert output.format == "JPEG"


def test_a_png_longer_than_jpeg_holds_is_kept_as_png_in_the_same_format() -> None:
    # Given an opaque PNG taller than any JPEG (a long strip, a size chart)
    source = encoded(photo(2, 70_000).convert("RGB"), "PNG")

    # When it is compressed in the source's format
    output, result = run(source)

    # Then it stays the PNG it was, untouched
    assert output.format == "PNG"
    assert output.size == (2, 70_000)
    assert result.kept_original is True  # type: ignore[attr-defined]
    assert result.tries == 0  # type: ignore[attr-defined]


def test_a_transparent_image_wider_than_webp_holds_becomes_avif_in_the_same_format() -> None:
    # Given a transparent TIFF wider than WebP takes
    image = photo(20_000, 16).convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 100, 8))
    source = encoded(image, "TIFF")

    # When it is compressed in the source's format, then it is the next format that
    # holds it and keeps transparency: AVIF
    output, _ = run(source)
    assert output.format == "AVIF"
    assert output.size == (20_000, 16)
    assert output.getpixel((10, 2))[3] < 8  # type: ignore[index]  # AVIF's alpha is lossy


def test_an_image_no_output_format_holds_is_refused_before_decoding() -> None:
    # Given a TIFF taller than JPEG takes, damaged after its header
    whole = encoded(Image.new("L", (2, 65_501), 90), "TIFF")
    source = whole[: len(whole) // 2]

    # When it is compressed in the source's format, then it is refused for its size
    with pytest.raises(ImagingError) as refused:
        run(source)
    assert refused.value.reason == "too_many_pixels"
    assert refused.value.message == (
        "The image is 2 x 65,501 pixels; JPEG holds at most 65,500 pixels a side."
    )


def arithmetic_coded(jpeg: bytes) -> bytes:
    """jpeg with its frame marked as arithmetic-coded (SOF9): enough for what is told
    from the header, which is all that is read of it here."""
    return jpeg.replace(b"\xff\xc0", b"\xff\xc9", 1)


@pytest.mark.parametrize(
    "options",
    [{"output_format": "webp"}, {"fast_jpeg": False}],
    ids=["as webp", "through pillow"],
)
def test_an_arithmetic_coded_jpeg_pillow_cannot_read_is_told_as_such(
    options: dict[str, object],
) -> None:
    # Given an arithmetic-coded JPEG, which Pillow's libjpeg cannot decode
    source = arithmetic_coded(encoded(photo(64, 48), "JPEG", quality=90))

    # When it is to be decoded by Pillow, then it is refused for its coding, not as damaged
    with pytest.raises(ImagingError) as refused:
        run(source, **options)
    assert refused.value.reason == "not_an_image"
    assert "arithmetic coding" in refused.value.message
    assert "standard (Huffman-coded) JPEG" in refused.value.message
