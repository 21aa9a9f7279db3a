"""Metadata dropped from an image's own bytes, losslessly: what a kept original still
carries (GPS positions, camera serial numbers, editing history) goes, while what draws the
pixels right stays: the ICC profile, Adobe's colour transform, the orientation.

Re-encoded outputs carry none of it already (the encoders are given only the ICC profile);
this is for the original bytes kept where re-encoding would have made a larger file.
"""

import struct
from typing import Final

from PIL import Image

from imaging.errors import ImageReason, ImagingError

# JPEG segments dropped: APP1 (EXIF, XMP), APP13 (Photoshop's IPTC), COM (comments).
_JPEG_DROPPED: Final = frozenset({0xE1, 0xED, 0xFE})
_JPEG_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD9)})
_SOS: Final = 0xDA
_WEBP_DROPPED: Final = frozenset({b"EXIF", b"XMP "})
# VP8X flags that announce the dropped chunks.
_VP8X_EXIF: Final = 0x08
_VP8X_XMP: Final = 0x04
EXIF_ORIENTATION: Final = 0x0112


def metadata_stripped(data: bytes, image_format: str, *, orientation: int = 1) -> bytes:
    """data without its metadata; for a JPEG whose pixels are turned by EXIF, a new EXIF
    segment holding the orientation alone."""
    if image_format in {"JPEG", "MPO"}:
        return _jpeg_stripped(data, orientation)
    if image_format == "WEBP":
        return _webp_stripped(data)
    return data


def _jpeg_stripped(data: bytes, orientation: int) -> bytes:
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
            break  # the scans and all that follows them, as they are
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segment = data[position : position + 2 + length]
        if marker not in _JPEG_DROPPED:
            kept.append(segment)
        position += 2 + length
    if orientation != 1:
        kept.insert(_after_app0(kept), _orientation_segment(orientation))
    return b"".join(kept) + data[position:]


def _after_app0(kept: list[bytes]) -> int:
    # The JFIF APP0 segment, if there is one, stays right after SOI.
    return 2 if len(kept) > 1 and kept[1][:2] == b"\xff\xe0" else 1


def _orientation_segment(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    payload = exif.tobytes()  # b"Exif\0\0" and the TIFF structure
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _webp_stripped(data: bytes) -> bytes:
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
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _damaged(where: str) -> ImagingError:
    return ImagingError(ImageReason.CORRUPT_IMAGE, f"The image is damaged in {where}.")
