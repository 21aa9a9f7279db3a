"""Skipping what has not changed: per account, what each source URL answered last (its
validators and the SHA-256 of its bytes) and the output made from it with each set of
settings. A later request of the account asks the source with a conditional GET; on 304,
or on the same bytes, it re-uses that output instead of encoding again: a name of its own
in its own request's folder (a hard link on a file system), so that expiring one request
never takes a file another still points at; the cache then points at the newest name."""

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from imaging import encode, score
from imaging.encode import OutputFormat, QualityMode
from imaging.metadata import MetadataMode
from processing.facts import STORED_FIELDS, OutputFacts
from processing.models import ProcessingRequest, SourceCache, SourceOutput
from processing.storage import OutputStorage


def settings_key(request: ProcessingRequest) -> str:
    """Everything of a request's settings that shapes an output or its facts, and the
    rules it was made by (OUTPUT_RULES). The format, the target, the metadata kept, the
    score and its version only where asked for."""
    key = f"r{encode.OUTPUT_RULES}-{request.quality_mode}-q{request.quality}"
    if request.quality_mode == QualityMode.PERCEPTUAL:
        # The tries allowed change which quality the search settles on.
        key += f"-t{request.target_score:g}-n{settings.IMAGE_QUALITY_MAX_TRIES}"
    if request.metadata != MetadataMode.STRIP:
        key += f"-{request.metadata}"
    if request.scored and request.quality_mode != QualityMode.PERCEPTUAL:
        key += "-scored"  # an output made unscored would come back without its score
    if request.scored or request.quality_mode == QualityMode.PERCEPTUAL:
        # A quality chosen, or a score given, by other rules of the score is made again.
        key += f"-score{score.VERSION}"
    return key if request.output_format == OutputFormat.SAME else f"{key}-{request.output_format}"


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Known:
    """What the account's cache knows of a URL: enough to ask it conditionally and to
    re-use its output for the request's settings, when there is one."""

    etag: str
    last_modified: str
    content_sha256: str
    output: SourceOutput | None
    source_id: int
    checked_at: datetime


@dataclass(frozen=True)
class Seen:
    """A source as this batch found it, and the output made (or copied) from it."""

    url: str
    etag: str
    last_modified: str
    content_sha256: str
    output_name: str
    facts: OutputFacts
    known: Known | None  # what the cache said of it before

    def same_as_known(self, *, checked_since: datetime) -> bool:
        """Whether the cache already says all this, and was checked since then."""
        known = self.known
        return (
            known is not None
            and known.checked_at >= checked_since
            and (known.etag, known.last_modified, known.content_sha256)
            == (self.etag, self.last_modified, self.content_sha256)
        )


# A source found as the cache says is not written again within this time: checked_at only
# has to tell sources_forget which ones nobody asked for in days.
CHECKED_AT_PRECISION = timedelta(hours=1)


def sources_known(*, request: ProcessingRequest, urls: Iterable[str]) -> dict[str, Known]:
    """The account's cache for these URLs, with the outputs for the request's settings.
    An expired request's outputs are gone from the cache (request_outputs_forget), in the
    transaction that marks it expired.

    Two lookups by unique index, no join: joined to requests, PostgreSQL planned from the
    requests table (one row before its first ANALYZE) and read every output of the
    account for every batch, 0.7 s a batch at 1,500 sources."""
    by_hash = {url_hash(url): url for url in urls}
    sources = list(SourceCache.objects.filter(account_id=request.account_id, url_hash__in=by_hash))
    outputs = {
        output.source_id: output
        for output in SourceOutput.objects.filter(
            source_id__in=[source.pk for source in sources], settings_key=settings_key(request)
        )
    }
    return {
        by_hash[source.url_hash]: Known(
            etag=source.etag,
            last_modified=source.last_modified,
            content_sha256=source.content_sha256,
            output=_made_from(outputs.get(source.pk), source),
            source_id=source.pk,
            checked_at=source.checked_at,
        )
        for source in sources
    }


def _made_from(output: SourceOutput | None, source: SourceCache) -> SourceOutput | None:
    """output, if it was made from the bytes the source was last seen with."""
    if output is None or output.content_sha256 != source.content_sha256:
        return None
    return output


def output_copy(*, output: SourceOutput, name: str) -> None:
    """The earlier output stored again under name: no decode, no encode. In a folder a hard
    link (OutputStorage.link: a copy had cost the re-run of a 1,500-image catalogue a third
    of its time, BENCHMARKS.md); in a bucket a copy."""
    if isinstance(default_storage, OutputStorage):
        default_storage.link(output.output_name, name)
        return
    with default_storage.open(output.output_name, "rb") as stored:
        default_storage.save(name, ContentFile(stored.read()))


def output_forget(*, output: SourceOutput | None) -> None:
    """No longer offer output for re-use (its file is gone)."""
    if output is not None:
        SourceOutput.objects.filter(pk=output.pk).delete()


def sources_remember(*, request: ProcessingRequest, seen: list[Seen]) -> None:
    """Record what the sources answered and the outputs now made from them: a few
    statements for a batch, whatever its size, inside the caller's transaction if any.
    Rows are written in the order of their URLs: two batches that share URLs then lock
    them in the same order, and neither waits for the other in a deadlock."""
    if not seen:
        return
    now = timezone.now()
    key = settings_key(request)
    seen = sorted(seen, key=lambda item: url_hash(item.url))
    # A source found as the cache says (a re-run's, mostly) keeps its row as it is.
    ids = {
        item.url: item.known.source_id
        for item in seen
        if item.known is not None and item.same_as_known(checked_since=now - CHECKED_AT_PRECISION)
    }
    with transaction.atomic(savepoint=False):
        # With update_conflicts, PostgreSQL and SQLite hand back every row's id, inserted
        # or updated: one statement instead of an upsert and a select.
        sources = SourceCache.objects.bulk_create(
            [
                SourceCache(
                    account_id=request.account_id,
                    url=item.url,
                    url_hash=url_hash(item.url),
                    etag=item.etag,
                    last_modified=item.last_modified,
                    content_sha256=item.content_sha256,
                    checked_at=now,
                )
                for item in seen
                if item.url not in ids
            ],
            update_conflicts=True,
            unique_fields=["url_hash", "account"],
            update_fields=["etag", "last_modified", "content_sha256", "checked_at"],
        )
        ids |= {source.url: source.pk for source in sources}
        SourceOutput.objects.bulk_create(
            [
                SourceOutput(
                    source_id=ids[item.url],
                    settings_key=key,
                    content_sha256=item.content_sha256,
                    request_id=request.pk,
                    output_name=item.output_name,
                    **item.facts.stored(),
                )
                for item in seen
            ],
            update_conflicts=True,
            unique_fields=["source", "settings_key"],
            update_fields=["content_sha256", "request", "output_name", *STORED_FIELDS],
        )


def request_outputs_forget(*, request_id: uuid.UUID) -> None:
    """The outputs in an expiring request's folder are no longer offered for re-use."""
    SourceOutput.objects.filter(request_id=request_id).delete()


def sources_forget(*, checked_before: datetime) -> int:
    """Sources not asked since checked_before and with no output left to offer (their
    requests expired): gone, so that an account's cache does not grow forever."""
    deleted, _ = SourceCache.objects.filter(
        checked_at__lt=checked_before, outputs__isnull=True
    ).delete()
    return deleted
