"""A body's Content-Encoding undone as it arrives, never past the byte cap.

The service asks for no encoding (Accept-Encoding: identity), yet some origins send one all
the same: an S3 object uploaded gzip-compressed is served with Content-Encoding: gzip
whatever was asked, and browsers show it. gzip and deflate are decompressed here with the
cap on what comes out, so a small body that expands to gigabytes (a gzip bomb) is cut off
at the cap, holding no more than the cap in memory; other encodings are refused by name.
"""

import re
import zlib
from typing import Final

from net.errors import NetError, NetReason

# zlib's window bits for each encoding: gzip's header and trailer; deflate as HTTP defines
# it (RFC 9110), the zlib format.
_WINDOW_BITS: Final = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}
_UNPRINTABLE: Final = re.compile(r"[^\x20-\x7e]")
_GZIP_MAGIC: Final = b"\x1f\x8b"


class BodyDecoder:
    """A body's bytes as they arrive -> the same bytes decoded (identity: as they came)."""

    def __call__(self, data: bytes) -> bytes:
        return data

    def end(self) -> None:
        """The body's last byte has come: refuse a compressed one cut short."""


def body_decoder(content_encoding: str, max_bytes: int) -> BodyDecoder:
    """What undoes content_encoding (a Content-Encoding header, "" when there was none),
    raising too_large once more than max_bytes have come out of it."""
    codings = [
        coding
        for coding in (part.strip().lower() for part in content_encoding.split(","))
        if coding and coding != "identity"
    ]
    if not codings:
        return BodyDecoder()
    if len(codings) == 1 and codings[0] in _WINDOW_BITS:
        return _Decompressor(codings[0], max_bytes)
    shown = _UNPRINTABLE.sub("?", content_encoding.strip())[:60]
    raise NetError(
        NetReason.CONNECTION_ERROR,
        f"The server sent the file compressed as {shown} (Content-Encoding), which the "
        "service cannot read: serve it uncompressed, or compressed with gzip.",
    )


class _Decompressor(BodyDecoder):
    def __init__(self, coding: str, max_bytes: int) -> None:
        self.coding, self.max_bytes = coding, max_bytes
        self.window_bits = _WINDOW_BITS[coding]
        self.decompressor = zlib.decompressobj(self.window_bits)
        self.decoded = 0
        self.started = False  # any output yet: a raw deflate stream is told from its start
        self.ended = False  # a stream (a gzip member) has ended: another member may follow
        self.ignored = False  # what followed the end is not a gzip member: ignored
        self.held = b""  # the start of what follows an end, too short to tell yet

    def __call__(self, data: bytes) -> bytes:
        data, self.held = self.held + data, b""
        pieces = []
        while data and not self.ignored:
            if self.ended:
                # Another gzip member after the first (gzip's files may be concatenated);
                # anything else after the end is ignored, as browsers do.
                short = len(data) < len(_GZIP_MAGIC)
                if self.coding != "deflate" and short and _GZIP_MAGIC.startswith(data):
                    self.held = data
                    break
                if self.coding == "deflate" or not data.startswith(_GZIP_MAGIC):
                    self.ignored = True
                    break
                self.decompressor = zlib.decompressobj(self.window_bits)
                self.ended = False
            try:
                # Never more out than one byte past the cap: the rest of the input waits in
                # unconsumed_tail, and is not decompressed at all once the cap is passed.
                piece = self.decompressor.decompress(data, self.max_bytes + 1 - self.decoded)
            except zlib.error as error:
                if self.coding == "deflate" and not self.started and self.window_bits > 0:
                    # "deflate" as many servers send it: the raw stream, without zlib's
                    # wrapping (browsers read both)
                    self.window_bits = -zlib.MAX_WBITS
                    self.decompressor = zlib.decompressobj(self.window_bits)
                    continue
                raise self._damaged(str(error)) from None
            self.started = True
            self.decoded += len(piece)
            if self.decoded > self.max_bytes:
                raise NetError(
                    NetReason.TOO_LARGE,
                    f"The file is larger than {self.max_bytes} bytes once decompressed (the "
                    f"server sent it {self.coding}-compressed).",
                )
            pieces.append(piece)
            data = self.decompressor.unconsumed_tail
            if self.decompressor.eof:
                self.ended = True
                data = self.decompressor.unused_data + data
        return b"".join(pieces)

    def end(self) -> None:
        if not (self.ended or self.ignored):
            raise self._damaged("it stops before its end")

    def _damaged(self, why: str) -> NetError:
        return NetError(
            NetReason.CONNECTION_ERROR,
            f"The server's {self.coding}-compressed answer is damaged ({why}).",
        )
