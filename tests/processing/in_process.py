"""What the in-process pipeline tests share: the download stub at the net seam, and
requests started without a broker (what they queue is read from on-commit callbacks)."""

import hashlib
from collections.abc import Callable
from typing import Any

import net
from accounts.models import Account
from config.logs import request_id_var
from processing import intake, queue
from processing.models import ProcessingRequest, ProductImage
from processing.queue import QueuedTask

HEADER = "S. No.,Product Name,Input Image Urls\n"

Capture = Callable[..., Any]


class Downloads:
    """Stands in for net.fetch_if_changed, since these tests run no origin: each URL
    answers what the test put there, with an ETag of its bytes, and 304 to a request that
    sends that ETag (unless `conditional` is off, as on a server that ignores it); calls
    and bodies sent counted."""

    def __init__(self) -> None:
        self.answers: dict[str, bytes | Exception] = {}
        self.calls: list[str] = []
        # The request id a line logged during each download would carry, by URL.
        self.logged_as: dict[str, str] = {}
        self.bodies_sent = 0
        self.conditional = True

    def __call__(self, url: str, policy: net.NetPolicy, *, etag: str = "", **_: Any) -> net.Fetched:
        self.calls.append(url)
        self.logged_as[url] = request_id_var.get()
        answer = self.answers[url]
        if isinstance(answer, Exception):
            raise answer
        current = f'"{hashlib.sha256(answer).hexdigest()[:16]}"'
        if self.conditional and etag == current:
            return net.Fetched(body=None, etag=current)
        self.bodies_sent += 1
        return net.Fetched(body=answer, etag=current if self.conditional else "")


def started(
    account: Account, csv_text: str, capture: Capture, **options: Any
) -> tuple[ProcessingRequest, list[list[int]]]:
    """A stored request moved to processing; the image batches request_start queued."""
    request = intake.request_create(
        account=account,
        csv_data=(HEADER + csv_text).encode(),
        public_base_url="http://testserver",
        **options,
    )
    with capture(execute=False) as callbacks:
        intake.request_start(request_id=request.pk)
    return request, batches_of(callbacks)


def batches_of(callbacks: list[Any]) -> list[list[int]]:
    return [task.args[0] for task in queued(callbacks, queue.IMAGES_PROCESS)]


def queued(callbacks: list[Any], name: str) -> list[QueuedTask]:
    return [task for task in callbacks if isinstance(task, QueuedTask) and task.name == name]


def images_of(request: ProcessingRequest) -> list[ProductImage]:
    return list(
        ProductImage.objects.filter(request=request).order_by("product__position", "position")
    )
