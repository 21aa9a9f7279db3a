"""Bounds on what one image may cost, checked before it costs it: its JPEG scans, the
memory its decode and encode will take, and the time they may run.

Each bound fails the image alone with its reason: `too_complex` (a JPEG with more scans
than any camera or editor writes, which is how a 200 KB file makes minutes of decoding),
`too_many_pixels` (more memory than the budget), `too_slow` (decode and encode past the
time allowed).
"""

import contextlib
import re
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

from imaging.errors import ImageReason, ImagingError

# Markers that stand alone, without a length: TEM, RST0-7, SOI, EOI.
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xDA)})
_SOS: Final = 0xDA
_EOI: Final = 0xD9
# A JPEG's frame markers (SOF0-15 but DHT, JPG and DAC), whose segment gives its precision.
_FRAMES: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Those of arithmetic coding (SOF9-11, 13-15), which Pillow's libjpeg does not decode.
ARITHMETIC_FRAMES: Final = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Where a scan's entropy-coded data ends: 0xFF followed by anything but a stuffed 0x00, a
# restart marker or a fill byte. Searched in one call: a Python loop stopping at every
# 0xFF took 0.47 ms a photo of the benchmark's typical preset, this 0.16 (BENCHMARKS.md).
_AFTER_ENTROPY_CODED: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_NOT_FILL: Final = re.compile(rb"[^\xff]")
# Segments before a JPEG's first scan: a camera writes about ten; an editor's extended XMP
# or a large ICC profile, in 64 KB pieces, a few dozen. Pillow keeps every APPn and COM
# segment as a Python object when it opens a file: 25 MB of 4-byte segments took 887 MB.
JPEG_MAX_HEADER_SEGMENTS: Final = 1000

# Bytes per pixel of each mode Pillow decodes to.
_BYTES_PER_PIXEL: Final = {
    "1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "I;16": 2, "I;16B": 2, "I;16L": 2,
    "I;16N": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4,
    "CMYK": 4, "I": 4, "F": 4,
}  # fmt: skip


def jpeg_scan_count(data: bytes) -> int:
    """How many scans (SOS segments) the first image of a JPEG holds, read from its segment
    structure without decoding: a progressive JPEG has about ten, a baseline one."""
    return jpeg_structure(data)[0]


def jpeg_structure(data: bytes) -> tuple[int, int]:
    """The first image of a JPEG, read from its segments without decoding: how many scans
    it holds, and where it ends (after its EOI marker; the data's length where the data
    stops before one). What follows it is not the image's: an MPO's other pictures, a
    phone's video, an editor's trailer."""
    scans = 0
    for marker, _start, after in _jpeg_segments(data):
        if marker == _EOI:
            return scans, after
        scans += marker == _SOS
    return scans, len(data)


def check_jpeg_segments(data: bytes) -> None:
    """Refuse, before Pillow opens it, a JPEG with more than JPEG_MAX_HEADER_SEGMENTS
    segments before its first scan; anything else passes."""
    if not data.startswith(b"\xff\xd8"):
        return
    for count, (marker, _start, _after) in enumerate(_jpeg_segments(data), start=1):
        if marker in {_SOS, _EOI}:
            return
        if count > JPEG_MAX_HEADER_SEGMENTS:
            raise ImagingError(
                ImageReason.TOO_COMPLEX,
                f"The JPEG has more than {JPEG_MAX_HEADER_SEGMENTS:,} segments before its "
                "image data; a photo has about ten.",
            )


def jpeg_frame(data: bytes) -> tuple[int, int] | None:
    """A JPEG's frame marker (SOF0-15) and its bits a sample, read from its segments; None
    where data is not a JPEG or has no frame before its first scan."""
    if not data.startswith(b"\xff\xd8"):
        return None
    for count, (marker, start, _after) in enumerate(_jpeg_segments(data), start=1):
        if marker in _FRAMES and start + 4 < len(data):
            return marker, data[start + 4]
        if marker in {_SOS, _EOI} or count > JPEG_MAX_HEADER_SEGMENTS:
            return None
    return None


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """Each marker of a JPEG's first image after its SOI, with where its segment starts
    (at its 0xFF) and ends (after a scan, where the scan's data begins); the last is EOI,
    if the data has one."""
    position = 2  # after SOI
    end = len(data)
    while position + 2 <= end:
        if data[position] != 0xFF:
            # Not a marker where one must be: libjpeg skips to the next 0xFF, with a
            # warning, and reads on. So does this: stopping here, one stray byte before the
            # frame hid every scan after it, and a file of thousands passed as none.
            position = data.find(b"\xff", position)
            if position < 0:
                return
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill bytes, skipped in one call: a file may be nothing else
            found = _NOT_FILL.search(data, position + 1)
            if found is None:
                return
            position = found.start() - 1
            continue
        start = position
        if marker == _EOI:
            yield marker, start, position + 2
            return
        if marker in _STANDALONE:
            position += 2
            yield marker, start, position
            continue
        if position + 4 > end:
            return
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        yield marker, start, position
        if marker == _SOS:
            # The scan's entropy-coded data runs to the next marker.
            found = _AFTER_ENTROPY_CODED.search(data, position)
            if found is None:
                return
            position = found.start()


def check_jpeg_scans(scans: int, *, max_scans: int) -> None:
    """Refuse a JPEG of more scans than max_scans (jpeg_scan_count), before decoding."""
    if scans > max_scans:
        raise ImagingError(
            ImageReason.TOO_COMPLEX,
            f"The JPEG has {scans:,} scans; at most {max_scans:,} are allowed "
            "(a photo has about ten).",
        )


def jpeg_coefficient_bytes(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    """What libjpeg holds beside the pixels while it decodes a JPEG of several scans
    (progressive, or a scan per component): every DCT coefficient of the whole image, 2
    bytes each, per component at its (horizontal, vertical) sampling, in whole blocks of
    8 x 8 and whole MCUs (jdcoefct.c). A progressive 6000 x 6000 4:4:4 JPEG took 344 MiB
    where its pixels and encoder came to 206."""
    most_h = max(h for h, _ in sampling)
    most_v = max(v for _, v in sampling)
    total = 0
    for h, v in sampling:
        columns = -(-width * h // (8 * most_h))
        rows = -(-height * v // (8 * most_v))
        total += -(-columns // h) * h * -(-rows // v) * v * 64 * 2
    return total


def bytes_per_pixel(mode: str) -> int:
    """Bytes each pixel of an image of this mode takes in memory."""
    return _BYTES_PER_PIXEL.get(mode, 4)


def check_decode_budget(needed: int, *, max_bytes: int) -> None:
    """Refuse, before decoding, an image whose decode and re-encode would take `needed`
    bytes of memory, more than max_bytes."""
    if needed > max_bytes:
        raise ImagingError(
            ImageReason.TOO_MANY_PIXELS,
            f"The image needs {needed / 2**20:,.0f} MiB to decode and re-encode; at most "
            f"{max_bytes / 2**20:,.0f} MiB are allowed.",
        )


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Fail what runs inside with `too_slow` once it has taken `seconds` of wall time.

    A timer signal raises the error in the main thread between the codec's calls (Pillow
    decodes a file in chunks); a single C call runs to its end first. Only the main thread
    receives signals: elsewhere, and with seconds None, nothing is limited.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    ran_out = False
    inside = True

    def expire(_signum: int, _frame: Any) -> None:
        nonlocal ran_out
        ran_out = True
        # Not once the block has ended: raised during the clean-up below, it left this
        # handler installed and the timer firing into whatever the process did next.
        if inside:
            raise _too_slow(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    # Again every `seconds` until the block ends: a signal that lands while a finalizer or
    # a __del__ runs has its error printed and dropped by Python, and the block goes on (a
    # PNG's slow header read on past its limit when the garbage collector ran at that moment).
    outer, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds, seconds)
    started = time.monotonic()
    try:
        try:
            yield
        finally:
            inside = False  # a plain store: Python runs no handler before it
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if outer:
                # A timer already running (an outer limit, pytest-timeout's) runs on as if
                # this one had not been; one due meanwhile fires at once.
                left = outer - (time.monotonic() - started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), outer_interval)
    except Exception as error:
        # Once the time is out, whatever the block ended with follows from being stopped
        # (Pillow's readers take the error for a damaged file, and we for a corrupt image).
        told = isinstance(error, ImagingError) and error.reason == ImageReason.TOO_SLOW
        if ran_out and not told:
            raise _too_slow(seconds) from error
        raise
    if ran_out:
        raise _too_slow(seconds)


def _too_slow(seconds: float) -> ImagingError:
    return ImagingError(
        ImageReason.TOO_SLOW,
        f"Decoding and re-encoding the image took longer than {seconds:g} s.",
    )
