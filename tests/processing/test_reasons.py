"""One list of reason codes (ReasonCode): whatever net or imaging can raise is in it, and
every place a user or an operator reads a reason knows each code."""

import json
import re

import pytest
from django.test import Client
from prometheus_client import generate_latest

from imaging.errors import ImageReason
from net import NetReason
from processing import page_words
from processing.metrics import metrics_registry
from processing.models import ProductImage, ReasonCode, is_reason_code
from tests.harness.service import ROOT

README_TABLE = re.compile(r"### Reasons an image fails\n(.*?)\n\n", re.DOTALL)


def readme_reasons() -> set[str]:
    found = README_TABLE.search((ROOT / "README.md").read_text())
    assert found, "README.md has no 'Reasons an image fails' table"
    first_cells = [line.split("|")[1] for line in found.group(1).splitlines()[2:]]
    # Examples in brackets ("(e.g. `http_404`)") are not codes of their own.
    cells = [re.sub(r"\(.*?\)", "", cell) for cell in first_cells]
    return {code for cell in cells for code in re.findall(r"`([^`]+)`", cell)}


def test_every_reason_net_and_imaging_raise_is_a_reason_code() -> None:
    assert {*NetReason, *ImageReason} <= set(ReasonCode)


def test_the_readme_table_lists_every_reason_code_and_no_other() -> None:
    assert readme_reasons() == {*ReasonCode.values, "http_<status>"}


def test_the_page_has_advice_for_every_reason_code() -> None:
    assert set(page_words.REASON_ADVICE) == set(ReasonCode)
    for code in ReasonCode:
        advice = page_words.image_advice(ProductImage(error_code=code))
        assert advice == page_words.REASON_ADVICE[code]
    assert "answered 404" in page_words.image_advice(ProductImage(error_code="http_404"))


@pytest.mark.django_db
def test_the_api_schema_names_every_reason_code(client: Client) -> None:
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)
    described = json.dumps(schema["components"]["schemas"])
    for code in ReasonCode:
        assert code.value in described, code


@pytest.mark.django_db
def test_the_metrics_show_every_reason_code_from_the_start() -> None:
    exposed = generate_latest(metrics_registry()).decode()
    for code in ReasonCode:
        assert f'imgsvc_images_processed_total{{outcome="failed",reason="{code.value}"}}' in exposed


@pytest.mark.parametrize(
    ("code", "known"),
    [
        ("timeout", True),
        ("http_404", True),
        ("http_503", True),
        ("http_42", False),
        ("oops", False),
    ],
)
def test_a_reason_code_is_a_listed_one_or_an_http_status(code: str, known: bool) -> None:
    assert is_reason_code(code) is known
