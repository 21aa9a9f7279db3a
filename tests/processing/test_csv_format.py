"""The CSV parser and writer on their own: no database, no HTTP."""

import codecs
import io

import pytest

from processing.csv_format import (
    CsvInvalid,
    CsvLimits,
    CsvProblem,
    OutputRow,
    ParsedProduct,
    parse_products,
    write_output_csv,
)


def test_a_quoted_cell_may_span_lines_and_rows_are_numbered_as_records() -> None:
    data = (
        b"S. No.,Product Name,Input Image Urls\r\n"
        b'1,"Two-line\nname","http://a.example/1.jpg,\nhttp://a.example/2.jpg"\r\n'
        b"2,Hat,http://a.example/3.jpg\r\n"
    )
    assert parse_products(data, CsvLimits()) == [
        ParsedProduct(2, 1, "Two-line\nname", ("http://a.example/1.jpg", "http://a.example/2.jpg")),
        ParsedProduct(3, 2, "Hat", ("http://a.example/3.jpg",)),
    ]


def test_a_header_repeating_a_required_column_is_refused() -> None:
    data = b"S. No.,Product Name,Input Image Urls,input image urls\n1,Hat,http://a.example/3.jpg\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert [problem.message for problem in raised.value.problems] == [
        "The header has 'Input Image Urls' more than once."
    ]


def test_a_url_longer_than_2048_characters_is_refused() -> None:
    url = "http://a.example/" + "x" * 2100
    with pytest.raises(CsvInvalid) as raised:
        parse_products(f"S. No.,Product Name,Input Image Urls\n1,Hat,{url}\n".encode(), CsvLimits())
    assert raised.value.problems[0].message.endswith("is longer than 2048 characters.")


def test_a_nul_byte_is_refused_with_its_row() -> None:
    with pytest.raises(CsvInvalid) as raised:
        parse_products(
            b"S. No.,Product Name,Input Image Urls\n1,H\x00at,http://a/1.jpg\n", CsvLimits()
        )
    assert raised.value.problems == [CsvProblem(2, None, "The file has a NUL byte (byte 41).")]


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_output_cells_that_a_spreadsheet_would_run_are_neutralised(prefix: str) -> None:
    out = io.StringIO()
    write_output_csv(
        [
            OutputRow(
                1, f"{prefix}SUM(A1)", ["http://a/1.jpg", "http://a/2.jpg"], ["http://o/1.jpg", ""]
            )
        ],
        out,
    )
    lines = out.getvalue().split("\r\n")
    assert lines[0] == "S. No.,Product Name,Input Image Urls,Output Image Urls"
    assert lines[1].startswith(f"1,'{prefix}SUM(A1)") or lines[1].startswith(
        f"1,\"'{prefix}SUM(A1)"
    )
    assert lines[1].endswith('"http://a/1.jpg,http://a/2.jpg","http://o/1.jpg,"')


def test_a_serial_number_too_large_for_the_database_is_refused() -> None:
    data = b"S. No.,Product Name,Input Image Urls\n99999999999999999999,Hat,http://a/1.jpg\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert raised.value.problems == [
        CsvProblem(2, "S. No.", "S. No. must be at most 9223372036854775807.")
    ]


ROWS = [
    ["S. No.", "Product Name", "Input Image Urls"],
    ["1", "Café crème", "https://shop.example/a.jpg,https://shop.example/b.jpg"],
    ["2", "Über-Tasse", "https://shop.example/c.jpg"],
]


def as_text(delimiter: str) -> str:
    return "\r\n".join(
        delimiter.join(f'"{cell}"' if "," in cell else cell for cell in row) for row in ROWS
    )


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (as_text(",").encode("utf-16"), "UTF-16 with a byte order mark"),
        (codecs.BOM_UTF16_BE + as_text(",").encode("utf-16-be"), "UTF-16, big-endian"),
        (as_text("\t").encode("utf-16"), "Excel's Unicode Text: UTF-16, tabs between cells"),
        (as_text(",").replace("\r\n", "\r").encode(), "CR alone ends lines: Excel for Mac"),
        (codecs.BOM_UTF8 + as_text(",").encode(), "UTF-8 with a byte order mark"),
    ],
)
def test_what_spreadsheets_write_is_read_alike(data: bytes, what: str) -> None:
    products = parse_products(data, CsvLimits())
    assert [(p.serial_number, p.product_name, p.image_urls) for p in products] == [
        (1, "Café crème", ("https://shop.example/a.jpg", "https://shop.example/b.jpg")),
        (2, "Über-Tasse", ("https://shop.example/c.jpg",)),
    ], what


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            as_text(",").encode("cp1252"),
            "The file is not UTF-8 text (byte 44): it looks like Windows-1252 or Latin-1, "
            'what Excel\'s "CSV (Comma delimited)" writes. Save it as UTF-8 (Excel: "CSV '
            'UTF-8"), or UTF-16 with a byte order mark.',
        ),
        (
            as_text(",").encode("utf-16-le"),
            "The file looks like UTF-16 text without a byte order mark. Save it as UTF-8 "
            '(Excel: "CSV UTF-8"), or UTF-16 with a byte order mark.',
        ),
        (
            as_text(",").encode("utf-32"),
            'The file is UTF-32 text. Save it as UTF-8 (Excel: "CSV UTF-8"), or UTF-16 with a '
            "byte order mark.",
        ),
    ],
)
def test_other_encodings_are_refused_naming_what_they_look_like(data: bytes, message: str) -> None:
    with pytest.raises(CsvInvalid) as refused:
        parse_products(data, CsvLimits())
    assert [problem.message for problem in refused.value.problems] == [message]
