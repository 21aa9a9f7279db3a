"""Property-based tests: whatever bytes arrive, the parser answers with products or with
a validation error, and the upload API with 202 or 400, never an exception or a 500."""

import csv
import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from processing.csv_format import CsvInvalid, CsvLimits, CsvProblem, parse_products

HEADER_NAMES = ["S. No.", "Product Name", "Input Image Urls", " s. no. ", "Notes", ""]
CELLS = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-5, max_value=10**20).map(str),
    st.sampled_from(
        [
            "https://shop.example/a.jpg",
            " http://shop.example/b.png , ,https://x.example/c",
            "ftp://x/y",
            "http://[::1",
            "http://host:99999/a",
            "=HYPERLINK(1)",
            "",
        ]
    ),
)


def as_csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8", errors="surrogatepass")


csv_like = st.builds(
    lambda header, rows: as_csv([header, *rows]),
    st.lists(st.sampled_from(HEADER_NAMES), min_size=0, max_size=5),
    st.lists(st.lists(CELLS, max_size=5), max_size=8),
)


def check(data: bytes) -> None:
    problems: list[CsvProblem] = []
    try:
        products = parse_products(data, CsvLimits(max_rows=5, max_urls_per_row=3))
    except CsvInvalid as invalid:
        problems, products = invalid.problems, []
    if problems:
        assert len(problems) <= 100
        assert all(problem.message for problem in problems)
        assert all(problem.row is None or problem.row >= 1 for problem in problems)
        return
    assert 1 <= len(products) <= 5
    assert len({product.serial_number for product in products}) == len(products)
    for product in products:
        assert product.serial_number > 0
        assert product.product_name
        assert 1 <= len(product.image_urls) <= 3


# The same examples on every run, and no limit on one's time: a draw or a pause of a loaded
# machine is not a verdict on the code.
REPEATABLE = hypothesis_settings(derandomize=True, deadline=None)


@REPEATABLE
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_parse_or_are_refused(data: bytes) -> None:
    check(data)


@REPEATABLE
@given(csv_like)
def test_csv_shaped_input_parses_or_is_refused(data: bytes) -> None:
    check(data)


@pytest.mark.django_db
@hypothesis_settings(
    REPEATABLE, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.one_of(st.binary(max_size=500), csv_like))
def test_the_upload_api_never_answers_500(data: bytes, api: APIClient, settings: Any) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.ACCOUNT_UPLOAD_RATE_LIMIT = ""  # many examples, one account
    response = api.post(
        "/api/upload/",
        {"file": SimpleUploadedFile("p.csv", data, content_type="text/csv")},
        format="multipart",
    )
    assert response.status_code in {202, 400}, response.content
    body = response.json()
    if response.status_code == 400:
        assert body["code"] == "invalid_csv"
        assert body["details"]
