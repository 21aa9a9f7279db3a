"""The web page for people: upload a CSV, watch a request, see every image before and
after. Server-rendered; the page's JavaScript talks to the same JSON API as any client."""

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.http import FileResponse, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts.models import Account
from accounts.pages import account_page, account_page_render
from processing import control, finalize, selectors, webhooks
from processing.api_common import status_body, status_etag, statuses_read, upload_rate_words
from processing.models import ProcessingRequest, ProductImage
from processing.outcomes import CANCELLED
from processing.page_words import (
    OUTPUT_FORMAT_NAMES,
    counts_words,
    form_choices,
    image_advice,
    quality_choices,
    request_settings_words,
    size_change_words,
)
from processing.serializers import WebhookTestSerializer

REQUESTS_PER_PAGE = 20
PRODUCTS_PER_PAGE = 20


@dataclass(frozen=True)
class ImageRow:
    image: ProductImage
    output_url: str | None
    advice: str
    detail: str  # the error message, where it adds to the advice

    @property
    def saving_percent(self) -> int | None:
        before, after = self.image.input_bytes, self.image.output_bytes
        if not before or after is None:
            return None
        return round(100 * (before - after) / before)

    @property
    def saving_words(self) -> str | None:
        return size_change_words(self.saving_percent)


@account_page("GET")
def home(request: HttpRequest, account: Account) -> HttpResponse:
    # Every request of the account, a page at a time (it showed the latest 20, no more);
    # ?status=failed (or failed,cancelled) those in these statuses, as the API lists them;
    # a status it does not know is said, as the request's page says it (it listed every
    # request, as though the filter had been taken).
    shown = _status_filter(request, ProcessingRequest.Status.choices)
    listed = selectors.requests_list(account=account, statuses=shown["statuses"])
    if shown["status_problems"]:
        listed = listed.none()
    page = page_asked(request, Paginator(listed, REQUESTS_PER_PAGE))
    return render(
        request,
        "processing/home.html",
        {
            "recent": [(row, request_settings_words(row)) for row in page.object_list],
            "page": page,
            **shown,
            "account": account,
            "score_all": settings.IMAGE_SCORE_ALL_MODES,
            # Chosen in the menu: the form always sends one, so the menu's first choice
            # (strip) overrode IMAGE_METADATA for every upload from the page.
            "default_metadata": settings.IMAGE_METADATA,
            "default_quality": settings.IMAGE_QUALITY,
            "csv_max_bytes": settings.CSV_MAX_BYTES,
            "csv_max_megabytes": f"{settings.CSV_MAX_BYTES / 1024 / 1024:g}",
            "csv_max_rows": f"{settings.CSV_MAX_ROWS:,}",
            # The account's limits, and how near it is to the images one: an upload over
            # them was a 429 with nothing on the page to say how near it had been.
            "pending_images": f"{selectors.account_pending_images(account=account):,}"
            if settings.ACCOUNT_MAX_PENDING_IMAGES
            else None,
            "max_pending_images": f"{settings.ACCOUNT_MAX_PENDING_IMAGES:,}",
            "upload_rate": upload_rate_words(settings.ACCOUNT_UPLOAD_RATE_LIMIT)
            if settings.ACCOUNT_UPLOAD_RATE_LIMIT
            else None,
            "quality_choices": quality_choices(),
            **form_choices(),
        },
        status=400 if shown["status_problems"] else 200,
    )


def _status_filter(request: HttpRequest, choices: list[tuple[str, str]]) -> dict[str, Any]:
    """What ?status= asks a list for, as the page's context: the statuses, and what is
    wrong with them (none then: the page says so in place of its list), in the API's words;
    the links that pick one, the words that name those picked, and the query the page's
    links keep of them."""
    statuses, problems = statuses_read(
        request.GET.getlist("status"), [value for value, _ in choices]
    )
    if problems:
        statuses = []
    return {
        "statuses": statuses,
        "status_problems": problems,
        "status_filters": choices,
        "filter_words": " or ".join(
            str(label).lower() for value, label in choices if value in statuses
        ),
        "filter_query": urlencode({"status": ",".join(statuses)}) + "&" if statuses else "",
    }


def page_asked(request: HttpRequest, paginator: "Paginator[Any]") -> "Page[Any]":
    """The page ?page= asks for: a number, or "last", as the API's lists take it (the last
    of a 250-page request was 249 clicks; the requests list took it for the first); any
    other value, the nearest page, as Django gives it."""
    asked = request.GET.get("page")
    return paginator.get_page(paginator.num_pages if asked == "last" else asked)


@account_page("GET")
def request_detail(request: HttpRequest, account: Account, request_id: uuid.UUID) -> HttpResponse:
    found = _request_or_page(request, account, request_id)
    if isinstance(found, HttpResponse):
        return found
    retry_count = found.failed_images + found.cancelled_images
    # ?status=failed (or failed,cancelled, or any image status): the products with an image
    # in these statuses alone, as the products API filters them (a big request's few
    # failures were somewhere on its hundred pages; ?status=cancelled was ignored).
    body = status_body(found)  # the status API's, whose webhook the page shows too
    shown = _status_filter(request, ProductImage.Status.choices)
    listed = selectors.request_products(request_id=found.pk, image_statuses=shown["statuses"])
    if shown["status_problems"]:  # said in place of the products, as the API's 400 says it
        listed = listed.none()
    paginator = Paginator(listed, PRODUCTS_PER_PAGE)
    page = page_asked(request, paginator)
    products = [
        {
            "product": product,
            "images": [
                ImageRow(
                    image=image,
                    output_url=selectors.image_output_url(found, image),
                    advice=image_advice(image) if image.error_code else "",
                    # A plain cancel's message says what its advice does: not twice.
                    detail="" if image.error_message == CANCELLED.message else image.error_message,
                )
                for image in product.images.all()
            ],
        }
        for product in page.object_list
    ]
    context = {
        "request_row": found,
        "page": page,
        "products": products,
        **shown,
        "percent": _percent_done(found),
        "counts_words": counts_words(found),
        "all_failed": _all_failed(found),
        "output_format_name": OUTPUT_FORMAT_NAMES.get(found.output_format, found.output_format),
        "saved_words": size_change_words(_saved_percent(found)),
        "status_url": reverse("request-status", kwargs={"request_id": found.pk}),
        # The status API's ETag of what the page shows: a finished request's page asks
        # whether it is still so (a retry from elsewhere, a webhook sent again).
        "status_etag": status_etag(body),
        # The page's own link, not the API's: see request_output_csv.
        "output_csv_url": reverse("request-output-csv-page", kwargs={"request_id": found.pk})
        if selectors.output_csv_url(found)
        else None,
        "expires_at": selectors.expires_at(found),
        "can_retry": found.is_finished
        and (retry_count or found.status == ProcessingRequest.Status.FAILED),
        "retry_count": retry_count,
        # A delivery to the service's own WEBHOOK_URL is shown too, without its address.
        "webhook": body["webhook"],
        **form_choices(),
    }
    return render(
        request, "processing/request.html", context, status=400 if shown["status_problems"] else 200
    )


@account_page("GET")
def request_output_csv(
    request: HttpRequest, account: Account, request_id: uuid.UUID
) -> HttpResponseBase:
    """The output CSV, as a download; a page where there is none. The page linked to the
    API's with `download`: once the request had been deleted (from another tab, or by the
    retention) its 410 failed the download without a word, the person's page unchanged."""
    found = _request_or_page(request, account, request_id)
    if isinstance(found, HttpResponse):
        return found
    if selectors.output_csv_url(found) is None:
        messages.info(request, "The request has no output CSV: it is not finished, or failed.")
        return redirect("request-page", request_id=found.pk)
    try:
        opened = finalize.output_csv_open(request=found)
    except finalize.OutputCsvGone:  # deleted a moment ago
        found.refresh_from_db()
        return _gone(request, found)
    return FileResponse(
        opened,
        as_attachment=True,
        filename=f"{found.pk}-output.csv",
        content_type="text/csv; charset=utf-8",
    )


@account_page("GET", "POST")
def request_delete(request: HttpRequest, account: Account, request_id: uuid.UUID) -> HttpResponse:
    """GET asks to confirm; the POST deletes the finished request's results (the API's
    DELETE), then shows the list of requests, saying so."""
    found = _request_or_page(request, account, request_id)
    if isinstance(found, HttpResponse):
        return found
    if request.method != "POST":
        if found.is_finished:
            return render(request, "processing/request_delete.html", {"request_row": found})
        return _not_deletable_yet(request, found)
    try:
        control.request_delete(request=found, by=f"{request.user.get_username()!r} on the page")
    except control.Expired:
        return redirect("request-page", request_id=found.pk)  # deleted from another tab
    except (control.NotFinished, control.Finishing):
        return _not_deletable_yet(request, found)  # retried from another tab, say
    messages.info(
        request,
        f"Request {found.pk} deleted: its outputs, output CSV and products are going now, "
        "and its links no longer work.",
    )
    return redirect("home")


def _request_or_page(
    request: HttpRequest, account: Account, request_id: uuid.UUID
) -> ProcessingRequest | HttpResponse:
    """The account's request, or the page saying it has none such (404) or that it was
    deleted, and when (410)."""
    found = selectors.request_get(account=account, request_id=request_id)
    if found is None:
        return render(request, "processing/not_found.html", {"request_id": request_id}, status=404)
    if found.expired_at is not None:
        return _gone(request, found)
    return found


def _gone(request: HttpRequest, found: ProcessingRequest) -> HttpResponse:
    return render(request, "processing/expired.html", {"request_row": found}, status=410)


def _not_deletable_yet(request: HttpRequest, found: ProcessingRequest) -> HttpResponse:
    messages.info(request, "The request is not finished: it cannot be deleted yet.")
    return redirect("request-page", request_id=found.pk)


@account_page("GET", "POST")
def webhook_test(request: HttpRequest, account: Account) -> HttpResponse:
    """The account page's "Send a test event": the API's webhook test, its outcome shown on
    the account page. A GET (a login page sending a person back) shows the account page."""
    if request.method != "POST":
        return redirect("account")
    form = WebhookTestSerializer(data=request.POST)
    url = request.POST.get("url", "").strip()
    if not form.is_valid():
        refused = " ".join(str(item) for problems in form.errors.values() for item in problems)
        context = {"test_url": url, "test_error": refused}
        return account_page_render(request, account, context, status=400)
    try:
        sent = webhooks.webhook_test(
            account=account, url=form.validated_data["url"], by=repr(request.user.get_username())
        )
    except (webhooks.TestsBusy, webhooks.TooManyTests) as refused_now:
        status = 503 if isinstance(refused_now, webhooks.TestsBusy) else 429
        context = {"test_url": url, "test_error": str(refused_now)}
        return account_page_render(request, account, context, status=status)
    return account_page_render(request, account, {"test_url": url, "test_sent": sent})


def _saved_percent(found: ProcessingRequest) -> int | None:
    """How much smaller the outputs are than what was downloaded, in percent; None before
    the first image has succeeded."""
    if not found.input_bytes:
        return None
    return round(100 * (1 - found.output_bytes / found.input_bytes))


def _all_failed(found: ProcessingRequest) -> bool:
    """Whether the request ended with no image compressed (a cancel aside): its full bar
    looked like a success."""
    if found.status == ProcessingRequest.Status.FAILED:
        return True
    ended = found.is_finished and found.status != ProcessingRequest.Status.CANCELLED
    return ended and bool(found.total_images) and not found.succeeded_images


def _percent_done(found: ProcessingRequest) -> int:
    """The bar's share: the images ended, all of them once finished; of a cancelled
    request, those processed (a full bar would read as all done)."""
    if not found.total_images:
        return 100 if found.is_finished else 0
    if found.status == ProcessingRequest.Status.CANCELLED:
        ended = found.succeeded_images + found.failed_images
    elif found.is_finished:
        return 100
    else:
        ended = found.total_images - found.pending_images
    return ended * 100 // found.total_images
