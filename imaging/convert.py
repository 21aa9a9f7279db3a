"""The decoded pixels as an output format's encoder takes them: 8 bits a channel, a mode it
encodes, transparency kept (WebP, AVIF) or painted on white (JPEG), never on black."""

import io
from typing import Any, Final, Literal

import numpy as np
from PIL import Image, ImageCms

from imaging.encoders import ALPHA_MODES

ColourSpace = Literal["gray", "rgb", "cmyk", "other"]

HIGH_BIT_DEPTH_MODES: Final = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

_BAND_ROWS: Final = 256
_SRGB: Final = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def has_transparency(image: Image.Image) -> bool:
    """True if any pixel of the decoded image is less than fully opaque."""
    if image.mode in ALPHA_MODES:
        # getextrema reads every band where it lies (alpha is the last): no copy of it.
        extrema: Any = image.getextrema()
        return bool(extrema[-1][0] < 255)
    # A PNG's tRNS names the transparent palette entries or colour, which no pixel may use
    # (an editor's leftover): such an image went to WebP, or was said to be flattened.
    transparent = image.info.get("transparency")
    if transparent is None:
        return False
    if image.mode == "P":
        counts = image.histogram()  # pixels of each palette entry, counted where they lie
        if isinstance(transparent, bytes):  # an alpha for each entry
            return any(alpha < 255 and counts[entry] for entry, alpha in enumerate(transparent))
        return bool(counts[transparent]) if isinstance(transparent, int) else True
    if image.mode in {"L", "RGB", "I", "I;16"}:
        return _any_pixel_is(image, transparent)
    return True


def _any_pixel_is(image: Image.Image, colour: object) -> bool:
    """Whether any pixel of a grey or RGB image is colour, read a band of rows at a time
    (a copy of the band, not of the image): 0.24 s for a 12 MP RGB PNG with no such pixel,
    a palette image's count 4 ms."""
    wanted = np.asarray(colour)
    if image.mode in {"L", "RGB"}:
        # As Pillow's convert("RGBA"), which makes them transparent, compares them: by each
        # value's low byte. A 16-bit PNG is read as 8 bits, its tRNS is not: (65535, 0, 0)
        # named pixels (255, 0, 0), which went opaque to JPEG in their key colour.
        wanted = wanted & 0xFF
    for top in range(0, image.height, _BAND_ROWS):
        band = np.asarray(image.crop((0, top, image.width, min(top + _BAND_ROWS, image.height))))
        matches = band == wanted
        if (matches.all(axis=-1) if band.ndim == 3 else matches).any():
            return True
    return False


def converted_for(
    output_format: str, image: Image.Image, transparent: bool, icc_profile: bytes | None = None
) -> Image.Image:
    """image (decoded, turned upright) in a mode output_format's encoder takes: 8 bits,
    RGB or RGBA for WebP and AVIF, and for JPEG grey, RGB or CMYK, transparency painted on
    white. A CMYK or grey image made RGB goes through its ICC profile, where it has one;
    a transparent grey one painted on white stays grey, and keeps its profile."""
    if image.mode in HIGH_BIT_DEPTH_MODES:
        alpha = _colour_key_alpha(image) if transparent else None
        image = eight_bit(image)
        if alpha is not None:  # its tRNS grey, which eight_bit's copy no longer names
            image.putalpha(alpha)
    grey = image.mode in {"L", "LA"}
    if output_format in {"WEBP", "AVIF"}:
        wanted = "RGBA" if transparent else "RGB"
        if icc_profile and (grey or (image.mode == "CMYK" and not transparent)):
            converted = _srgb_alpha_kept(image, icc_profile, transparent)
            if converted is not None:
                return converted
        return image if image.mode == wanted else image.convert(wanted)
    if transparent and grey:  # on white, in grey: its profile still fits its pixels
        grey_alpha = image if image.mode == "LA" else image.convert("LA")
        white = Image.new("L", grey_alpha.size, 255)
        white.paste(grey_alpha.getchannel("L"), mask=grey_alpha.getchannel("A"))
        return white
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


def _srgb_alpha_kept(
    image: Image.Image, icc_profile: bytes, transparent: bool
) -> Image.Image | None:
    """srgb_from, the alpha of a transparent grey image put back beside the converted
    colours: a grey profile's tones were dropped with it (linear 128 shown as 129, not
    188)."""
    if not transparent:
        return srgb_from(image.convert("L") if image.mode == "LA" else image, icc_profile)
    grey_alpha = image if image.mode == "LA" else image.convert("LA")
    converted = srgb_from(grey_alpha.getchannel("L"), icc_profile)
    if converted is not None:
        converted.putalpha(grey_alpha.getchannel("A"))
    return converted


def _colour_key_alpha(image: Image.Image) -> Image.Image | None:
    """The alpha of a 16-bit grey image whose tRNS names its transparent grey: 0 where a
    pixel is that grey. Its 8-bit copy was opaque: made WebP, the key grey showed; made
    JPEG, it said flattened and painted nothing."""
    key = image.info.get("transparency")
    if not isinstance(key, int):
        return None
    return Image.fromarray(np.where(np.asarray(image) == key, 0, 255).astype(np.uint8), "L")


def srgb_from(image: Image.Image, icc_profile: bytes) -> Image.Image | None:
    """image's colours in sRGB, as its ICC profile says they look; None where the profile
    cannot be read or does not fit the image. WebP and AVIF hold RGB only, so a CMYK or
    grey profile cannot travel with the pixels for the browser to apply. Pillow's own
    conversion takes a printer's inks for the screen's primaries (full cyan ink becomes
    0, 255, 255, brighter than any ink on paper) and a grey value for sRGB's whatever its
    profile's tone curve (a dot-gain curve prints 128 darker)."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None
    return converted


def eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or floating-point grey image as 8-bit grey that looks like it:
    convert("L") alone would clip every value above 255 (a white image) or round a
    0-to-1 float image to black."""
    # 16 bits by their mode, whatever their values: a nearly black big-endian TIFF (0 to
    # 199) came out as a visible 0-to-200 ramp when its scale was guessed from its highest.
    sixteen_bits = image.mode.startswith("I;16")
    if image.mode in {"I;16B", "I;16L", "I;16N"}:
        image = image.convert("I")  # point() takes I;16 and I, not these
    extrema: Any = image.getextrema()  # one band: (lowest, highest)
    high = float(extrema[1])
    if image.mode == "F" and high <= 1.0:
        scale = 255.0  # a 0-to-1 float image, as TIFF writers store them
    elif sixteen_bits or 255 < high <= 65535:
        scale = 1 / 256  # 16-bit values
    elif high > 65535:
        scale = 255 / high
    else:
        scale = 1.0
    if scale != 1.0:
        image = image.point(lambda value: value * scale)
    return image.convert("L")


def colour_space(image: Image.Image) -> ColourSpace:
    """What kind of colours a mode holds: an ICC profile fits only images of its kind."""
    if image.mode in {"L", "LA", "1", "La", *HIGH_BIT_DEPTH_MODES}:
        return "gray"
    if image.mode in {"RGB", "RGBA", "RGBX", "P", "PA", "RGBa"}:
        return "rgb"
    if image.mode == "CMYK":
        return "cmyk"
    return "other"
