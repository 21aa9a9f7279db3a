"""An image's ICC profile as the score (score.py) reads it: libjxl's ssimulacra2 tool takes
every image through its profile to linear sRGB, unclamped, before anything else. Most
profiles photos carry (Display P3, Adobe RGB, ProPhoto, Rec. 2020, a grey one's tone
curve) are a tone curve per channel and a 3 x 3 matrix to the D50 connection space, and so
is their way to linear sRGB: the curves, then the matrix of their colorants taken back by
sRGB's. The score folds both into steps it takes anyway (a lookup table, its opsin
matrix): no cost a pixel, where converting with ImageCms cost 40-60 ms an image.

Read by hand, by the ICC specification (ICC.1:2010, v2 and v4 alike for these tags). A
profile of another kind (tables: A2B0 and its kin, CMYK, Lab; damaged; cut short) is not
read, and its image is scored as sRGB, as every image was before.
"""

import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

# sRGB's colorants adapted to D50 by Bradford, as the standard sRGB profile holds them
# (columns: red, green, blue; rows: X, Y, Z): linear sRGB to the connection space.
SRGB_TO_D50: Final = np.array(
    [
        [0.4360747, 0.3850649, 0.1430804],
        [0.2225045, 0.7168786, 0.0606169],
        [0.0139322, 0.0971045, 0.7141733],
    ]
)
_D50_TO_SRGB: Final = np.linalg.inv(SRGB_TO_D50)
# A profile this close to sRGB's (matrix to the identity, curves to sRGB's) is read as
# sRGB exactly, as libjxl reads one it recognises: an sRGB-tagged image scores as an
# untagged one.
SRGB_TOLERANCE: Final = 1e-3
_HEADER_BYTES: Final = 128
# Tags that make a CMS read the profile through tables, whatever its matrix says.
_TABLE_TAGS: Final = frozenset({b"A2B0", b"A2B1", b"A2B2", b"D2B0", b"D2B1", b"D2B2"})
# The parameters each parametric curve type (0 to 4) has.
_PARAMETERS: Final = (1, 3, 4, 5, 7)
_VALUES: Final = np.arange(256, dtype=np.float64) / 255.0
SRGB_LINEAR: Final = np.where(
    _VALUES <= 0.04045, _VALUES / 12.92, ((_VALUES + 0.055) / 1.055) ** 2.4
)


@dataclass(frozen=True)
class MatrixProfile:
    """A matrix profile's way from an 8-bit image's device values to linear sRGB: each
    value through its channel's tone curve, then a matrix."""

    curves: npt.NDArray[np.float32]  # 256 x 3: linear light for each value, per channel
    to_srgb: npt.NDArray[np.float64]  # 3 x 3: the channels' linear light to linear sRGB


class _Unreadable(Exception):
    """The profile is not one read here."""


def matrix_profile(icc_profile: bytes | None, *, grey: bool) -> MatrixProfile | None:
    """How an image (grey or RGB) with icc_profile is read to linear sRGB; None where it is
    read as sRGB: no profile, sRGB's own, one not of its image's kind, not a matrix and
    tone curves, or one that cannot be read."""
    if not icc_profile:
        return None
    try:
        profile = _read(icc_profile, grey=grey)
    except (_Unreadable, struct.error, ValueError, IndexError, np.linalg.LinAlgError):
        return None
    if _is_srgb(profile):
        return None
    return profile


def _read(data: bytes, *, grey: bool) -> MatrixProfile:
    if len(data) < _HEADER_BYTES + 4 or data[36:40] != b"acsp":
        raise _Unreadable
    if data[16:20] != (b"GRAY" if grey else b"RGB ") or data[20:24] != b"XYZ ":
        raise _Unreadable
    (count,) = struct.unpack_from(">I", data, _HEADER_BYTES)
    tags: dict[bytes, bytes] = {}
    for index in range(count):
        signature, offset, size = struct.unpack_from(">4sII", data, _HEADER_BYTES + 4 + 12 * index)
        if offset + size > len(data):
            raise _Unreadable
        tags[signature] = data[offset : offset + size]
    if _TABLE_TAGS & tags.keys():
        raise _Unreadable
    if grey:
        # Grey is the white point's colour at every level: the same in sRGB's channels.
        curve = _curve(tags[b"kTRC"])
        return MatrixProfile(np.stack([curve] * 3, axis=1).astype(np.float32), np.identity(3))
    colorants = np.stack([_xyz(tags[name]) for name in (b"rXYZ", b"gXYZ", b"bXYZ")], axis=1)
    curves = np.stack([_curve(tags[name]) for name in (b"rTRC", b"gTRC", b"bTRC")], axis=1)
    to_srgb = _D50_TO_SRGB @ colorants
    if not (np.isfinite(curves).all() and np.isfinite(to_srgb).all()):
        raise _Unreadable
    np.linalg.inv(to_srgb)  # LinAlgError where the colorants do not span a colour space
    return MatrixProfile(curves.astype(np.float32), to_srgb)


def _xyz(tag: bytes) -> npt.NDArray[np.float64]:
    """An XYZType tag's first value (s15Fixed16 numbers)."""
    if tag[:4] != b"XYZ ":
        raise _Unreadable
    return np.array(struct.unpack_from(">3i", tag, 8), dtype=np.float64) / 65536


def _curve(tag: bytes) -> npt.NDArray[np.float64]:
    """A tone curve (curveType or parametricCurveType) at each 8-bit value."""
    if tag[:4] == b"curv":
        entries = int(struct.unpack_from(">I", tag, 8)[0])
        if entries == 0:
            return _VALUES.copy()
        if entries == 1:  # a gamma, u8Fixed8
            gamma = int(struct.unpack_from(">H", tag, 12)[0]) / 256
            return np.power(_VALUES, gamma)
        table = np.array(struct.unpack_from(f">{entries}H", tag, 12), dtype=np.float64) / 65535
        return np.interp(_VALUES * (entries - 1), np.arange(entries, dtype=np.float64), table)
    if tag[:4] == b"para":
        (kind,) = struct.unpack_from(">H", tag, 8)
        if kind >= len(_PARAMETERS):
            raise _Unreadable
        numbers = struct.unpack_from(f">{_PARAMETERS[kind]}i", tag, 12)
        return _parametric(kind, [number / 65536 for number in numbers])
    raise _Unreadable


def _parametric(kind: int, parameters: list[float]) -> npt.NDArray[np.float64]:
    """ICC's parametric curves, of parameters g, a, b, c, d, e, f: 0 x^g; 1 (ax+b)^g from
    x = -b/a, 0 below; 2 the same plus c, c below; 3 (ax+b)^g from x = d, cx below; 4 the
    same plus e, cx + f below."""
    g, a, b, c, d, e, f = parameters + [0.0] * (7 - len(parameters))
    if kind == 0:
        return _VALUES**g
    power = np.maximum(a * _VALUES + b, 0.0) ** g
    if kind in (1, 2):
        if not a:
            raise _Unreadable
        below = c if kind == 2 else 0.0
        return np.where(-b / a <= _VALUES, power + below, below)
    if kind == 3:
        return np.where(d <= _VALUES, power, c * _VALUES)
    return np.where(d <= _VALUES, power + e, c * _VALUES + f)


def _is_srgb(profile: MatrixProfile) -> bool:
    curves = np.abs(profile.curves - SRGB_LINEAR[:, np.newaxis]).max()
    matrix = np.abs(profile.to_srgb - np.identity(3)).max()
    return bool(curves <= SRGB_TOLERANCE and matrix <= SRGB_TOLERANCE)
