"""ICC profiles as the score reads them (imaging/icc.py), made in the test."""

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms

from imaging.icc import SRGB_LINEAR, matrix_profile
from tests.support import (
    cmyk_profile,
    display_p3_profile,
    grey_profile,
    icc_assembled,
    noisy_photo,
)

SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def srgb_encoded(linear: np.ndarray) -> np.ndarray:
    """Linear sRGB as 8-bit sRGB values, clipped to its gamut."""
    clipped = np.clip(linear, 0.0, 1.0)
    encoded = np.where(clipped <= 0.0031308, clipped * 12.92, 1.055 * clipped ** (1 / 2.4) - 0.055)
    return np.asarray(np.round(encoded * 255), dtype=int)


def test_an_srgb_profile_is_read_as_srgb() -> None:
    # Given the sRGB profile LittleCMS makes (its matrix and curve rounded to 16 bits)
    # When it is read, Then it is taken for sRGB itself: its image scores as an untagged one
    assert matrix_profile(SRGB_PROFILE, grey=False) is None


def test_a_display_p3_image_reaches_the_srgb_littlecms_makes_of_it() -> None:
    # Given a photo's pixels read as Display P3
    profile = matrix_profile(display_p3_profile(), grey=False)
    assert profile is not None
    pixels = np.asarray(noisy_photo(96, 64))

    # When they are taken through its curves and matrix, and back to 8-bit sRGB
    linear = profile.curves[pixels, [0, 1, 2]] @ profile.to_srgb.T

    # Then they are what LittleCMS makes of them, within a level, and not what they were
    source = ImageCms.ImageCmsProfile(io.BytesIO(display_p3_profile()))
    image = Image.fromarray(pixels, "RGB")
    converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"))
    assert converted is not None
    expected = np.asarray(converted).astype(int)
    assert np.abs(srgb_encoded(linear) - expected).max() <= 1
    assert np.abs(pixels.astype(int) - expected).max() > 20


def test_a_grey_profile_is_read_through_its_tone_curve() -> None:
    # Given a grey profile whose tone curve says its values are linear light
    profile = matrix_profile(grey_profile(1.0), grey=True)

    # Then each value is its own linear light in all three channels, grey staying grey
    assert profile is not None
    assert profile.curves[128] == pytest.approx([128 / 255] * 3, abs=1e-6)
    assert profile.to_srgb == pytest.approx(np.identity(3))


def _parametric(kind: int, *parameters: float) -> bytes:
    numbers = [round(parameter * 65536) for parameter in parameters]
    return b"para" + bytes(4) + struct.pack(f">HH{len(numbers)}i", kind, 0, *numbers)


@pytest.mark.parametrize(
    ("curve", "middle"),
    [
        (b"curv" + bytes(4) + struct.pack(">I", 0), 128 / 255),  # no entries: identity
        (b"curv" + bytes(4) + struct.pack(">IH", 1, 563), (128 / 255) ** (563 / 256)),  # gamma
        (b"curv" + bytes(4) + struct.pack(">I3H", 3, 0, 16384, 65535), 0.2529),  # a table
        (_parametric(0, 2.0), (128 / 255) ** 2),
        (_parametric(2, 2.0, 1.0, 0.0, 0.1), (128 / 255) ** 2 + 0.1),
        (
            _parametric(4, 2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045, 0.01, 0),
            SRGB_LINEAR[128] + 0.01,
        ),
    ],
)
def test_a_grey_profile_s_curve_of_each_kind_is_read(curve: bytes, middle: float) -> None:
    profile = matrix_profile(_with_curves(grey_profile(1.0), curve), grey=True)
    assert profile is not None
    assert profile.curves[128, 0] == pytest.approx(middle, abs=1e-3)


def test_a_table_of_srgb_s_curve_is_read_as_srgb() -> None:
    # Given an sRGB profile whose curves are tables of 1,024 entries, as HP's and others are
    table = np.linspace(0.0, 1.0, 1024)
    linear = np.where(table <= 0.04045, table / 12.92, ((table + 0.055) / 1.055) ** 2.4)
    curve = b"curv" + bytes(4) + struct.pack(">I1024H", 1024, *np.round(linear * 65535).astype(int))
    profile = _with_curves(SRGB_PROFILE, curve)

    # Then its image is read as sRGB, scoring as an untagged one
    assert matrix_profile(profile, grey=False) is None
    assert np.abs(SRGB_LINEAR - np.interp(np.arange(256) / 255, table, linear)).max() < 1e-3


@pytest.mark.parametrize(
    "profile",
    [
        b"not a profile",
        display_p3_profile()[:200],  # cut short
        cmyk_profile(paper=(95.0, 0.0, 4.0)),  # CMYK, tables
        ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(),
        grey_profile(1.0),  # grey, on an RGB image
    ],
)
def test_a_profile_not_read_leaves_the_image_read_as_srgb(profile: bytes) -> None:
    assert matrix_profile(profile, grey=False) is None


def test_a_profile_with_tables_is_read_as_srgb_whatever_its_matrix() -> None:
    # Given Display P3's matrix and curves, and an A2B0 table, which a CMS reads first
    profile = _with_tag(display_p3_profile(), b"A2B0", b"mft2" + bytes(48))

    # Then it is not read through the matrix (today's reading, as sRGB, stays)
    assert matrix_profile(display_p3_profile(), grey=False) is not None
    assert matrix_profile(profile, grey=False) is None


def _tags(profile: bytes) -> list[tuple[bytes, bytes]]:
    (count,) = struct.unpack_from(">I", profile, 128)
    entries = [struct.unpack_from(">4sII", profile, 132 + 12 * index) for index in range(count)]
    return [(name, profile[offset : offset + size]) for name, offset, size in entries]


def _with_tag(profile: bytes, name: bytes, data: bytes) -> bytes:
    return icc_assembled(profile[:128], [*_tags(profile), (name, data)])


def _with_curves(profile: bytes, curve: bytes) -> bytes:
    tags = [(name, curve if name.endswith(b"TRC") else data) for name, data in _tags(profile)]
    return icc_assembled(profile[:128], tags)
