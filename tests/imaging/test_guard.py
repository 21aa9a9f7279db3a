"""What one image may cost, bounded before it is paid: scans of a JPEG, memory to decode
and re-encode, time. The hostile files are made here."""

import signal
import struct
import threading
import time
import weakref
import zlib

import pytest
from PIL import Image

from imaging.encode import (
    SCORE_ALPHA_BYTES_PER_PIXEL,
    SCORE_BYTES_PER_PIXEL,
    WEBP_BYTES_PER_PIXEL,
    OutputFormat,
    compress,
)
from imaging.errors import ImageReason, ImagingError
from imaging.guard import jpeg_scan_count, time_limit
from tests.support import blank_png, encoded, jpeg_scan_bomb, photo

MAX_PIXELS = 50_000_000


def test_scans_are_counted_from_the_segments() -> None:
    assert jpeg_scan_count(encoded(photo(64, 48), "JPEG", quality=90)) == 1
    assert jpeg_scan_count(encoded(photo(64, 48), "JPEG", quality=90, progressive=True)) == 10
    assert jpeg_scan_count(jpeg_scan_bomb(64, 64, 500)) == 500


def test_a_jpeg_of_thousands_of_scans_is_refused_before_it_is_decoded() -> None:
    # Given 189 KB that would take its decoder about 8 s
    bomb = jpeg_scan_bomb(7000, 7000, 1000)
    assert len(bomb) < 200_000

    # When it is compressed, then it is refused at once, saying why
    started = time.monotonic()
    with pytest.raises(ImagingError) as refused:
        compress(bomb, quality=50, max_pixels=MAX_PIXELS, max_jpeg_scans=100)
    assert time.monotonic() - started < 0.5
    assert refused.value.reason == "too_complex"
    assert refused.value.message == (
        "The JPEG has 1,000 scans; at most 100 are allowed (a photo has about ten)."
    )


def test_a_jpeg_within_the_scan_limit_is_compressed() -> None:
    result = compress(jpeg_scan_bomb(256, 256, 100), quality=50, max_pixels=MAX_PIXELS)
    assert (result.width, result.height) == (256, 256)


@pytest.mark.parametrize(
    ("color_type", "bit_depth", "bytes_per_pixel"),
    [
        (6, 8, 4 + 42),  # RGBA, and what WebP's encoder may hold to compress it with alpha
        # 16-bit grey, its scaled copy and its 8-bit conversion, and the JPEG's output
        (0, 16, 2 + 2 + 1 + 3),
        (2, 8, 3 + 3),  # RGB, which the JPEG encoder reads where it lies
    ],
)
def test_an_image_is_refused_before_decoding_when_its_decode_would_pass_the_budget(
    color_type: int, bit_depth: int, bytes_per_pixel: int
) -> None:
    # Given a 7000 x 7000 PNG of a few hundred kilobytes, and a budget a byte short of it
    png = blank_png(7000, 7000, color_type, bit_depth)
    # and, scored, the pixels its score compares
    scoring = SCORE_ALPHA_BYTES_PER_PIXEL if color_type == 6 else SCORE_BYTES_PER_PIXEL
    needed = 7000 * 7000 * (bytes_per_pixel + scoring)

    # When it is compressed, then it is refused without decoding, saying how much it needs
    started = time.monotonic()
    with pytest.raises(ImagingError) as refused:
        compress(png, quality=50, max_pixels=MAX_PIXELS, max_decode_bytes=needed - 1, scored=True)
    assert time.monotonic() - started < 0.5
    assert refused.value.reason == "too_many_pixels"
    assert refused.value.message.startswith(f"The image needs {needed / 2**20:,.0f} MiB")


def spin() -> None:
    while True:
        pass


def test_a_time_limit_stops_python_work_with_too_slow() -> None:
    started = time.monotonic()
    with pytest.raises(ImagingError) as stopped, time_limit(0.2):
        spin()
    assert stopped.value.reason == "too_slow"
    assert 0.2 <= time.monotonic() - started < 1.0


def test_a_time_limit_stops_a_slow_decode_within_a_fraction_of_a_second() -> None:
    # Given a JPEG built to take its decoder several seconds, allowed its scans
    bomb = jpeg_scan_bomb(7000, 7000, 1000)

    # When it is compressed with one second allowed, then it stops soon after
    started = time.monotonic()
    with pytest.raises(ImagingError) as stopped, time_limit(1.0):
        compress(bomb, quality=50, max_pixels=MAX_PIXELS, max_jpeg_scans=10_000)
    assert stopped.value.reason == "too_slow"
    assert time.monotonic() - started < 2.5


def test_a_time_limit_lets_what_ends_in_time_through_and_is_gone_after() -> None:
    with time_limit(5):
        compress(encoded(photo(64, 48), "JPEG", quality=90), quality=50, max_pixels=MAX_PIXELS)
    time.sleep(0.05)  # nothing fires later
    with time_limit(None):
        pass


def spin_for(seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pass


class Held:
    """An object whose end runs a finalizer."""


def finalizer_past_the_limit() -> list[Held]:
    """One object in a list: clearing the list runs its finalizer, which spins 0.3 s."""
    held = [Held()]
    weakref.finalize(held[0], spin_for, 0.3)
    return held


# Python prints an error raised in a finalizer and drops it; pytest reports the print.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_limit_whose_error_lands_in_a_finalizer_still_stops_the_work_after_it() -> None:
    """The limit raised once: when that landed in a finalizer, nothing stopped the rest (a
    slow PNG header was read to its end when the garbage collector ran at that moment)."""
    # Given a finalizer that runs past the limit, and slow work after it
    held = finalizer_past_the_limit()

    def end_it_then_work() -> None:
        held.clear()
        spin_for(3)

    # When both run inside the limit, then the work after the finalizer is stopped too
    started = time.monotonic()
    with pytest.raises(ImagingError) as stopped, time_limit(0.1):
        end_it_then_work()
    assert stopped.value.reason == "too_slow"
    assert time.monotonic() - started < 1.0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_work_that_ends_after_its_limits_error_was_dropped_is_too_slow() -> None:
    held = finalizer_past_the_limit()
    with pytest.raises(ImagingError) as stopped, time_limit(0.1):
        held.clear()
    assert stopped.value.reason == "too_slow"


def test_what_work_stopped_by_its_limit_ends_with_is_too_slow() -> None:
    # Given work that takes the limit's error for a damaged file, as Pillow's readers can
    def taken_for_damaged() -> None:
        try:
            spin()
        except ImagingError as error:
            raise ImagingError(ImageReason.CORRUPT_IMAGE, "The header is damaged.") from error

    # When it runs out of time, then it is told as too slow, not as a damaged file
    with pytest.raises(ImagingError) as stopped, time_limit(0.1):
        taken_for_damaged()
    assert stopped.value.reason == "too_slow"


def test_a_limit_due_as_its_block_ends_is_gone_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Due while the limit put things back, its error skipped the rest: the handler stayed,
    the timer fired on, and a later image's own error handling was cut by too_slow."""
    # Given the timer due at the instant the limit stops it (made so: the signal is sent
    # as the limit calls setitimer to stop it, a moment that cannot be timed otherwise)
    stop_timer = signal.setitimer

    def due_as_stopped(which: int, seconds: float, interval: float = 0.0) -> tuple[float, float]:
        if seconds == 0:
            signal.raise_signal(signal.SIGALRM)
        return stop_timer(which, seconds, interval)

    monkeypatch.setattr(signal, "setitimer", due_as_stopped)
    before = signal.getsignal(signal.SIGALRM)

    # When a block ends then, it is too slow
    with pytest.raises(ImagingError) as stopped, time_limit(0.2):
        pass
    monkeypatch.undo()
    assert stopped.value.reason == "too_slow"

    # and the handler and the timer are as they were before it
    assert signal.getsignal(signal.SIGALRM) == before
    assert signal.getitimer(signal.ITIMER_REAL)[1] == 0.0


def test_a_limit_inside_another_leaves_the_outer_one_running() -> None:
    """The inner limit stopped the one timer there is as it ended: the outer one (or
    pytest-timeout's) never fired."""

    def limited_then_slow() -> None:
        with time_limit(5):
            pass
        spin_for(3)

    with pytest.raises(ImagingError) as stopped, time_limit(0.3):
        limited_then_slow()
    assert stopped.value.message.endswith("longer than 0.3 s.")


def test_off_the_main_thread_nothing_is_limited() -> None:
    finished = []

    def work() -> None:
        with time_limit(0.01):
            time.sleep(0.05)
        finished.append(True)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert finished == [True]


def test_an_rgba_png_under_the_budget_keeps_its_transparency_in_webp() -> None:
    image = Image.new("RGBA", (300, 200), (10, 20, 30, 255))
    image.paste((0, 0, 0, 0), (0, 0, 50, 50))
    result = compress(encoded(image, "PNG"), quality=50, max_pixels=MAX_PIXELS)
    assert result.format == "WEBP"


def test_a_stray_byte_before_the_frame_does_not_hide_the_scans() -> None:
    # Given a scan bomb with one byte that is not a marker before its frame header, which
    # libjpeg skips (with a warning) and decodes on
    bomb = jpeg_scan_bomb(7000, 7000, 1000)
    frame = bomb.index(b"\xff\xc2")
    hidden = bomb[:frame] + b"\x00" + bomb[frame:]

    # Then its scans are still counted, and it is refused before it is decoded
    assert jpeg_scan_count(hidden) == 1000
    with pytest.raises(ImagingError) as refused:
        compress(hidden, quality=50, max_pixels=MAX_PIXELS, max_jpeg_scans=100)
    assert refused.value.reason == "too_complex"


def test_the_time_limit_firing_inside_libjpeg_turbo_ends_the_image() -> None:
    """The limit's error, raised as libjpeg-turbo's one call returns, was taken for a file
    that path cannot read: the image went through Pillow again, with no limit left."""
    photo_3000 = encoded(photo(3000, 2000), "JPEG", quality=90)
    with pytest.raises(ImagingError) as stopped, time_limit(0.005):
        compress(photo_3000, quality=50, max_pixels=MAX_PIXELS)
    assert stopped.value.reason == "too_slow"


def test_the_time_limit_firing_while_a_pngs_exif_is_looked_for_ends_the_image() -> None:
    """Pillow decodes a PNG to look for EXIF after its pixels: the limit's error, raised
    there, was taken for damaged EXIF, and the PNG was decoded again with no limit left."""
    png_3000 = encoded(photo(3000, 2000), "PNG")
    with pytest.raises(ImagingError) as stopped, time_limit(0.005):
        compress(png_3000, quality=50, max_pixels=MAX_PIXELS)
    assert stopped.value.reason == "too_slow"


@pytest.mark.parametrize("format", ["WEBP", "AVIF"])
def test_what_a_webp_or_avif_decoder_holds_counts_against_the_budget(format: str) -> None:
    """Pillow's WebP decoder keeps libwebp's canvas beside the decoded pixels (14 bytes a
    pixel at its peak), its AVIF decoder libavif's planes (9): counted as 3, an image that
    passed the budget took 2 to 6 times what was allowed."""
    # Given the same 2000 x 1500 picture as PNG and as WebP or AVIF, asked for as JPEG, and
    # a budget of 10 bytes a pixel: more than the PNG's pixels and the JPEG encoder's need
    picture = Image.new("RGB", (2000, 1500), (200, 120, 40))
    budget = 2000 * 1500 * 10

    def as_jpeg(source: bytes) -> None:
        compress(
            source,
            quality=50,
            max_pixels=MAX_PIXELS,
            max_decode_bytes=budget,
            output_format=OutputFormat.JPEG,
        )

    as_jpeg(encoded(picture, "PNG"))

    # When the other is compressed, then it is refused before it is decoded
    with pytest.raises(ImagingError) as refused:
        as_jpeg(encoded(picture, format))
    assert refused.value.reason == "too_many_pixels"


def test_a_jpeg_of_more_segments_than_any_camera_writes_is_refused_before_it_is_opened() -> None:
    """Pillow keeps each APPn and COM segment when it opens a JPEG: 25 MB of empty comments
    took 887 MB before any check ran."""
    # Given a photo with 2,000 empty comments before its image data, and one with 500
    photo_bytes = encoded(photo(64, 48), "JPEG", quality=90)
    comment = b"\xff\xfe\x00\x02"
    many, some = (photo_bytes[:2] + comment * n + photo_bytes[2:] for n in (2000, 500))

    # When both are compressed, then the first is refused, saying why
    with pytest.raises(ImagingError) as refused:
        compress(many, quality=50, max_pixels=MAX_PIXELS)
    assert refused.value.reason == "too_complex"
    assert refused.value.message == (
        "The JPEG has more than 1,000 segments before its image data; a photo has about ten."
    )
    assert compress(some, quality=50, max_pixels=MAX_PIXELS).width == 64


def test_a_header_built_to_be_slow_to_read_is_stopped_by_the_time_limit_as_too_slow() -> None:
    """It was told as a damaged header (corrupt_image): the time limit's error, raised
    while Pillow read the header, was taken for Pillow's own."""
    # Given a PNG with half a million empty private chunks before its pixels (Pillow reads
    # each in Python: about a second)
    png = encoded(photo(64, 48), "PNG")
    chunk = struct.pack(">I", 0) + b"prVt" + struct.pack(">I", zlib.crc32(b"prVt"))
    slow = png[:33] + chunk * 500_000 + png[33:]  # after the signature and IHDR

    # When it is compressed with a tenth of that allowed, then it is too slow
    with pytest.raises(ImagingError) as refused, time_limit(0.1):
        compress(slow, quality=50, max_pixels=MAX_PIXELS)
    assert refused.value.reason == "too_slow"


@pytest.mark.parametrize(
    ("mode", "subsampling", "coefficients"),
    [
        # 1001 x 1001 in whole 8 x 8 blocks: 126 a side, 2 bytes for each of a block's 64
        ("RGB", 0, 3 * 126 * 126 * 128),
        # 4:2:0: luma in whole MCUs of 2 x 2 blocks, chroma at half, 63 blocks a side
        ("RGB", 2, (126 * 126 + 2 * 63 * 63) * 128),
        ("CMYK", 0, 4 * 126 * 126 * 128),
    ],
)
def test_a_progressive_jpegs_whole_coefficients_count_against_the_budget(
    mode: str, subsampling: int, coefficients: int
) -> None:
    # Given a progressive JPEG, whose every DCT coefficient libjpeg holds while it reads its
    # scans (and frees before the encoder starts), and a budget a byte short of its pixels
    # and those
    image = photo(1001, 1001).convert(mode)
    source = encoded(image, "JPEG", quality=90, progressive=True, subsampling=subsampling)
    pixels = len(mode)  # bytes a pixel decoded
    needed = 1001 * 1001 * pixels + coefficients

    # When it is compressed, then it is refused, saying how much it needs
    with pytest.raises(ImagingError) as refused:
        compress(source, quality=50, max_pixels=MAX_PIXELS, max_decode_bytes=needed - 1)
    assert refused.value.message.startswith(f"The image needs {needed / 2**20:,.0f} MiB")
    # and at that budget it is compressed
    compress(source, quality=50, max_pixels=MAX_PIXELS, max_decode_bytes=needed)


def test_the_coefficients_and_the_encoder_are_not_counted_together() -> None:
    """They never coexist: a 36 MP progressive JPEG asked for as WebP was refused at
    1,030 MiB, where it peaks at 490."""
    image = photo(1001, 1001)
    source = encoded(image, "JPEG", quality=90, progressive=True, subsampling=0)
    webp = 1001 * 1001 * (3 + WEBP_BYTES_PER_PIXEL)  # its pixels and the encoder's
    compress(
        source,
        quality=50,
        max_pixels=MAX_PIXELS,
        max_decode_bytes=webp,
        output_format=OutputFormat.WEBP,
    )


def test_a_baseline_jpeg_is_read_where_it_lies_without_its_coefficients() -> None:
    source = encoded(photo(1001, 1001), "JPEG", quality=90)
    compress(source, quality=50, max_pixels=MAX_PIXELS, max_decode_bytes=1001 * 1001 * (3 + 3))
