"""What became of one URL's attempt in a batch or the sweep: an output, or a failure with
its reason and whether to try again. results.images_record writes them."""

import errno
import logging
from dataclasses import dataclass
from typing import Final, TypeGuard

from django.conf import settings

from imaging.errors import ImagingError
from net import DownloadStopped, NetError
from processing.facts import OutputFacts
from processing.models import ReasonCode

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageFailure:
    """Why an image failed: a reason code (ReasonCode, or http_<status>) and a message."""

    reason: str
    message: str
    transient: bool = False  # the same attempt may succeed later: retried
    retry_after: float | None = None  # seconds the image's server asked us to wait
    # Retried once even past IMAGE_MAX_ATTEMPTS: what failed it is gone once it has (an
    # earlier output to re-use, missing from storage, is forgotten as it fails).
    once_more: bool = False

    @classmethod
    def from_error(cls, error: BaseException, *, image_id: int) -> "ImageFailure":
        if isinstance(error, NetError):
            return cls(error.reason, error.message, error.transient, error.retry_after)
        if isinstance(error, ImagingError):
            return cls(error.reason, error.message)
        if isinstance(error, DownloadStopped):  # its request's cancel, seen by the batch
            return CANCELLED
        # A bug, or an image that trips the codec in a way no guard foresaw: this image
        # fails, the request goes on.
        logger.error("image %s failed unexpectedly", image_id, exc_info=error)
        return cls(ReasonCode.INTERNAL_ERROR, "The image could not be processed.")


# A storage with no room for a file: the disk full, a quota reached, a limit on a file's
# size. Not the image's doing: it is made once there is room.
NO_ROOM: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def storage_no_room(error: BaseException) -> TypeGuard[OSError]:
    return isinstance(error, OSError) and error.errno in NO_ROOM


def storage_failure(error: BaseException) -> ImageFailure:
    """An output the storage refused: tried again, as the storage may have room, or be back,
    by then."""
    if storage_no_room(error):
        message = f"Storage full: the output could not be saved on our side ({error.strerror})."
        return ImageFailure(ReasonCode.STORAGE_FULL, message, transient=True)
    return ImageFailure(ReasonCode.STORAGE_ERROR, "The output could not be stored.", transient=True)


# An image whose request was cancelled before it was compressed: waiting its turn, or in a
# batch under way, its download stopped if it had begun ("before it was processed" was
# told of images whose download had reached their server).
CANCELLED: Final = ImageFailure(ReasonCode.CANCELLED, "Cancelled before it was compressed.")


def lost_each_time(attempts: int, *, transient: bool = False) -> ImageFailure:
    """A URL whose every attempt died with its worker process (killed, out of memory, a
    crash in a codec): given up by the sweep, or by the last delivery of its batch."""
    message = (
        f"Gave up after {attempts} attempts that never finished (the worker was lost each time)."
        if attempts > 1
        else "Its attempt never finished (the worker was lost)."
    )
    return ImageFailure(ReasonCode.INTERNAL_ERROR, message, transient=transient)


def lost_ending(attempts: int, *, cancelled: bool) -> ImageFailure | None:
    """How a URL whose worker was lost on its attempts ends, or None where it is queued
    again: the one rule of the sweep and of a batch's next delivery. A cancelled request's
    is not tried again (images_record ends it as cancelled, or failed at its last attempt),
    nor one past IMAGE_MAX_ATTEMPTS."""
    if cancelled or attempts >= settings.IMAGE_MAX_ATTEMPTS:
        return lost_each_time(attempts, transient=cancelled)
    return None


@dataclass(frozen=True)
class ImageOutcome:
    """One URL's attempt: an output stored as output_name, or a failure."""

    input_url: str
    image_id: int  # the first image with this URL, which stands for the others in logs
    attempt: int  # this attempt's number, from 1
    facts: OutputFacts | None = None
    output_name: str = ""
    downloaded_bytes: int = 0  # 0 for a source that answered "not modified"
    failure: ImageFailure | None = None
