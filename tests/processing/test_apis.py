"""The HTTP API in process (DRF's test client): validation, error shapes, what is stored.

Processing itself is covered end to end in test_end_to_end.py; here the tasks are never
queued because the test's transaction never commits.
"""

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from processing.models import ProcessingRequest, Product, ProductImage, WebhookDelivery
from tests.support import invalid_input

pytestmark = pytest.mark.django_db

HEADER = "S. No.,Product Name,Input Image Urls\n"
GOOD_ROW = "1,Shoe,https://shop.example/a.jpg\n"
SETTINGS = "webhook_url, quality, quality_mode, target, output_format, metadata, score"


def upload(api: APIClient, content: bytes | str | None, **fields: Any) -> Any:
    data = dict(fields)
    if content is not None:
        raw = content.encode() if isinstance(content, str) else content
        data["file"] = SimpleUploadedFile("products.csv", raw, content_type="text/csv")
    return api.post("/api/upload/", data, format="multipart")


def assert_nothing_stored() -> None:
    assert ProcessingRequest.objects.count() == 0
    assert Product.objects.count() == 0
    assert ProductImage.objects.count() == 0


def test_upload_without_a_file_is_refused(api: APIClient) -> None:
    response = upload(api, None)
    assert response.status_code == 400
    assert response.json() == {
        "error": "No file uploaded: send the CSV as the form field 'file'.",
        "code": "no_file",
    }
    assert_nothing_stored()


def test_a_csv_sent_under_another_field_name_is_named(api: APIClient) -> None:
    csv_file = SimpleUploadedFile("products.csv", (HEADER + GOOD_ROW).encode(), "text/csv")
    response = api.post("/api/upload/", {"csv": csv_file}, format="multipart")
    assert response.status_code == 400
    assert response.json()["details"] == [{"field": "csv", "message": "A file under another name."}]
    assert_nothing_stored()


def test_a_csv_sent_as_a_text_field_is_told_so(api: APIClient) -> None:
    # curl -F file=products.csv (without its @) sends the file's name as text
    response = api.post("/api/upload/", {"file": "products.csv"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["details"] == [
        {
            "field": "file",
            "message": "Sent as a text field, not a file: with curl, -F file=@products.csv.",
        }
    ]
    assert_nothing_stored()


def test_a_csv_sent_as_the_body_itself_is_told_how_to_upload(api: APIClient) -> None:
    # curl --data-binary @products.csv -H "Content-Type: text/csv"
    response = api.post("/api/upload/", HEADER + GOOD_ROW, content_type="text/csv")
    assert response.status_code == 415
    assert response.json() == {
        "error": "Unsupported media type 'text/csv': send the CSV as a multipart/form-data "
        "upload, in the form field 'file' (with curl, -F file=@products.csv).",
        "code": "unsupported_media_type",
    }
    assert_nothing_stored()


def test_a_setting_in_the_urls_query_is_refused_not_ignored(api: APIClient) -> None:
    # curl -F file=@products.csv '.../api/upload/?quality=40' ran at 50
    csv_file = SimpleUploadedFile("products.csv", (HEADER + GOOD_ROW).encode(), "text/csv")
    response = api.post("/api/upload/?quality=40", {"file": csv_file}, format="multipart")
    assert response.status_code == 400
    assert response.json() == invalid_input(
        "quality", "Sent in the URL's query: send it in the body, as a form field."
    )
    assert_nothing_stored()


def test_a_setting_or_a_file_given_twice_is_refused_not_guessed(api: APIClient) -> None:
    # The last value used to win without a word: quality=40&quality=80 ran at 80
    twice = api.post(
        "/api/upload/",
        {
            "file": SimpleUploadedFile("a.csv", (HEADER + GOOD_ROW).encode(), "text/csv"),
            "quality": ["40", "80"],
        },
        format="multipart",
    )
    two_files = api.post(
        "/api/upload/",
        {
            "file": [
                SimpleUploadedFile("a.csv", (HEADER + GOOD_ROW).encode(), "text/csv"),
                SimpleUploadedFile("README.md", b"# not a catalogue\n", "text/markdown"),
            ]
        },
        format="multipart",
    )
    assert twice.status_code == two_files.status_code == 400
    assert twice.json()["details"] == [
        {"field": "quality", "message": "Given 2 times; give it once."}
    ]
    assert two_files.json()["details"] == [
        {"field": "file", "message": "Given 2 times; give it once."}
    ]
    assert_nothing_stored()


def test_a_body_past_djangos_limits_is_refused_in_the_api_shape_not_as_a_500(
    api: APIClient, settings: Any
) -> None:
    source = upload(api, HEADER + GOOD_ROW).json()["request_id"]
    rerun = f"/api/requests/{source}/rerun/"
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 50

    big = api.post(rerun, {"quality": 30, "x": "a" * 2000}, format="json")
    many = api.post(
        rerun,
        "&".join(f"f{n}=1" for n in range(60)),
        content_type="application/x-www-form-urlencoded",
    )

    assert big.status_code == 413
    assert big.json() == {
        "error": "The request's fields are larger than the limit of 1,000 bytes.",
        "code": "body_too_large",
    }
    assert many.status_code == 400
    assert many.json() == {"error": "The request has more than 50 fields.", "code": "invalid_input"}
    assert ProcessingRequest.objects.count() == 1  # the source alone


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(
            b"", {"row": None, "column": None, "message": "The file is empty."}, id="empty"
        ),
        pytest.param(
            HEADER.encode() + b"1,Caf\xe9,https://shop.example/a.jpg\n",
            {
                "row": 2,
                "column": None,
                "message": "The file is not UTF-8 text (byte 43): it looks like Windows-1252 "
                'or Latin-1, what Excel\'s "CSV (Comma delimited)" writes. Save it as UTF-8 '
                '(Excel: "CSV UTF-8"), or UTF-16 with a byte order mark.',
            },
            id="not-utf8",
        ),
        pytest.param(
            HEADER + '1,"Shoe"x,https://shop.example/a.jpg\n',
            {
                "row": 2,
                "column": "Product Name",
                "message": "A cell opens with a double quote and has more after its closing one "
                '("Hat" large): a double quote inside a cell must be doubled, and the whole cell '
                'quoted ("""Hat"" large").',
            },
            id="bad-quoting",
        ),
        pytest.param(
            "S. No.,Product Name\n1,Shoe\n",
            {
                "row": 1,
                "column": "Input Image Urls",
                "message": "The header has no 'Input Image Urls' column.",
            },
            id="missing-column",
        ),
        pytest.param(
            HEADER,
            {"row": None, "column": None, "message": "The file has a header but no products."},
            id="no-products",
        ),
        pytest.param(
            HEADER + "abc,Shoe,https://shop.example/a.jpg\n",
            {
                "row": 2,
                "column": "S. No.",
                "message": "S. No. must be a positive whole number, not 'abc'.",
            },
            id="serial-not-a-number",
        ),
        pytest.param(
            HEADER + "0,Shoe,https://shop.example/a.jpg\n",
            {
                "row": 2,
                "column": "S. No.",
                "message": "S. No. must be a positive whole number, not '0'.",
            },
            id="serial-zero",
        ),
        pytest.param(
            HEADER + "-3,Shoe,https://shop.example/a.jpg\n",
            {
                "row": 2,
                "column": "S. No.",
                "message": "S. No. must be a positive whole number, not '-3'.",
            },
            id="serial-negative",
        ),
        pytest.param(
            # More digits than Python's int() reads (4,300): it was a 500
            HEADER + "1" * 5000 + ",Shoe,https://shop.example/a.jpg\n",
            {
                "row": 2,
                "column": "S. No.",
                "message": "S. No. must be at most 9223372036854775807.",
            },
            id="serial-of-5000-digits",
        ),
        pytest.param(
            HEADER + GOOD_ROW + "1,Hat,https://shop.example/b.jpg\n",
            {"row": 3, "column": "S. No.", "message": "S. No. 1 is already used on row 2."},
            id="serial-repeated",
        ),
        pytest.param(
            HEADER + "1,  ,https://shop.example/a.jpg\n",
            {"row": 2, "column": "Product Name", "message": "Product Name is empty."},
            id="empty-name",
        ),
        pytest.param(
            HEADER + '1,Shoe," , "\n',
            {"row": 2, "column": "Input Image Urls", "message": "The row has no image URL."},
            id="no-url",
        ),
        pytest.param(
            HEADER + "1,Shoe,ftp://shop.example/a.jpg\n",
            {
                "row": 2,
                "column": "Input Image Urls",
                "message": "'ftp://shop.example/a.jpg' is not an absolute http(s) URL.",
            },
            id="url-not-http",
        ),
        pytest.param(
            HEADER + "1,Shoe,/images/a.jpg\n",
            {
                "row": 2,
                "column": "Input Image Urls",
                "message": "'/images/a.jpg' is not an absolute http(s) URL.",
            },
            id="url-relative",
        ),
    ],
)
def test_an_invalid_csv_is_refused_with_its_problem_and_nothing_is_stored(
    api: APIClient, content: bytes | str, problem: dict[str, Any]
) -> None:
    response = upload(api, content)
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid CSV.", "code": "invalid_csv", "details": [problem]}
    assert_nothing_stored()


def test_every_problem_is_reported_at_once(api: APIClient) -> None:
    content = HEADER + "x,,\n" + GOOD_ROW + "2,Hat,mailto:someone\n"
    response = upload(api, content)
    assert response.status_code == 400
    assert response.json()["details"] == [
        {
            "row": 2,
            "column": "S. No.",
            "message": "S. No. must be a positive whole number, not 'x'.",
        },
        {"row": 2, "column": "Product Name", "message": "Product Name is empty."},
        {"row": 2, "column": "Input Image Urls", "message": "The row has no image URL."},
        {
            "row": 4,
            "column": "Input Image Urls",
            "message": "'mailto:someone' is not an absolute http(s) URL.",
        },
    ]
    assert_nothing_stored()


def test_problems_are_capped_at_one_hundred(api: APIClient) -> None:
    content = HEADER + "".join(f"{n},,https://shop.example/{n}.jpg\n" for n in range(1, 301))
    response = upload(api, content)
    details = response.json()["details"]
    assert len(details) == 101
    assert details[99] == {
        "row": 101,
        "column": "Product Name",
        "message": "Product Name is empty.",
    }
    # and a last line says the list stopped there
    assert details[100]["row"] is None
    assert details[100]["message"].startswith("Only the first 100 problems are listed")
    assert_nothing_stored()


def test_more_rows_than_configured_are_refused(api: APIClient, settings: Any) -> None:
    settings.CSV_MAX_ROWS = 2
    content = HEADER + "".join(f"{n},P{n},https://shop.example/{n}.jpg\n" for n in range(1, 4))
    response = upload(api, content)
    assert response.status_code == 400
    assert response.json()["details"] == [
        {"row": 4, "column": None, "message": "The file has more than 2 products; split it."}
    ]
    assert_nothing_stored()


def test_more_urls_per_row_than_configured_are_refused(api: APIClient, settings: Any) -> None:
    settings.CSV_MAX_URLS_PER_ROW = 2
    urls = ",".join(f"https://shop.example/{n}.jpg" for n in range(3))
    response = upload(api, HEADER + f'1,Shoe,"{urls}"\n')
    assert response.status_code == 400
    assert response.json()["details"] == [
        {
            "row": 2,
            "column": "Input Image Urls",
            "message": "The row has 3 image URLs; at most 2 are allowed.",
        }
    ]
    assert_nothing_stored()


def test_a_file_larger_than_configured_is_refused_with_413(api: APIClient, settings: Any) -> None:
    settings.CSV_MAX_BYTES = 1000
    content = HEADER + "".join(f"{n},P{n},https://shop.example/{n}.jpg\n" for n in range(1, 100))
    response = upload(api, content)
    assert response.status_code == 413
    assert response.json() == {
        "error": "The file is larger than the limit of 1,000 bytes.",
        "code": "file_too_large",
    }
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        (
            {"webhook_url": "not a url"},
            {"field": "webhook_url", "message": "'not a url' is not an absolute http(s) URL."},
        ),
        (
            {"webhook_url": "https://user:secret@hooks.example/done"},
            {"field": "webhook_url", "message": "URLs with a user name or password are refused."},
        ),
        *[
            (
                {"webhook_url": f"http://{host}/hook"},
                {"field": "webhook_url", "message": "The address is not allowed."},
            )
            for host in (
                "10.0.0.7",
                "127.0.0.1",
                "[::1]",
                "169.254.169.254",
                "2130706433",
                "0x7f.1",
                # a trailing dot, as a fully qualified name ends: accepted, then each
                # attempt failed as dns_error for the whole schedule
                "10.0.0.7.",
                "2130706433.",
            )
        ],
        (
            {"webhook_url": "https://hooks.example:8443/done"},
            {
                "field": "webhook_url",
                "message": "Port 8443 is not allowed (allowed: 80, 443 and those configured).",
            },
        ),
        (
            {"quality": "0"},
            {"field": "quality", "message": "Ensure this value is greater than or equal to 1."},
        ),
        (
            {"quality": "96"},
            {"field": "quality", "message": "Ensure this value is less than or equal to 95."},
        ),
        (
            {"quality_mode": "half"},
            {
                "field": "quality_mode",
                "message": '"half" is not one of fixed, relative, perceptual.',
            },
        ),
        (
            {"output_format": "gif"},
            {"field": "output_format", "message": '"gif" is not one of same, jpeg, webp, avif.'},
        ),
        (
            {"metadata": "all"},
            {"field": "metadata", "message": '"all" is not one of strip, copyright.'},
        ),
        (
            {"target": "best"},
            {"field": "target", "message": '"best" is not one of low, medium, high.'},
        ),
        (
            {"metadata": "s" * 1_500_000},  # was quoted whole: a 1.5 MB answer
            {"field": "metadata", "message": f'"{"s" * 40}…" is not one of strip, copyright.'},
        ),
        (
            {"quality_mode": "fixed", "target": "high"},
            {
                "field": "target",
                "message": "A target applies to quality_mode=perceptual, not fixed.",
            },
        ),
        (
            {"qualty": "30"},  # misspelt: ignored, the whole request would run at 50
            {"field": "qualty", "message": f"Unknown field. The settings are {SETTINGS}."},
        ),
    ],
)
def test_invalid_form_fields_are_refused(
    api: APIClient, fields: dict[str, str], detail: dict[str, str]
) -> None:
    response = upload(api, HEADER + GOOD_ROW, **fields)
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid input.",
        "code": "invalid_input",
        "details": [detail],
    }
    assert_nothing_stored()


def test_a_choice_is_taken_whatever_its_case(api: APIClient) -> None:
    response = upload(
        api, HEADER + GOOD_ROW, quality_mode="Perceptual", target="HIGH", output_format="JPEG"
    )
    assert response.status_code == 202, response.json()
    stored = ProcessingRequest.objects.get()
    assert (stored.quality_mode, stored.output_format) == ("perceptual", "jpeg")


def test_a_valid_csv_is_stored_as_written_with_lenient_header_and_cells(api: APIClient) -> None:
    # Given a CSV with a BOM, a header in other case and spacing, an extra column,
    # spaces around URLs, empty URL items and a blank line
    content = (
        "\ufeff s. no. ,PRODUCT NAME,Notes, input image urls \n"
        '7,Shoe,x," https://shop.example/a.jpg ,, https://shop.example/b.jpg,"\n'
        "\n"
        "3,Hat,y,https://shop.example/c.png\n"
    ).encode()

    # When it is uploaded
    response = upload(api, content, webhook_url="https://hooks.example/done", quality="40")

    # Then the request, its products and images are stored in input order, pending
    assert response.status_code == 202
    body = response.json()
    request = ProcessingRequest.objects.get(pk=body["request_id"])
    assert body["status_url"] == f"http://testserver/api/status/{request.pk}/"
    assert request.status == "pending"
    assert request.webhook_url == "https://hooks.example/done"
    assert request.quality == 40
    assert request.quality_mode == "fixed"
    assert request.output_format == "same"
    assert request.total_images == 3
    products = list(request.products.order_by("position"))
    assert [(p.serial_number, p.product_name, p.input_image_urls) for p in products] == [
        (7, "Shoe", "https://shop.example/a.jpg,https://shop.example/b.jpg"),
        (3, "Hat", "https://shop.example/c.png"),
    ]
    assert [
        (image.product.serial_number, image.position, image.input_url, image.status)
        for image in ProductImage.objects.order_by("product__position", "position")
    ] == [
        (7, 0, "https://shop.example/a.jpg", "pending"),
        (7, 1, "https://shop.example/b.jpg", "pending"),
        (3, 0, "https://shop.example/c.png", "pending"),
    ]

    # And status reports it pending, with no output CSV yet, which answers 409
    status = api.get(f"/api/status/{request.pk}/").json()
    assert status["status"] == "pending"
    assert status["progress"] == {
        "total": 3,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
        "pending": 3,
    }
    assert status["output_csv_url"] is None
    response = api.get(f"/api/requests/{request.pk}/output.csv")
    assert response.status_code == 409
    assert response.json()["code"] == "not_finished"


def test_an_upload_is_named_by_its_csv_and_a_rerun_by_the_request_it_re_runs(
    api: APIClient,
) -> None:
    """Past requests could not be told apart: the CSV's name was not kept at all."""
    # Given an upload of "spring shoes.csv", and a re-run of it
    content = (HEADER + GOOD_ROW).encode()
    file = SimpleUploadedFile("spring shoes.csv", content, content_type="text/csv")
    upload_id = api.post("/api/upload/", {"file": file}, format="multipart").json()["request_id"]
    rerun = api.post(f"/api/requests/{upload_id}/rerun/", {"quality": 30}, format="json")
    rerun_id = rerun.json()["request_id"]

    # Then the status, the request and its row in the list name the file, and the re-run
    # has no file of its own but names its source
    for request_id, named in ((upload_id, ("spring shoes.csv", None)), (rerun_id, ("", upload_id))):
        for url in (f"/api/status/{request_id}/", f"/api/requests/{request_id}/"):
            body = api.get(url).json()
            assert (body["file_name"], body["source_request_id"]) == named, url
    listed = api.get("/api/requests/").json()["results"]
    assert [(row["request_id"], row["file_name"]) for row in listed] == [
        (rerun_id, ""),
        (upload_id, "spring shoes.csv"),
    ]


@pytest.mark.parametrize(
    ("public_base_url", "status_base"),
    [("", "http://testserver"), ("https://img.example", "https://img.example")],
)
def test_what_makes_a_request_says_where_its_status_is_in_location(
    api: APIClient, settings: Any, public_base_url: str, status_base: str
) -> None:
    """A 202 that made something named no Location: a client that follows it (as HTTP
    libraries offer to) had to read the body."""
    # Given the service at its public address, if it has one
    settings.PUBLIC_BASE_URL = public_base_url
    headers = {"Idempotency-Key": "upload-1"}

    # When a CSV is uploaded, sent again with its key, and re-run
    file = SimpleUploadedFile("products.csv", (HEADER + GOOD_ROW).encode(), "text/csv")
    first = api.post("/api/upload/", {"file": file}, format="multipart", headers=headers)
    file.seek(0)
    again = api.post("/api/upload/", {"file": file}, format="multipart", headers=headers)
    upload_id = first.json()["request_id"]
    rerun = api.post(f"/api/requests/{upload_id}/rerun/", {"quality": 30}, format="json")

    # Then each names the status of the request it made (or had made), as its body does
    rerun_id = rerun.json()["request_id"]
    assert [(answer.status_code, answer["Location"]) for answer in (first, again, rerun)] == [
        (202, f"{status_base}/api/status/{upload_id}/"),
        (202, f"{status_base}/api/status/{upload_id}/"),
        (202, f"{status_base}/api/status/{rerun_id}/"),
    ]
    assert again["Idempotent-Replayed"] == "true"
    assert all(answer["Location"] == answer.json()["status_url"] for answer in (first, rerun))


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("C:\\exports\\shoes.csv", "shoes.csv"),  # a client that sent its folders
        ("x" * 300 + ".csv", "x" * 195 + "….csv"),  # cut to 200, its extension kept
        ("  shoes.csv ", "shoes.csv"),
    ],
)
def test_a_csvs_name_is_kept_without_folders_and_cut_to_a_readable_length(
    api: APIClient, sent: str, kept: str
) -> None:
    file = SimpleUploadedFile(sent, (HEADER + GOOD_ROW).encode(), content_type="text/csv")
    response = api.post("/api/upload/", {"file": file}, format="multipart")

    assert response.status_code == 202, response.json()
    assert api.get(f"/api/status/{response.json()['request_id']}/").json()["file_name"] == kept


def test_a_status_poll_reads_the_database_once_and_shows_the_webhook_once_there_is_one(
    api: APIClient, django_assert_num_queries: Any
) -> None:
    # Given a request being processed, polled once already (its API key now checked)
    request_id = upload(api, HEADER + GOOD_ROW).json()["request_id"]
    status_url = f"/api/status/{request_id}/"
    assert api.get(status_url).json()["webhook"] is None

    # When it is polled again, one query answers: the request, and that it has no delivery
    with django_assert_num_queries(1):
        assert api.get(status_url).json()["webhook"] is None

    # And once it has a webhook delivery, the status shows it
    delivery = WebhookDelivery.objects.create(
        request_id=request_id, url="https://shop.example/hook", payload={}
    )
    webhook = api.get(status_url).json()["webhook"]
    assert (webhook["event_id"], webhook["state"], webhook["attempts"]) == (
        delivery.event_id,
        "pending",
        0,
    )


def test_an_upload_that_does_not_say_whether_to_score_is_scored_as_the_service_is_set(
    api: APIClient, settings: Any
) -> None:
    # Given a service that scores every output
    settings.IMAGE_SCORE_ALL_MODES = True

    # When uploads come as forms, as every client sends them: one silent, one declining
    silent = upload(api, HEADER + GOOD_ROW).json()["request_id"]
    declined = upload(api, HEADER + GOOD_ROW, score="false").json()["request_id"]

    # Then the silent one is scored and the one that said false is not
    assert api.get(f"/api/status/{silent}/").json()["settings"]["score"] is True
    assert api.get(f"/api/status/{declined}/").json()["settings"]["score"] is False

    # And without the setting, a silent upload is not scored
    settings.IMAGE_SCORE_ALL_MODES = False
    default = upload(api, HEADER + GOOD_ROW).json()["request_id"]
    assert api.get(f"/api/status/{default}/").json()["settings"]["score"] is False


def test_a_rerun_sent_as_a_form_keeps_the_sources_scores_unless_it_says(api: APIClient) -> None:
    # Given a request that asked for scores
    source = upload(api, HEADER + GOOD_ROW, score="true").json()["request_id"]

    # When it is re-run from a form that says nothing of scores, and from one that declines
    kept = api.post(f"/api/requests/{source}/rerun/", {"quality": "40"}, format="multipart")
    declined = api.post(
        f"/api/requests/{source}/rerun/", {"quality": "40", "score": "false"}, format="multipart"
    )

    # Then the first is scored as its source was, the second not
    assert kept.status_code == declined.status_code == 202, (kept.json(), declined.json())
    kept_settings = api.get(f"/api/status/{kept.json()['request_id']}/").json()["settings"]
    assert (kept_settings["quality"], kept_settings["score"]) == (40, True)
    declined_id = declined.json()["request_id"]
    assert api.get(f"/api/status/{declined_id}/").json()["settings"]["score"] is False


def test_a_rerun_naming_a_setting_it_does_not_know_is_refused_with_every_other_problem(
    api: APIClient,
) -> None:
    source = upload(api, HEADER + GOOD_ROW).json()["request_id"]

    response = api.post(
        f"/api/requests/{source}/rerun/", {"qualty": 30, "format": "webp", "quality": 0}
    )

    assert response.status_code == 400
    assert response.json()["details"] == [
        {"field": "quality", "message": "Ensure this value is greater than or equal to 1."},
        {"field": "format", "message": f"Unknown field. The settings are {SETTINGS}."},
        {"field": "qualty", "message": f"Unknown field. The settings are {SETTINGS}."},
    ]
    assert ProcessingRequest.objects.count() == 1  # the source alone


def test_a_rerun_sent_chunked_is_refused_not_run_at_the_sources_settings(api: APIClient) -> None:
    """Django reads a body by its Content-Length: a chunked one (a streaming client's)
    was read as empty, and the re-run ran at the source's settings, answered 202."""
    source = upload(api, HEADER + GOOD_ROW).json()["request_id"]
    response = api.post(
        f"/api/requests/{source}/rerun/",
        {"quality": 20},
        format="json",
        CONTENT_LENGTH="",  # as the web server hands a chunked body on
        HTTP_TRANSFER_ENCODING="chunked",
    )
    assert response.status_code == 411
    assert response.json()["code"] == "length_required"
    assert ProcessingRequest.objects.count() == 1


def test_products_are_paginated_in_input_order(api: APIClient) -> None:
    content = HEADER + "".join(f"{n},P{n},https://shop.example/{n}.jpg\n" for n in range(30, 0, -1))
    request_id = upload(api, content).json()["request_id"]

    first = api.get(f"/api/requests/{request_id}/products/?page_size=20").json()
    second = api.get(first["next"]).json()

    assert first["count"] == 30
    assert first["previous"] is None
    assert [p["serial_number"] for p in first["results"]] == list(range(30, 10, -1))
    assert [p["serial_number"] for p in second["results"]] == list(range(10, 0, -1))
    assert second["next"] is None
    assert first["results"][0]["images"] == [
        {
            "input_url": "https://shop.example/30.jpg",
            "output_url": None,
            "status": "pending",
            "error": None,
            "error_code": "",
            "input_bytes": None,
            "output_bytes": None,
            "width": None,
            "height": None,
            "output_format": "",
            "source_quality": None,
            "quality": None,
            "kept_original": False,
            "flattened": False,
            "score": None,
            "tries": None,
            "target_met": None,
            "reused": False,
            "note": "",
        }
    ]


def test_a_page_past_the_end_says_so_unlike_a_request_that_is_not_there(api: APIClient) -> None:
    request_id = upload(api, HEADER + GOOD_ROW).json()["request_id"]

    past = api.get(f"/api/requests/{request_id}/products/?page=99")
    missing = api.get("/api/requests/00000000-0000-4000-8000-000000000000/products/")

    assert past.status_code == missing.status_code == 404
    assert past.json() == {
        "error": "Page 99 of the products: That page contains no results.",
        "code": "not_found",
    }
    assert missing.json() == {"error": "Request not found.", "code": "not_found"}


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("page=0", "page", "Not a page number from 1, nor last: '0'."),
        ("page=abc", "page", "Not a page number from 1, nor last: 'abc'."),
        # a shell variable left unset: it answered the first page, while an empty
        # page_size was refused
        ("page=", "page", "Not a page number from 1, nor last: ''."),
        ("page_size=", "page_size", "Not a page size from 1 to 500: ''."),
        ("page_size=0", "page_size", "Not a page size from 1 to 500: '0'."),
        ("page_size=abc", "page_size", "Not a page size from 1 to 500: 'abc'."),
        ("page_size=100000", "page_size", "Not a page size from 1 to 500: '100000'."),
        (
            "status=failed,broken",
            "status",
            "Not a status: 'broken'. One of: pending, processing, succeeded, failed, cancelled.",
        ),
        (
            "status=",  # a shell variable left unset: it listed every image
            "status",
            "Empty. One or more of: pending, processing, succeeded, failed, cancelled; "
            "or no status at all.",
        ),
        (
            "satus=failed",
            "satus",
            "Not a parameter of this list, which takes page, page_size, status.",
        ),
    ],
)
def test_a_page_or_page_size_that_is_not_one_is_a_400_naming_it(
    api: APIClient, query: str, field: str, message: str
) -> None:
    """Was 404 not_found (a client takes it for a request that is not there), or, for a
    page size or a misspelt filter, ignored without a word."""
    request_id = upload(api, HEADER + GOOD_ROW).json()["request_id"]
    response = api.get(f"/api/requests/{request_id}/products/?{query}")
    assert response.status_code == 400
    assert response.json() == invalid_input(field, message)
    assert api.get(f"/api/requests/{request_id}/products/?page=last").status_code == 200


def test_the_webhook_of_a_request_still_running_is_not_finished_not_missing(
    api: APIClient,
) -> None:
    request_id = upload(
        api, HEADER + GOOD_ROW, webhook_url="https://hooks.shop.example/done"
    ).json()["request_id"]
    response = api.get(f"/api/requests/{request_id}/webhook/")
    assert response.status_code == 409
    assert response.json()["code"] == "not_finished"


def test_an_upload_to_the_path_without_its_slash_is_sent_on_as_an_upload(api: APIClient) -> None:
    # A 301 would make it a GET, answered 405 "Method GET not allowed": a 308 keeps the POST
    file = SimpleUploadedFile("products.csv", (HEADER + GOOD_ROW).encode(), "text/csv")
    moved = api.post("/api/upload?x=1", {"file": file}, format="multipart")
    assert (moved.status_code, moved["Location"]) == (308, "/api/upload/?x=1")
    assert_nothing_stored()  # until the client sends it again, where it was sent on


def test_unknown_paths_answer_json_404(api: APIClient) -> None:
    response = api.get("/api/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found.", "code": "not_found"}


def test_a_host_the_service_does_not_answer_gets_the_apis_json_not_a_page(api: APIClient) -> None:
    """Behind a proxy whose Host is not allowed, every call answered an HTML page."""
    response = api.get(
        "/api/status/00000000-0000-4000-8000-000000000000/", HTTP_HOST="evil.example"
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "Bad request: the request could not be accepted as sent (its Host header is "
        "not one this service answers).",
        "code": "invalid_input",
    }


@pytest.mark.parametrize("route", ["rerun", "webhook-test"])
def test_a_json_body_nested_past_the_parsers_depth_is_a_parse_error_not_a_500(
    api: APIClient, route: str
) -> None:
    source = upload(api, HEADER + GOOD_ROW).json()["request_id"]
    path = f"/api/requests/{source}/rerun/" if route == "rerun" else "/api/webhook-test/"
    refused = api.post(path, "[" * 100_000, content_type="application/json")
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "JSON parse error - nested too deeply.",
        "code": "parse_error",
    }


def test_a_setting_given_twice_in_a_json_body_is_refused_as_in_a_form(api: APIClient) -> None:
    source = upload(api, HEADER + GOOD_ROW).json()["request_id"]
    twice = api.post(
        f"/api/requests/{source}/rerun/",
        '{"quality": 20, "quality": 30, "target": "low"}',
        content_type="application/json",
    )
    assert twice.status_code == 400
    assert twice.json()["details"] == [
        {"field": "quality", "message": "Given 2 times; give it once."}
    ]
    assert ProcessingRequest.objects.filter(source_request=source).count() == 0


@pytest.mark.parametrize("path", ["/api/requests/?format=xml", "/api/status/{id}/?format=csv"])
def test_a_format_the_route_does_not_offer_is_not_acceptable_not_not_found(
    api: APIClient, path: str
) -> None:
    request_id = upload(api, HEADER + GOOD_ROW).json()["request_id"]
    refused = api.get(path.format(id=request_id))
    assert refused.status_code == 406
    assert refused.json()["code"] == "not_acceptable"
    assert "this route answers json" in refused.json()["error"]
