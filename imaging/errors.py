"""The one error type of the imaging package: a stable reason code and a human message."""

from enum import StrEnum


class ImageReason(StrEnum):
    """Why bytes could not be turned into a compressed image."""

    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_COMPLEX = "too_complex"
    TOO_SLOW = "too_slow"
    ENCODE_FAILED = "encode_failed"


class ImagingError(Exception):
    """An image could not be compressed."""

    # The same bytes fail the same way every time: never worth retrying.
    transient = False

    def __init__(self, reason: ImageReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"ImagingError({self.reason.value!r}, {self.message!r})"
