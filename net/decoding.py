"""A body's Content-Encoding undone as it arrives, never past the byte cap.

The service asks for no encoding (Accept-Encoding: identity), yet some origins send one all
the same: an S3 object uploaded gzip-compressed is served with Content-Encoding: gzip
whatever was asked, and browsers show it. gzip and deflate are decompressed here with the
cap on what comes out, so a small body that expands to gigabytes (a gzip bomb) is cut off
at the cap, holding no more than the cap in memory; other encodings are refused by name.
"""

import re
import zlib
from collections.abc import Callable
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

# Bytes as they arrive -> the same bytes decoded; b"" when nothing more came out of them.
BodyDecoder = Callable[[bytes], bytes]


def body_decoder(content_encoding: str, max_bytes: int) -> BodyDecoder:
    """What undoes content_encoding (a Content-Encoding header, "" when there was none),
    raising too_large once more than max_bytes have come out of it."""
    codings = [
        coding
        for coding in (part.strip().lower() for part in content_encoding.split(","))
        if coding and coding != "identity"
    ]
    if not codings:
        return lambda data: data
    if len(codings) == 1 and codings[0] in _WINDOW_BITS:
        return _decompressor(codings[0], _WINDOW_BITS[codings[0]], max_bytes)
    shown = _UNPRINTABLE.sub("?", content_encoding.strip())[:60]
    raise NetError(
        NetReason.CONNECTION_ERROR,
        f"The server sent the file compressed as {shown} (Content-Encoding), which the "
        "service cannot read: serve it uncompressed, or compressed with gzip.",
    )


def _decompressor(coding: str, window_bits: int, max_bytes: int) -> BodyDecoder:
    decompressor = zlib.decompressobj(window_bits)
    decoded = 0

    def decode(data: bytes) -> bytes:
        nonlocal decoded
        pieces = []
        while not decompressor.eof:
            try:
                # Never more out than one byte past the cap: the rest of the input waits in
                # unconsumed_tail, and is not decompressed at all once the cap is passed.
                piece = decompressor.decompress(data, max_bytes + 1 - decoded)
            except zlib.error as error:
                raise NetError(
                    NetReason.CONNECTION_ERROR,
                    f"The server's {coding}-compressed answer is damaged ({error}).",
                ) from None
            decoded += len(piece)
            if decoded > max_bytes:
                raise NetError(
                    NetReason.TOO_LARGE,
                    f"The file is larger than {max_bytes} bytes once decompressed (the "
                    f"server sent it {coding}-compressed).",
                )
            data = decompressor.unconsumed_tail
            if not piece and not data:  # all of it in, and nothing more held back
                break
            pieces.append(piece)
        # What follows the end of the compressed stream is ignored, as browsers do.
        return b"".join(pieces)

    return decode
