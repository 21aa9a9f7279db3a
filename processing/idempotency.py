"""An upload (or a re-run) sent again. A client whose upload's answer was lost (a
timeout, a dropped connection) cannot know whether the request was made; sending the
upload again with the same `Idempotency-Key` header gets the request the first one made
instead of a second, for IDEMPOTENCY_KEY_HOURS. The same key with another file or other
settings is refused: it names another upload, and answering with the first one's request
would hide that.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.models import Account
from processing.models import ProcessingRequest

HEADER = "Idempotency-Key"
# Visible ASCII, as Stripe's and the IETF draft's keys are (UUIDs, in practice).
KEY = re.compile(r"[\x21-\x7e]{1,255}")


class KeyInvalid(ValueError):
    """The header is not a key: empty, too long, or with spaces or other characters."""


class KeyReused(Exception):
    """The key made a request of another upload, within its time."""

    def __init__(self, earlier: ProcessingRequest) -> None:
        super().__init__(earlier.pk)
        self.earlier = earlier


class Replayed(Exception):
    """The same upload, sent again with its key: its request was made already."""

    def __init__(self, earlier: ProcessingRequest) -> None:
        super().__init__(earlier.pk)
        self.earlier = earlier


@dataclass(frozen=True)
class Idempotency:
    key: str
    # What makes two uploads the same one: the file's bytes (a re-run's source) and the
    # settings given.
    digest: str

    @classmethod
    def of(cls, key: str, *, content: bytes, given: dict[str, Any]) -> "Idempotency":
        if not KEY.fullmatch(key):
            raise KeyInvalid(
                f"The {HEADER} header must be 1 to 255 visible ASCII characters (a UUID, "
                f"say), not {_as_sent(key)[:80]!r}."
            )
        digest = hashlib.sha256(content)
        digest.update(json.dumps(given, sort_keys=True, default=str).encode())
        return cls(key=key, digest=digest.hexdigest())


def _as_sent(header: str) -> str:
    """A header's value as the client wrote it: the server read its bytes as Latin-1, so
    a key in UTF-8 ("café") would be echoed garbled ("cafÃ©")."""
    try:
        return header.encode("latin-1").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return header


def key_made_request(*, account: Account, key: str | None) -> bool:
    """Whether key made one of the account's requests within its time."""
    return bool(key) and (
        ProcessingRequest.objects.filter(
            account=account, idempotency_key=key, created_at__gte=_oldest_kept()
        ).exists()
    )


def earlier_request_check(*, account: Account, idempotency: Idempotency) -> None:
    """Raise Replayed or KeyReused if the key made a request within its time; a key whose
    time is up is freed for this upload. Called under the account's lock (the upload's),
    so that two uploads with one key cannot both make a request."""
    earlier = ProcessingRequest.objects.filter(
        account=account, idempotency_key=idempotency.key
    ).first()
    if earlier is None:
        return
    if earlier.created_at < _oldest_kept():
        ProcessingRequest.objects.filter(pk=earlier.pk).update(
            idempotency_key="", idempotency_digest=""
        )
        return
    if earlier.idempotency_digest != idempotency.digest:
        raise KeyReused(earlier)
    raise Replayed(earlier)


def _oldest_kept() -> datetime:
    """When the oldest request whose key still answers for it was made."""
    return timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
