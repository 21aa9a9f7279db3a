"""Metadata leaves on every path: an original kept because re-encoding would have made it
larger loses its EXIF (GPS included), XMP and comments too, and keeps its ICC profile and
its orientation; its pixels are untouched."""

import io

from PIL import Image, ImageChops, ImageCms

from imaging.encode import compress
from tests.support import encoded, photo

MAX_PIXELS = 50_000_000
GPS_IFD = 0x8825
ORIENTATION = 0x0112
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    exif[ORIENTATION] = orientation
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 22.0, 3.5), 3: "E", 4: (4.0, 53.0, 0.0)})
    return exif


def test_a_kept_jpeg_loses_gps_exif_xmp_and_comments_but_not_its_icc_or_pixels() -> None:
    # Given a photo saved at quality 20, with GPS in its EXIF, XMP, a comment and an ICC profile
    source = encoded(
        photo(320, 240),
        "JPEG",
        quality=20,
        exif=with_gps(),
        xmp=b"<x:xmpmeta><rdf:Description GPSLatitude='52,22N'/></x:xmpmeta>",
        comment=b"shot at home",
        icc_profile=SRGB,
    )
    assert Image.open(io.BytesIO(source)).getexif().get_ifd(GPS_IFD)

    # When it is compressed at 50, which would make it larger
    result = compress(source, quality=50, max_pixels=MAX_PIXELS)

    # Then the original is kept, without any of its metadata but the ICC profile
    assert result.kept_original
    output = Image.open(io.BytesIO(result.data))
    assert not output.getexif()
    assert b"GPS" not in result.data
    assert b"xmpmeta" not in result.data
    assert b"shot at home" not in result.data
    assert output.info.get("icc_profile") == SRGB
    assert len(result.data) < len(source)
    # And its pixels are the original's, bit for bit
    original = Image.open(io.BytesIO(source))
    assert ImageChops.difference(output.convert("RGB"), original.convert("RGB")).getbbox() is None


def test_a_kept_jpeg_turned_by_exif_keeps_its_orientation_alone() -> None:
    source = encoded(photo(320, 240), "JPEG", quality=20, exif=with_gps(orientation=6))
    result = compress(source, quality=50, max_pixels=MAX_PIXELS, fast_jpeg=False)
    assert result.kept_original
    exif = Image.open(io.BytesIO(result.data)).getexif()
    assert dict(exif) == {ORIENTATION: 6}
    assert not exif.get_ifd(GPS_IFD)


def test_a_kept_webp_loses_its_exif_and_xmp() -> None:
    source = encoded(photo(160, 120), "WEBP", quality=10, exif=with_gps(), xmp=b"<x:xmpmeta/>")
    assert Image.open(io.BytesIO(source)).getexif().get_ifd(GPS_IFD)
    result = compress(source, quality=50, max_pixels=MAX_PIXELS)
    assert result.kept_original
    output = Image.open(io.BytesIO(result.data))
    output.load()
    assert not output.getexif()
    assert b"xmpmeta" not in result.data
    assert b"EXIF" not in result.data


def test_a_re_encoded_jpeg_carries_no_metadata_either() -> None:
    source = encoded(photo(320, 240), "JPEG", quality=95, exif=with_gps(), icc_profile=SRGB)
    for fast in (True, False):
        result = compress(source, quality=50, max_pixels=MAX_PIXELS, fast_jpeg=fast)
        assert not result.kept_original
        output = Image.open(io.BytesIO(result.data))
        assert not output.getexif()
        assert output.info.get("icc_profile") == SRGB
