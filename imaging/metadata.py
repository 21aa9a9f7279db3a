"""Metadata dropped from an image's own bytes, losslessly: what a kept original still
carries (GPS positions, camera serial numbers, editing history) goes, while what draws the
pixels right stays: the ICC profile, Adobe's colour transform, the orientation.

Re-encoded outputs carry none of it already (the encoders are given the ICC profile, and
the credits where asked); this is for the original bytes kept where re-encoding would
have made a larger file.

With metadata=copyright the credits are kept (the EU's 2019/790 directive makes shops care
who took a photo and who holds its rights): the artist, the copyright notice and the
credit line, read from XMP (dc:creator, dc:rights, photoshop:Credit: Unicode), EXIF
(Artist, Copyright: ASCII) or IPTC (By-line, Copyright Notice, Credit), whichever has them
first, and written back in all three (JPEG) or in EXIF and XMP (WebP, AVIF, PNG): nothing else
of those blocks, no GPS, no camera, no history. EXIF gets them in ASCII ("(C)" for "©",
accents dropped), the others as they are.
"""

import io
import struct
import unicodedata
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from xml.sax.saxutils import escape

from defusedxml import ElementTree
from PIL import Image, IptcImagePlugin

from imaging.errors import ImageReason, ImagingError
from imaging.guard import jpeg_structure

# JPEG segments dropped: APP1 (EXIF, XMP), APP13 (Photoshop's IPTC), COM (comments).
_JPEG_DROPPED: Final = frozenset({0xE1, 0xED, 0xFE})
_JPEG_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD9)})
_SOS: Final = 0xDA
# The APP2 segment of an MPO's index of its other pictures, which a kept original loses.
_MPF: Final = b"MPF\x00"
_WEBP_DROPPED: Final = frozenset({b"EXIF", b"XMP "})
# VP8X flags that announce the dropped chunks.
_VP8X_EXIF: Final = 0x08
_VP8X_XMP: Final = 0x04
_VP8X_ALPHA: Final = 0x10
EXIF_ORIENTATION: Final = 0x0112
EXIF_ARTIST: Final = 0x013B
EXIF_COPYRIGHT: Final = 0x8298
# IPTC IIM datasets of record 2, and 1:90 saying the text is UTF-8.
IPTC_BYLINE: Final = (2, 80)
IPTC_CREDIT: Final = (2, 110)
IPTC_COPYRIGHT: Final = (2, 116)
_IPTC_UTF8: Final = b"\x1c\x01\x5a\x00\x03\x1b%G"
_XMP_SIGNATURE: Final = b"http://ns.adobe.com/xap/1.0/\x00"
_PHOTOSHOP_SIGNATURE: Final = b"Photoshop 3.0\x00"
_NS: Final = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
}
# What one credit may hold: a notice, not a document.
MAX_CREDIT_CHARS: Final = 1000
# An XMP packet larger than a JPEG segment can hold is not read for credits: parsing one
# of the 25 MB a download may bring took 9 s and 600 MB, in one call no limit stops.
MAX_XMP_BYTES: Final = 65_536
# Characters XML 1.0 cannot hold (EXIF and IPTC text may): dropped, so that the XMP
# written stays well-formed.
_NOT_XML: Final = dict.fromkeys(
    [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF]
)


class MetadataMode(StrEnum):
    """What an output keeps of its source's metadata: the one list (settings, models and
    the API take theirs from here)."""

    STRIP = "strip"  # nothing but the ICC profile (and a kept original's orientation)
    COPYRIGHT = "copyright"  # and the artist, copyright notice and credit line


@dataclass(frozen=True)
class Credits:
    """Who made an image and who holds its rights, as its metadata says."""

    artist: str = ""
    copyright: str = ""
    credit: str = ""

    def __bool__(self) -> bool:
        return bool(self.artist or self.copyright or self.credit)


def credits_of(image: Image.Image) -> Credits:
    """The credits an opened image's metadata gives (nothing decoded): XMP first, then
    EXIF, then IPTC. Damaged blocks give nothing."""
    found = [_xmp_credits(image), _exif_credits(image), _iptc_credits(image)]
    return Credits(
        **{
            field: next((getattr(one, field) for one in found if getattr(one, field)), "")
            for field in ("artist", "copyright", "credit")
        }
    )


def credits_exif(credits: Credits, *, orientation: int = 1) -> bytes:
    """An EXIF block (b"Exif\\0\\0" and its TIFF structure) of the credits, and of the
    orientation where the pixels are to be turned."""
    exif = Image.Exif()
    if orientation != 1:
        exif[EXIF_ORIENTATION] = orientation
    if credits.artist:
        exif[EXIF_ARTIST] = _ascii(credits.artist)
    if credits.copyright:
        exif[EXIF_COPYRIGHT] = _ascii(credits.copyright)
    return exif.tobytes()


def _ascii(text: str) -> str:
    """text as EXIF's ASCII fields can hold it."""
    for symbol, spelled in (("©", "(C)"), ("®", "(R)"), ("℗", "(P)")):
        text = text.replace(symbol, spelled)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def credits_xmp(credits: Credits) -> bytes:
    """An XMP packet of the credits alone."""
    fields = []
    if credits.artist:
        fields.append(
            f"<dc:creator><rdf:Seq><rdf:li>{escape(credits.artist)}</rdf:li></rdf:Seq></dc:creator>"
        )
    if credits.copyright:
        fields.append(
            '<dc:rights><rdf:Alt><rdf:li xml:lang="x-default">'
            f"{escape(credits.copyright)}</rdf:li></rdf:Alt></dc:rights>"
        )
    if credits.credit:
        fields.append(f"<photoshop:Credit>{escape(credits.credit)}</photoshop:Credit>")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        f'<rdf:RDF xmlns:rdf="{_NS["rdf"]}">'
        f'<rdf:Description rdf:about="" xmlns:dc="{_NS["dc"]}" '
        f'xmlns:photoshop="{_NS["photoshop"]}">{"".join(fields)}</rdf:Description>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def jpeg_with_credits(jpeg: bytes, credits: Credits, *, orientation: int = 1) -> bytes:
    """jpeg with the credits (and the orientation, if not 1) in an EXIF, an XMP and an
    IPTC segment, right after its JFIF header."""
    segments = [_segment(0xE1, credits_exif(credits, orientation=orientation))]
    if credits:
        segments.append(_segment(0xE1, _XMP_SIGNATURE + credits_xmp(credits)))
        segments.append(_segment(0xED, _PHOTOSHOP_SIGNATURE + _iptc_resource(credits)))
    return jpeg_with_segments(jpeg, b"".join(segments))


def jpeg_with_segments(jpeg: bytes, segments: bytes) -> bytes:
    """jpeg with segments inserted right after its SOI, or its JFIF APP0 segment, which the
    JFIF and ICC specifications want first."""
    position = 2  # after SOI
    if jpeg[2:4] == b"\xff\xe0":
        position = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:position] + segments + jpeg[position:]


def _segment(marker: int, payload: bytes) -> bytes:
    if len(payload) + 2 > 0xFFFF:
        raise ImagingError(ImageReason.ENCODE_FAILED, "The image's credits are too long to keep.")
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _iptc_resource(credits: Credits) -> bytes:
    """Photoshop's image resource 0x0404 holding the credits as IPTC IIM datasets."""
    datasets = [_IPTC_UTF8]
    for (record, number), text in (
        (IPTC_BYLINE, credits.artist),
        (IPTC_CREDIT, credits.credit),
        (IPTC_COPYRIGHT, credits.copyright),
    ):
        if text:
            value = text.encode()
            datasets.append(bytes([0x1C, record, number]) + struct.pack(">H", len(value)) + value)
    block = b"".join(datasets)
    padding = b"\x00" if len(block) % 2 else b""
    return b"8BIM" + b"\x04\x04" + b"\x00\x00" + struct.pack(">I", len(block)) + block + padding


def _text(value: Any) -> str:
    """A credit as text: bytes read as UTF-8 where they are, else as Windows' Latin
    (older IPTC and EXIF writers'), characters XML cannot hold dropped, capped."""
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            value = value.decode("cp1252", errors="replace")
    return str(value).translate(_NOT_XML).strip()[:MAX_CREDIT_CHARS]


def _exif_credits(image: Image.Image) -> Credits:
    try:
        exif = image.getexif()
        return Credits(
            artist=_text(exif.get(EXIF_ARTIST, "")),
            copyright=_text(exif.get(EXIF_COPYRIGHT, "")),
        )
    except Exception:
        return Credits()


def _xmp_credits(image: Image.Image) -> Credits:
    packet = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if isinstance(packet, str):
        packet = packet.encode()
    if not packet or len(packet) > MAX_XMP_BYTES:
        return Credits()
    try:  # defusedxml: a packet of entities or a DTD is refused, not expanded
        root = ElementTree.fromstring(packet.strip(b"\x00"))
    except Exception:  # damaged, refused, or in an encoding Python does not know
        return Credits()
    credit_attribute = f"{{{_NS['photoshop']}}}Credit"
    credit = next(
        (
            _text(element.get(credit_attribute, ""))
            for element in root.iter(f"{{{_NS['rdf']}}}Description")
            if element.get(credit_attribute)
        ),
        "",
    )
    return Credits(
        artist="; ".join(
            _text(item.text) for item in root.iterfind(".//dc:creator//rdf:li", _NS) if item.text
        )[:MAX_CREDIT_CHARS],
        copyright=next(
            (_text(item.text) for item in root.iterfind(".//dc:rights//rdf:li", _NS) if item.text),
            "",
        ),
        credit=credit
        or next(
            (_text(item.text) for item in root.iterfind(".//photoshop:Credit", _NS) if item.text),
            "",
        ),
    )


def _iptc_credits(image: Image.Image) -> Credits:
    try:
        iptc = IptcImagePlugin.getiptcinfo(image) or {}  # type: ignore[arg-type]
    except Exception:
        return Credits()
    return Credits(
        artist=_text(iptc.get(IPTC_BYLINE, "")),
        copyright=_text(iptc.get(IPTC_COPYRIGHT, "")),
        credit=_text(iptc.get(IPTC_CREDIT, "")),
    )


def metadata_stripped(
    data: bytes, image_format: str, *, orientation: int = 1, credits: Credits | None = None
) -> bytes:
    """data without its metadata but credits, if given; for a JPEG whose pixels are turned
    by EXIF, its new EXIF segment holds the orientation."""
    if image_format in {"JPEG", "MPO"}:
        return _jpeg_stripped(data, orientation, credits or Credits())
    if image_format == "WEBP":
        return _webp_stripped(data, credits or Credits())
    if image_format == "PNG":
        return _png_stripped(data, credits or Credits())
    if image_format == "GIF":
        return _gif_stripped(data)
    return data  # a BMP holds no metadata


def _jpeg_stripped(data: bytes, orientation: int, credits: Credits) -> bytes:
    kept = [data[:2]]  # SOI
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise _damaged("a JPEG segment")
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            kept.append(data[position : position + 2])
            position += 2
            continue
        if marker == _SOS:
            break  # the scans as they are
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segment = data[position : position + 2 + length]
        if marker not in _JPEG_DROPPED and not segment.startswith(_MPF, 4):
            kept.append(segment)
        position += 2 + length
    # To the image's end, not the file's: what follows (an MPO's other pictures, each
    # with its own EXIF and GPS; a phone's video) kept all of its metadata.
    stripped = b"".join(kept) + data[position : jpeg_structure(data)[1]]
    if orientation != 1 or credits:
        return jpeg_with_credits(stripped, credits, orientation=orientation)
    return stripped


# What a kept PNG keeps: its pixels and what says how they look. Text (comments, an
# author, software, XMP in iTXt), EXIF, times and private chunks go; the credits, if
# asked for, are written again in an eXIf and an iTXt chunk of their own.
_PNG_KEPT: Final = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT"}
    | {b"pHYs", b"bKGD", b"cICP"}
)
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


def _png_stripped(data: bytes, credits: Credits) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise _damaged("the PNG signature")
    chunks = [_PNG_SIGNATURE]
    position = len(_PNG_SIGNATURE)
    while position + 12 <= len(data):
        size = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        end = position + 12 + size  # length, type, data, CRC
        if kind in _PNG_KEPT:
            chunks.append(data[position:end])
        position = end
        if kind == b"IEND":
            break  # what follows the image's end goes too
    if credits:
        # Right after IHDR: the PNG specification wants eXIf before the image data.
        chunks[2:2] = [
            _png_chunk(b"eXIf", credits_exif(credits)[6:]),
            _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + credits_xmp(credits)),
        ]
    return b"".join(chunks)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    """A PNG chunk: its length, its type, its data and their CRC."""
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


# What a kept GIF drops: its comments and application extensions (XMP, an editor's
# private data). Its graphic control extension (its transparent colour) and any plain
# text stay. A GIF's credits are not kept: Pillow reads no XMP from a GIF, so none are
# found to write again (credits_of).
_GIF_DROPPED: Final = frozenset({0xFE, 0xFF})


def _gif_stripped(data: bytes) -> bytes:
    if data[:6] not in {b"GIF87a", b"GIF89a"} or len(data) < 13:
        raise _damaged("the GIF header")
    position = 13 + _gif_colour_table(data[10])
    kept = [data[:position]]
    while position < len(data) and data[position] != 0x3B:  # the trailer
        block = data[position]
        if block == 0x21:  # an extension: its label, then its sub-blocks
            end = _gif_sub_blocks_end(data, position + 2)
            if data[position + 1] not in _GIF_DROPPED:
                kept.append(data[position:end])
        elif block == 0x2C:  # an image: its descriptor, colour table, code size, data
            start = position + 10 + _gif_colour_table(data[position + 9]) + 1
            end = _gif_sub_blocks_end(data, start)
            kept.append(data[position:end])
        else:
            raise _damaged("a GIF block")
        position = end
    return b"".join([*kept, b";"])


def _gif_colour_table(flags: int) -> int:
    """Bytes of the colour table a GIF's screen or image descriptor's flags announce."""
    return 3 << ((flags & 0x07) + 1) if flags & 0x80 else 0


def _gif_sub_blocks_end(data: bytes, position: int) -> int:
    while position < len(data):
        size = data[position]
        position += 1 + size
        if not size:
            return position
    raise _damaged("a GIF block")


def _webp_stripped(data: bytes, credits: Credits) -> bytes:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise _damaged("the WebP container")
    chunks = []
    position = 12
    while position + 8 <= len(data):
        kind = data[position : position + 4]
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        end = position + 8 + size + (size & 1)  # chunks are padded to an even size
        chunk = data[position:end]
        if kind == b"VP8X" and len(chunk) >= 9:
            flags = chunk[8] & ~(_VP8X_EXIF | _VP8X_XMP)
            chunk = chunk[:8] + bytes([flags]) + chunk[9:]
        if kind not in _WEBP_DROPPED:
            chunks.append(chunk)
        position = end
    if credits:
        chunks = _webp_with_credits(chunks, credits, data)
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_with_credits(chunks: list[bytes], credits: Credits, data: bytes) -> list[bytes]:
    """chunks with EXIF and XMP chunks of the credits, last as the container wants them,
    and the extended header that announces them (made from the image's size if the
    file had none)."""
    if not chunks or chunks[0][:4] != b"VP8X":
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            alpha = _VP8X_ALPHA if image.mode in {"RGBA", "LA"} else 0
        canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks = [b"VP8X" + struct.pack("<I", 10) + bytes([alpha, 0, 0, 0]) + canvas, *chunks]
    header = chunks[0]
    chunks[0] = header[:8] + bytes([header[8] | _VP8X_EXIF | _VP8X_XMP]) + header[9:]
    for kind, payload in ((b"EXIF", credits_exif(credits)[6:]), (b"XMP ", credits_xmp(credits))):
        padding = b"\x00" if len(payload) % 2 else b""
        chunks.append(kind + struct.pack("<I", len(payload)) + payload + padding)
    return chunks


def _damaged(where: str) -> ImagingError:
    return ImagingError(ImageReason.CORRUPT_IMAGE, f"The image is damaged in {where}.")
