"""Metadata leaves on every path: an original kept because re-encoding would have made it
larger loses its EXIF (GPS included), XMP and comments too, and keeps its ICC profile and
its orientation; its pixels are untouched. Asked to (metadata=copyright), every path keeps
the credits, and nothing else."""

import io

from PIL import Image, ImageChops, ImageCms, IptcImagePlugin, PngImagePlugin, TiffImagePlugin

from imaging.encode import OutputFormat, compress
from imaging.metadata import (
    EXIF_ARTIST,
    EXIF_COPYRIGHT,
    Credits,
    MetadataMode,
    credits_of,
    jpeg_with_credits,
    metadata_stripped,
)
from tests.support import divider, encoded, photo, size_chart

MAX_PIXELS = 50_000_000
GPS_IFD = 0x8825
EXIF_IFD = 0x8769
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


def test_a_png_whose_jpeg_would_be_larger_is_kept_as_a_png_without_its_text() -> None:
    """16 KB as PNG came out 56 KB as JPEG at quality 50, told "compressed"."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane, 52.37N 4.89E")
    buffer = io.BytesIO()
    size_chart().save(buffer, "PNG", optimize=True, pnginfo=info)
    source = buffer.getvalue()
    # Where the source's format is asked for (the default), the PNG is kept, its text gone
    result = compress(source, quality=50, max_pixels=MAX_PIXELS)
    assert (result.kept_original, result.format, result.extension) == (True, "PNG", "png")
    assert len(result.data) < len(source)
    assert b"tEXt" not in result.data
    assert b"Jane" not in result.data
    output = Image.open(io.BytesIO(result.data))
    assert ImageChops.difference(output.convert("RGB"), size_chart()).getbbox() is None
    # Asked for as JPEG, a JPEG it is, however large
    asked = compress(source, quality=50, max_pixels=MAX_PIXELS, output_format=OutputFormat.JPEG)
    assert (asked.kept_original, asked.format) == (False, "JPEG")
    assert len(asked.data) > len(source)


def tiff_with_metadata() -> bytes:
    """A divider as an uncompressed TIFF (Pillow's own writer, which writes EXIF and GPS
    directories), with the tags a camera or an editor leaves."""
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[270] = "Shot at the warehouse"  # ImageDescription
    tags[271] = "CameraMaker"
    tags[305] = "Editor 1.0"
    tags[315] = "Ana Lima"  # Artist
    tags[GPS_IFD] = {1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 1.0)}
    tags[EXIF_IFD] = {0xA431: "SERIAL12345"}  # the camera's serial number
    return encoded(divider(), "TIFF", tiffinfo=tags)


def test_a_tiff_whose_jpeg_would_be_larger_becomes_a_png_of_its_pixels_alone() -> None:
    # Given a TIFF drawing with text tags, an EXIF and a GPS directory
    source = tiff_with_metadata()
    assert Image.open(io.BytesIO(source)).getexif().get_ifd(GPS_IFD)

    # When compressed in the source's format, then it is not kept (browsers but Safari
    # do not show a TIFF): its pixels come out a PNG, bit for bit, without its tags
    result = compress(source, quality=50, max_pixels=MAX_PIXELS)
    assert (result.kept_original, result.format, result.extension) == (False, "PNG", "png")
    as_jpeg = compress(source, quality=50, max_pixels=MAX_PIXELS, output_format=OutputFormat.JPEG)
    assert len(result.data) < len(as_jpeg.data)
    output = Image.open(io.BytesIO(result.data))
    assert not output.getexif()
    for words in (b"SERIAL12345", b"CameraMaker", b"Editor", b"Ana Lima", b"warehouse"):
        assert words in source
        assert words not in result.data
    original = Image.open(io.BytesIO(source))
    assert ImageChops.difference(output.convert("L"), original.convert("L")).getbbox() is None


def test_a_tiff_whose_credits_are_asked_for_is_not_kept_without_them() -> None:
    # A kept TIFF carries no credits: its artist goes into the JPEG made instead
    result = compress(
        tiff_with_metadata(), quality=50, max_pixels=MAX_PIXELS, metadata=MetadataMode.COPYRIGHT
    )
    assert (result.kept_original, result.format) == (False, "JPEG")
    assert Image.open(io.BytesIO(result.data)).getexif().get(0x013B) == "Ana Lima"


def test_a_png_photo_still_becomes_a_smaller_jpeg() -> None:
    source = encoded(photo(320, 240), "PNG")
    result = compress(source, quality=50, max_pixels=MAX_PIXELS)
    assert (result.kept_original, result.format) == (False, "JPEG")
    assert len(result.data) < len(source)


def test_a_re_encoded_jpeg_carries_no_metadata_either() -> None:
    source = encoded(photo(320, 240), "JPEG", quality=95, exif=with_gps(), icc_profile=SRGB)
    for fast in (True, False):
        result = compress(source, quality=50, max_pixels=MAX_PIXELS, fast_jpeg=fast)
        assert not result.kept_original
        output = Image.open(io.BytesIO(result.data))
        assert not output.getexif()
        assert output.info.get("icc_profile") == SRGB


# --- metadata=copyright: the credits stay, nothing else does -----------------------------

ARTIST, RIGHTS, CREDIT = "Ana Lima", "© 2026 Lima Studio, all rights reserved", "Lima Studio"
ASCII_RIGHTS = "(C) 2026 Lima Studio, all rights reserved"  # as EXIF can hold it
XMP_CREDITS = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
    'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="52,22N" '
    f'photoshop:Credit="{CREDIT}">'
    f"<dc:creator><rdf:Seq><rdf:li>{ARTIST}</rdf:li></rdf:Seq></dc:creator>"
    f'<dc:rights><rdf:Alt><rdf:li xml:lang="x-default">{RIGHTS}</rdf:li></rdf:Alt></dc:rights>'
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
).encode()


def credited_exif(orientation: int = 1) -> Image.Exif:
    exif = with_gps(orientation)
    exif[EXIF_ARTIST] = ARTIST
    exif[EXIF_COPYRIGHT] = ASCII_RIGHTS
    return exif


def credits_in(data: bytes) -> Credits:
    with Image.open(io.BytesIO(data)) as image:
        return credits_of(image)


def assert_only_credits(data: bytes) -> None:
    output = Image.open(io.BytesIO(data))
    exif = output.getexif()
    assert dict(exif) == {EXIF_ARTIST: ARTIST, EXIF_COPYRIGHT: ASCII_RIGHTS}
    assert not exif.get_ifd(GPS_IFD)
    assert b"GPS" not in data
    assert b"Camera maker" not in data
    assert b"shot at home" not in data


def test_a_re_encoded_jpeg_keeps_the_credits_in_exif_xmp_and_iptc_and_drops_the_rest() -> None:
    # Given a photo with its credits in EXIF and XMP, beside GPS, a camera and a comment
    source = encoded(
        photo(640, 480),
        "JPEG",
        quality=95,
        exif=credited_exif(),
        xmp=XMP_CREDITS,
        comment=b"shot at home",
    )

    # When it is compressed keeping the copyright
    result = compress(source, quality=50, max_pixels=MAX_PIXELS, metadata=MetadataMode.COPYRIGHT)

    # Then the output says who made it and who holds its rights, in each of the three
    assert not result.kept_original
    assert_only_credits(result.data)
    assert credits_in(result.data) == Credits(artist=ARTIST, copyright=RIGHTS, credit=CREDIT)
    with Image.open(io.BytesIO(result.data)) as output:
        iptc = IptcImagePlugin.getiptcinfo(output)
        assert iptc is not None
        assert iptc[(2, 80)] == ARTIST.encode()
        assert iptc[(2, 116)] == RIGHTS.encode()
        assert iptc[(2, 110)] == CREDIT.encode()
        assert RIGHTS in output.info["xmp"].decode()
        assert "52,22N" not in output.info["xmp"].decode()
    # And by default it says none of it
    stripped = compress(source, quality=50, max_pixels=MAX_PIXELS)
    assert credits_in(stripped.data) == Credits()


def test_credits_found_in_iptc_alone_are_kept() -> None:
    # Given a JPEG whose only credits are IPTC's (as an older newsroom tool writes them)
    plain = encoded(photo(320, 240), "JPEG", quality=95)
    source = jpeg_with_credits(plain, Credits(artist=ARTIST, credit=CREDIT))
    source = metadata_stripped(source, "JPEG")  # every segment gone...
    assert credits_in(source) == Credits()
    iptc_only = plain[:2] + _iptc_segment() + plain[2:]  # ...then the IPTC one alone
    assert credits_in(iptc_only) == Credits(artist=ARTIST, credit=CREDIT)

    result = compress(iptc_only, quality=50, max_pixels=MAX_PIXELS, metadata=MetadataMode.COPYRIGHT)
    assert credits_in(result.data) == Credits(artist=ARTIST, credit=CREDIT)
    assert Image.open(io.BytesIO(result.data)).getexif()[EXIF_ARTIST] == ARTIST


def _iptc_segment() -> bytes:
    with_credits = jpeg_with_credits(b"\xff\xd8\xff\xd9", Credits(artist=ARTIST, credit=CREDIT))
    start = with_credits.index(b"\xff\xed")
    length = int.from_bytes(with_credits[start + 2 : start + 4], "big")
    return with_credits[start : start + 2 + length]


def test_a_kept_jpeg_keeps_its_credits_and_orientation_and_loses_its_gps() -> None:
    source = encoded(
        photo(320, 240), "JPEG", quality=20, exif=credited_exif(orientation=6), xmp=XMP_CREDITS
    )
    result = compress(
        source,
        quality=50,
        max_pixels=MAX_PIXELS,
        fast_jpeg=False,
        metadata=MetadataMode.COPYRIGHT,
    )
    assert result.kept_original
    exif = Image.open(io.BytesIO(result.data)).getexif()
    assert dict(exif) == {ORIENTATION: 6, EXIF_ARTIST: ARTIST, EXIF_COPYRIGHT: ASCII_RIGHTS}
    assert b"GPS" not in result.data
    assert credits_in(result.data).credit == CREDIT


def test_webp_and_avif_outputs_carry_the_credits_in_exif_and_xmp() -> None:
    source = encoded(photo(320, 240), "JPEG", quality=95, exif=credited_exif(), xmp=XMP_CREDITS)
    for output_format in (OutputFormat.WEBP, OutputFormat.AVIF):
        result = compress(
            source,
            quality=50,
            max_pixels=MAX_PIXELS,
            output_format=output_format,
            metadata=MetadataMode.COPYRIGHT,
        )
        assert_only_credits(result.data)
        assert credits_in(result.data) == Credits(artist=ARTIST, copyright=RIGHTS, credit=CREDIT)


def test_a_kept_webp_gets_its_credits_back_in_chunks_a_reader_finds() -> None:
    # Given a small lossy WebP (no extended header) with credits, already smaller than a
    # re-encode would make it
    source = encoded(photo(160, 120), "WEBP", quality=10, exif=credited_exif(), xmp=XMP_CREDITS)
    result = compress(source, quality=90, max_pixels=MAX_PIXELS, metadata=MetadataMode.COPYRIGHT)
    assert result.kept_original
    assert_only_credits(result.data)
    assert credits_in(result.data) == Credits(artist=ARTIST, copyright=RIGHTS, credit=CREDIT)
    assert Image.open(io.BytesIO(result.data)).size == (160, 120)


def test_a_png_with_exif_and_xmp_whose_jpeg_would_be_larger_is_kept_without_them() -> None:
    """A 939-byte flat PNG with XMP became a 1,616-byte JPEG: a PNG with EXIF or XMP was
    never kept, though its stripping drops both."""
    # Given a flat PNG with GPS in its EXIF and an XMP packet
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP_CREDITS.decode())
    source = encoded(size_chart(), "PNG", pnginfo=info, exif=credited_exif())
    assert Image.open(io.BytesIO(source)).getexif().get_ifd(GPS_IFD)

    # When it is compressed in the source's format, which a JPEG would make larger
    result = compress(source, quality=50, max_pixels=MAX_PIXELS)

    # Then the PNG is kept, smaller, with neither, its pixels as they were
    assert (result.kept_original, result.format) == (True, "PNG")
    assert len(result.data) < len(source)
    for words in (b"eXIf", b"iTXt", b"xmpmeta", ARTIST.encode()):
        assert words in source
        assert words not in result.data
    output = Image.open(io.BytesIO(result.data))
    assert not output.getexif()
    assert ImageChops.difference(output.convert("RGB"), size_chart()).getbbox() is None


def test_a_kept_png_gets_its_credits_back_in_chunks_a_reader_finds() -> None:
    # Given a flat PNG with its credits in EXIF and XMP, beside GPS
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP_CREDITS.decode())
    source = encoded(size_chart(), "PNG", pnginfo=info, exif=credited_exif())

    # When it is compressed keeping the copyright
    result = compress(source, quality=50, max_pixels=MAX_PIXELS, metadata=MetadataMode.COPYRIGHT)

    # Then the PNG is kept, with the credits alone, its pixels as they were
    assert (result.kept_original, result.format) == (True, "PNG")
    assert_only_credits(result.data)
    assert credits_in(result.data) == Credits(artist=ARTIST, copyright=RIGHTS, credit=CREDIT)
    assert b"52,22N" not in result.data
    output = Image.open(io.BytesIO(result.data))
    assert ImageChops.difference(output.convert("RGB"), size_chart()).getbbox() is None


def test_an_xmp_packet_with_entities_gives_no_credits_and_breaks_nothing() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        b"&b;</x:xmpmeta>"
    )
    source = encoded(photo(320, 240), "JPEG", quality=95, xmp=bomb)
    result = compress(source, quality=50, max_pixels=MAX_PIXELS, metadata=MetadataMode.COPYRIGHT)
    assert credits_in(result.data) == Credits()


def test_credits_found_in_exif_alone_are_kept() -> None:
    source = encoded(photo(320, 240), "JPEG", quality=95, exif=credited_exif())
    result = compress(source, quality=50, max_pixels=MAX_PIXELS, metadata=MetadataMode.COPYRIGHT)
    assert_only_credits(result.data)
    assert credits_in(result.data) == Credits(artist=ARTIST, copyright=ASCII_RIGHTS)


def test_xmp_too_large_or_in_an_unknown_encoding_gives_no_credits_and_breaks_nothing() -> None:
    # (WebP: a JPEG segment cannot hold more than 64 KB of XMP)
    large = XMP_CREDITS.replace(b"</x:xmpmeta>", b"<a/>" * 20_000 + b"</x:xmpmeta>")
    unknown = b'<?xml version="1.0" encoding="x-nope"?>' + XMP_CREDITS
    for packet in (large, unknown):
        source = encoded(photo(320, 240), "WEBP", quality=95, xmp=packet)
        result = compress(
            source, quality=50, max_pixels=MAX_PIXELS, metadata=MetadataMode.COPYRIGHT
        )
        assert credits_in(result.data) == Credits()


def test_control_characters_and_latin_1_credits_come_out_as_well_formed_utf_8() -> None:
    # Given EXIF with control characters and an IPTC notice in Latin-1, as old tools wrote
    exif = Image.Exif()
    exif[EXIF_ARTIST] = "Jane\x01\x1b Doe"
    plain = encoded(photo(320, 240), "JPEG", quality=95, exif=exif)
    notice = "© 2020 Müller".encode("latin-1")
    iptc = b"\x1c\x02\x74" + len(notice).to_bytes(2, "big") + notice
    resource = b"8BIM\x04\x04\x00\x00" + len(iptc).to_bytes(4, "big") + iptc
    if len(iptc) % 2:
        resource += b"\x00"
    app13 = b"Photoshop 3.0\x00" + resource
    source = plain[:2] + b"\xff\xed" + (len(app13) + 2).to_bytes(2, "big") + app13 + plain[2:]

    result = compress(source, quality=50, max_pixels=MAX_PIXELS, metadata=MetadataMode.COPYRIGHT)

    # Then the credits read right, and the XMP written parses
    assert credits_in(result.data) == Credits(artist="Jane Doe", copyright="© 2020 Müller")
    with Image.open(io.BytesIO(result.data)) as output:
        assert output.getxmp()  # parsed (Pillow reads it with defusedxml)


def test_a_jpeg_kept_with_something_after_its_image_loses_what_follows() -> None:
    """A phone's video or an editor's trailer after the image's end kept all of its own
    metadata in a kept original."""
    image = encoded(photo(320, 240), "JPEG", quality=20, exif=with_gps())
    trailer = b"\x00\x00\x00\x18ftypmp42 GPS 52.37N 4.89E " + encoded(
        photo(64, 48), "JPEG", exif=with_gps()
    )
    result = compress(image + trailer, quality=95, max_pixels=MAX_PIXELS)
    assert result.kept_original
    assert b"GPS" not in result.data
    assert result.data.endswith(b"\xff\xd9")
    assert len(result.data) < len(image)


def test_an_mpo_is_not_kept_with_its_other_pictures_and_their_gps() -> None:
    """Its first picture was stripped, the second kept its EXIF and GPS."""
    first, second = photo(320, 240), photo(320, 240, seed=1)
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second], quality=20, exif=with_gps())
    source = buffer.getvalue()
    assert getattr(Image.open(io.BytesIO(source)), "n_frames", 1) == 2

    result = compress(source, quality=95, max_pixels=MAX_PIXELS)

    output = Image.open(io.BytesIO(result.data))
    assert getattr(output, "n_frames", 1) == 1
    assert b"GPS" not in result.data
    assert not output.getexif().get_ifd(GPS_IFD)


def test_a_webp_turned_by_exif_is_not_kept_sideways() -> None:
    """Kept, it lost the EXIF that turned it and showed sideways, while its fields said
    upright; the re-encode is turned, if larger."""
    upright = photo(300, 200)
    source = encoded(
        upright.transpose(Image.Transpose.ROTATE_90), "WEBP", quality=5, exif=with_gps(6)
    )
    result = compress(source, quality=85, max_pixels=MAX_PIXELS)
    assert not result.kept_original
    output = Image.open(io.BytesIO(result.data))
    assert output.size == (result.width, result.height) == (300, 200)
    assert not output.getexif()


def test_an_avif_with_metadata_is_not_kept_with_it() -> None:
    """Nothing here strips an AVIF's metadata: kept, it kept its GPS and camera."""
    source = encoded(photo(300, 200), "AVIF", quality=5, exif=with_gps())
    assert Image.open(io.BytesIO(source)).getexif().get_ifd(GPS_IFD)
    result = compress(source, quality=50, max_pixels=MAX_PIXELS, output_format=OutputFormat.AVIF)
    assert not result.kept_original
    assert not Image.open(io.BytesIO(result.data)).getexif().get_ifd(GPS_IFD)
    assert b"Camera maker" not in result.data


def test_an_animated_webp_comes_out_as_its_first_frame_even_where_larger() -> None:
    first = Image.new("RGB", (300, 200), (200, 30, 30))
    second = first.copy()
    second.paste((0, 0, 255), (0, 0, 10, 10))
    source = encoded(first, "WEBP", save_all=True, append_images=[second], lossless=True)
    result = compress(source, quality=50, max_pixels=MAX_PIXELS)
    assert not result.kept_original
    assert getattr(Image.open(io.BytesIO(result.data)), "n_frames", 1) == 1
