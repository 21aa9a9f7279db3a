"""Helpers the tests share: waiting with a deadline, ports, images, HTTP calls."""

import io
import json
import math
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import urllib3
from PIL import Image, ImageDraw, ImageFilter

# The libjpeg (IJG) luminance quantisation table at quality 50, in natural order: what a
# JPEG saved at quality 50 by any libjpeg-based encoder carries. Written out here rather
# than taken from the code under test.
IJG_Q50_LUMINANCE = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip


ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    condition: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str
) -> Any:
    """Poll condition until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def a_minute_with_seconds_left(seconds: float) -> None:
    """Wait, if need be, for a clock minute with `seconds` still to run: what counts per
    minute (test events) splits its count across a minute's end."""
    wait_until(
        lambda: time.time() % 60 < 60 - seconds,
        timeout=seconds + 1,
        interval=0.1,
        what="the next minute",
    )


def python_run(arguments: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """This Python, in the checkout, as a process of its own with environ: what it printed,
    as text, whatever its exit code (a minute at most)."""
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def size_chart() -> Image.Image:
    """A size chart, as catalogues hold: lines and text on white, which a JPEG makes larger."""
    chart = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(chart)
    for row in range(12):
        for column in range(5):
            left, top = 40 + column * 140, 40 + row * 44
            draw.rectangle((left, top, left + 138, top + 42), outline="black")
            draw.text((left + 10, top + 12), f"EU {36 + row}", fill="black")
    return chart


def divider() -> Image.Image:
    """A one-bit divider line, as shops put between products: 270 bytes as a BMP, 310 as
    a TIFF, which a JPEG at quality 50 makes 3 times larger."""
    line = Image.new("1", (400, 4), 1)
    line.paste(0, (0, 1, 400, 3))
    return line


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Something with a photograph's mix of smooth areas, edges and grain."""
    base = Image.merge(
        "RGB",
        [
            Image.linear_gradient("L").resize((width, height)),
            Image.radial_gradient("L").resize((width, height)),
            Image.linear_gradient("L").rotate(90 + seed * 7).resize((width, height)),
        ],
    )
    draw = ImageDraw.Draw(base)
    for index in range(12):
        x = (seed * 97 + index * 53) % width
        y = (seed * 31 + index * 71) % height
        colour = ((index * 40 + seed) % 256, (index * 90) % 256, (index * 20 + 60) % 256)
        draw.ellipse([x, y, x + width // 5, y + height // 6], fill=colour)
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    return Image.blend(base.filter(ImageFilter.GaussianBlur(1)), noise, 0.15)


def noisy_photo(
    width: int = 384, height: int = 384, seed: int = 7, shapes: int = 12
) -> Image.Image:
    """Gradients, soft shapes and sensor noise, from a seeded generator: what a JPEG's
    artefacts show on, the same pixels on every machine."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 64], axis=2
    )
    image = Image.fromarray(base.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(shapes):
        left, top = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        size_x, size_y = int(rng.integers(20, 80)), int(rng.integers(20, 80))
        colour = tuple(int(value) for value in rng.integers(0, 255, 3))
        draw.ellipse((left, top, left + size_x, top + size_y), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(1))
    noisy = np.asarray(image) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def encoded(image: Image.Image, format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


# The API key each running service (by its base URL) gave the tests: calls to its API send
# it, as a client would (tests/harness/service.py registers them).
API_KEYS: dict[str, str] = {}


def api_headers(url: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """headers plus the key of the service url belongs to, if it is one of ours."""
    for base_url, key in API_KEYS.items():
        if url.startswith(base_url + "/"):
            return {"Authorization": f"Bearer {key}", **(headers or {})}
    return dict(headers or {})


def multipart_upload(
    base_url: str, csv_text: str | bytes | None, **fields: str
) -> urllib3.BaseHTTPResponse:
    body: dict[str, Any] = dict(fields)
    if csv_text is not None:
        data = csv_text.encode() if isinstance(csv_text, str) else csv_text
        body["file"] = ("products.csv", data, "text/csv")
    url = f"{base_url}/api/upload/"
    # On a connection of its own: urllib3's shared pool would send it on one kept from an
    # earlier call, which the server may close, idle, as the POST goes out (a reset no
    # POST is retried after; seen once in CI). A client resends with an Idempotency-Key.
    with urllib3.PoolManager() as fresh:
        return fresh.request("POST", url, fields=body, headers=api_headers(url), timeout=30)


def api_request(method: str, url: str, **options: Any) -> urllib3.BaseHTTPResponse:
    """A call to a service's API with its key."""
    headers = api_headers(url, options.pop("headers", None))
    return urllib3.request(method, url, headers=headers, timeout=30, **options)


def invalid_input(field: str, message: str) -> dict[str, Any]:
    """The API's 400 body for one field it cannot take."""
    return {
        "error": "Invalid input.",
        "code": "invalid_input",
        "details": [{"field": field, "message": message}],
    }


def get_json(url: str) -> tuple[int, Any]:
    response = api_request("GET", url)
    return response.status, json.loads(response.data)


def fetch_bytes(url: str) -> bytes:
    response = api_request("GET", url)
    assert response.status == 200, url
    return response.data


def wait_for_finish(base_url: str, request_id: str, timeout: float = 180) -> dict[str, Any]:
    """The request's status once it is no longer pending or processing."""

    def finished() -> dict[str, Any] | None:
        status, body = get_json(f"{base_url}/api/status/{request_id}/")
        assert status == 200, body
        return body if body["status"] not in {"pending", "processing"} else None

    result: dict[str, Any] = wait_until(
        finished, timeout=timeout, interval=0.2, what="the request to finish"
    )
    return result


def jpeg_scan_bomb(width: int, height: int, scans: int) -> bytes:
    """A progressive grey JPEG whose every pixel is black, that makes its decoder go over
    the whole image once per scan: a DC scan, then the same AC scan again and again, each
    a few bytes of end-of-band runs. 189 KB of it at 7000 x 7000 and 1,000 scans take
    libjpeg about 8 s; a photo has about ten scans."""
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    quantisation = _segment(0xDB, b"\x00" + bytes([1] * 64))
    frame = _segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    # DC table: one code, "0", for "no change"; AC table: the 15 end-of-band runs, 4 bits each.
    dc_table = _segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    ac_table = _segment(0xC4, b"\x10" + bytes([0, 0, 0, 15] + [0] * 12) + bytes(range(0, 240, 16)))
    dc = _Bits()
    for _ in range(blocks):
        dc.put(0, 1)
    dc_scan = _segment(0xDA, b"\x01\x01\x00\x00\x00\x00") + dc.flushed()
    ac = _Bits()
    remaining = blocks
    while remaining:
        run = min(remaining, 32767)  # EOB14 with its 14 extra bits runs this far
        size = run.bit_length() - 1
        ac.put(size, 4)
        ac.put(run - (1 << size), size)
        remaining -= run
    ac_scan = _segment(0xDA, b"\x01\x01\x00\x01\x3f\x00") + ac.flushed()
    header = b"\xff\xd8" + quantisation + frame + dc_table + ac_table
    return header + dc_scan + ac_scan * (scans - 1) + b"\xff\xd9"


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


class _Bits:
    """Entropy-coded bits, most significant first, with JPEG's byte stuffing."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.byte = 0
        self.used = 0

    def put(self, value: int, length: int) -> None:
        for shift in range(length - 1, -1, -1):
            self.byte = (self.byte << 1) | ((value >> shift) & 1)
            self.used += 1
            if self.used == 8:
                self.out.append(self.byte)
                if self.byte == 0xFF:
                    self.out.append(0x00)
                self.byte = self.used = 0

    def flushed(self) -> bytes:
        while self.used:
            self.put(1, 1)  # padding is ones
        return bytes(self.out)


def blank_png(width: int, height: int, color_type: int, bit_depth: int = 8) -> bytes:
    """A PNG of width x height (all zero) in a few hundred kilobytes at most."""
    channels = {0: 1, 2: 3, 6: 4}[color_type]
    row = b"\0" + b"\0" * (width * channels * bit_depth // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def cmyk_profile(paper: tuple[float, float, float]) -> bytes:
    """A small ICC v2 printer profile for CMYK, written out here (the machine has none to
    borrow): no ink is paper of Lab colour `paper`, each ink darkens and tints it, full
    black is near black. Only its A2B0 table (CMYK to Lab, 2 grid points an ink), which is
    all a conversion from CMYK reads."""

    def lab_bytes(lightness: float, a: float, b: float) -> bytes:
        return bytes([round(lightness * 255 / 100), round(a + 128), round(b + 128)])

    tints = [(-20.0, -30.0), (40.0, -5.0), (-5.0, 60.0)]  # what cyan, magenta, yellow add to a, b
    grid = b""
    for corner in range(16):  # cyan varies slowest, black fastest, as ICC tables are ordered
        cyan, magenta, yellow, black = ((corner >> shift) & 1 for shift in (3, 2, 1, 0))
        lightness, a, b = paper
        for ink, (da, db) in zip((cyan, magenta, yellow), tints, strict=True):
            lightness -= 25 * ink
            a, b = a + da * ink, b + db * ink
        if black:
            lightness, a, b = 8.0, 0.0, 0.0
        grid += lab_bytes(max(lightness, 5.0), a, b)
    identity = bytes(range(256))
    unit = [_FIXED.pack(65536 if row == column else 0) for row in range(3) for column in range(3)]
    lut = b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + b"".join(unit) + identity * 4 + grid
    lut += identity * 3
    return _icc_profile(b"prtr", b"CMYK", b"Lab ", [(b"A2B0", lut)])


def grey_profile(gamma: float) -> bytes:
    """A small ICC v2 profile for grey images whose tone curve is a plain gamma: 1.0 says
    the stored values are linear light, so a mid-grey of 128 looks far lighter than sRGB's
    128 (about 188 in sRGB)."""
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    return _icc_profile(b"mntr", b"GRAY", b"XYZ ", [(b"kTRC", curve)])


def display_p3_profile() -> bytes:
    """A small ICC v2 profile of Display P3 as Apple's is made: its primaries (wider than
    sRGB's: its pure red is redder than any sRGB has) adapted to D50, and sRGB's tone curve
    as a parametric curve."""
    srgb_curve = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    curve = b"para" + bytes(4) + struct.pack(">HH", 3, 0)
    curve += b"".join(_FIXED.pack(round(value * 65536)) for value in srgb_curve)
    colorants = ((0.515102, 0.241196, -0.001053), (0.291965, 0.692236, 0.041885))
    return _matrix_profile((*colorants, (0.157153, 0.066574, 0.784073)), curve)


def prophoto_profile() -> bytes:
    """A small ICC v2 profile of ProPhoto RGB: primaries so wide that its pure green and
    blue lie outside what eyes see, and a gamma of 1.8."""
    colorants = ((0.7977, 0.2880, 0.0), (0.1352, 0.7119, 0.0), (0.0313, 0.0001, 0.8249))
    return _matrix_profile(colorants, b"curv" + bytes(4) + struct.pack(">IH", 1, round(1.8 * 256)))


def _matrix_profile(colorants: tuple[tuple[float, float, float], ...], curve: bytes) -> bytes:
    """An RGB profile of the three colorants (D50 XYZ) and one tone curve for each channel."""
    tags = [
        (name, b"XYZ " + bytes(4) + b"".join(_FIXED.pack(round(v * 65536)) for v in xyz))
        for name, xyz in zip((b"rXYZ", b"gXYZ", b"bXYZ"), colorants, strict=True)
    ]
    tags += [(name, curve) for name in (b"rTRC", b"gTRC", b"bTRC")]
    return _icc_profile(b"mntr", b"RGB ", b"XYZ ", tags)


_FIXED = struct.Struct(">i")
_D50 = b"".join(_FIXED.pack(round(value * 65536)) for value in (0.9642, 1.0, 0.8249))


def _icc_profile(
    device_class: bytes, colour_space: bytes, connection: bytes, tags: list[tuple[bytes, bytes]]
) -> bytes:
    """An ICC v2 profile of tags, with a description and a D50 white point."""
    text = b"test profile\x00"
    description = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text
    description += bytes(4 + 4 + 2 + 1 + 67)  # no Unicode or ScriptCode names
    tags = [(b"desc", description), (b"wtpt", b"XYZ " + bytes(4) + _D50), *tags]
    header = (
        bytes(4) + bytes(4) + b"\x02\x10\x00\x00" + device_class + colour_space
        + connection + bytes(12) + b"acsp" + bytes(4 + 4 + 4 + 4 + 8 + 4) + _D50
        + bytes(4 + 16 + 28)
    )  # fmt: skip
    return icc_assembled(header, tags)


def icc_assembled(header: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """An ICC profile of header's 128 bytes (its size written here) and tags, in order."""
    assert len(header) == 128
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    return struct.pack(">I", size) + header[4:] + table + body
