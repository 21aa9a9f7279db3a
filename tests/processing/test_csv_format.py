"""The CSV parser and writer on their own: no database, no HTTP."""

import codecs
import io
import time

import pytest

from processing import csv_format
from processing.csv_format import (
    CsvDialect,
    CsvInvalid,
    CsvLimits,
    CsvProblem,
    OutputRow,
    ParsedProduct,
    parse_products,
    validate_products,
    write_output_csv,
)


def test_a_quoted_cell_may_span_lines_and_rows_are_numbered_as_records() -> None:
    data = (
        b"S. No.,Product Name,Input Image Urls\r\n"
        b'1,"Two-line\nname","http://a.example/1.jpg,\nhttp://a.example/2.jpg"\r\n'
        b"2,Hat,http://a.example/3.jpg\r\n"
    )
    assert parse_products(data, CsvLimits()) == [
        ParsedProduct(
            2, 1, "1", "Two-line\nname", ("http://a.example/1.jpg", "http://a.example/2.jpg")
        ),
        ParsedProduct(3, 2, "2", "Hat", ("http://a.example/3.jpg",)),
    ]


def test_a_header_repeating_a_required_column_is_refused() -> None:
    data = b"S. No.,Product Name,Input Image Urls,input image urls\n1,Hat,http://a.example/3.jpg\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert [problem.message for problem in raised.value.problems] == [
        "The header has 'Input Image Urls' more than once."
    ]


def test_a_header_cell_near_a_required_column_is_named_with_the_name_to_give_it() -> None:
    data = b"S.No,Product Name,Image URLs,Price,URL\n1,Hat,http://a.example/3.jpg\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert raised.value.problems == [
        CsvProblem(
            1,
            "S. No.",
            "The header has no 'S. No.' column. Column 1, 'S.No', is close: name it 'S. No.'.",
        ),
        CsvProblem(
            1,
            "Input Image Urls",
            "The header has no 'Input Image Urls' column. Column 3, 'Image URLs', is close: "
            "name it 'Input Image Urls'.",
        ),
    ]
    # A column far from any, as a spreadsheet's own, is no hint; nor is an output CSV's
    # column, whose URLs are not to be fed back in
    far = b"Serial,Product Name,Output Image Urls\n1,Hat,http://a.example/3.jpg\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(far, CsvLimits())
    assert [problem.message for problem in raised.value.problems] == [
        "The header has no 'S. No.' column.",
        "The header has no 'Input Image Urls' column.",
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
                "1",
                f"{prefix}SUM(A1)",
                ["http://a/1.jpg", "http://a/2.jpg"],
                ["http://o/1.jpg", ""],
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


def test_a_repeated_serial_number_is_told_even_where_its_first_row_has_another_problem() -> None:
    """Told only once the first row was mended, it cost the user a second upload."""
    data = b"S. No.,Product Name,Input Image Urls\n1,A,ftp://a/a.jpg\n1,B,http://a/b.jpg\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert raised.value.problems == [
        CsvProblem(2, "Input Image Urls", "'ftp://a/a.jpg' is not an absolute http(s) URL."),
        CsvProblem(3, "S. No.", "S. No. 1 is already used on row 2."),
    ]


def test_a_serial_number_is_kept_as_written_and_compared_as_a_number() -> None:
    """A shop's "007" came back "7" in its output CSV; 007 and 7 are still one S. No."""
    data = (
        b"S. No.,Product Name,Input Image Urls\n007,Hat,http://a/1.jpg\n 12 ,Cap,http://a/2.jpg\n"
    )
    assert [(p.serial_number, p.serial_text) for p in parse_products(data, CsvLimits())] == [
        (7, "007"),
        (12, "12"),  # its spaces are not the shop's S. No.
    ]

    # A repeat written otherwise is told with how its first row wrote it
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data + b"7,Scarf,http://a/3.jpg\n12,Glove,http://a/4.jpg\n", CsvLimits())
    assert raised.value.problems == [
        CsvProblem(4, "S. No.", "S. No. 7 is already used on row 2 (as '007')."),
        CsvProblem(5, "S. No.", "S. No. 12 is already used on row 3."),
    ]


def test_a_serial_number_longer_than_32_characters_is_refused_even_of_leading_zeros() -> None:
    """No more of a cell than that is stored and shown on every page."""
    fits, padded = "0" * 31 + "7", "0" * 5000 + "7"
    data = f"S. No.,Product Name,Input Image Urls\n{fits},Hat,http://a/1.jpg\n".encode()
    assert [p.serial_text for p in parse_products(data, CsvLimits())] == [fits]
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data + f"{padded},Cap,http://a/2.jpg\n".encode(), CsvLimits())
    assert raised.value.problems == [
        CsvProblem(3, "S. No.", "S. No. is longer than 32 characters, leading zeros counted.")
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


def test_a_row_with_more_cells_than_the_header_is_refused_not_cut_short() -> None:
    """An unquoted list of URLs reads as one URL per cell: taken as it stood, every URL but
    the first would be dropped without a word."""
    data = (
        b"S. No.,Product Name,Input Image Urls\n"
        b"1,Shoe,http://a.example/1.jpg,http://a.example/2.jpg\n"
        b'2,Hat,"http://a.example/3.jpg,http://a.example/4.jpg"\n'
    )
    with pytest.raises(CsvInvalid) as refused:
        parse_products(data, CsvLimits())
    assert refused.value.problems == [
        CsvProblem(
            2,
            None,
            "The row has 4 cells where the header has 3. A cell that holds commas, such as a "
            'list of URLs, must be in double quotes: "url1,url2".',
        )
    ]


def test_empty_cells_past_the_header_are_ignored() -> None:
    """Spreadsheets pad rows with empty cells where some other row was longer."""
    data = b"S. No.,Product Name,Input Image Urls\n1,Shoe,http://a.example/1.jpg,, \n"
    assert parse_products(data, CsvLimits()) == [
        ParsedProduct(2, 1, "1", "Shoe", ("http://a.example/1.jpg",))
    ]


SAVE_IT = 'Save it as UTF-8 (Excel: "CSV UTF-8")'


@pytest.mark.parametrize(
    ("data", "what", "advice"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00", "a ZIP archive, as an Excel", SAVE_IT),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", "an old Excel workbook (.xls)", SAVE_IT),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a PNG image", "Pick the product CSV instead."),
        (b"%PDF-1.7\n", "a PDF document", "Pick the product CSV instead."),
    ],
)
def test_a_workbook_image_or_pdf_is_refused_for_what_it_is(
    data: bytes, what: str, advice: str
) -> None:
    with pytest.raises(CsvInvalid) as refused:
        parse_products(data, CsvLimits())
    [problem] = refused.value.problems
    assert problem.message.startswith(f"The file is {what}")
    assert advice in problem.message


def test_a_file_separated_by_semicolons_is_read_and_its_output_written_alike() -> None:
    # Given what Excel writes where the comma is the decimal mark: semicolons, a URL list
    # needing no quotes, and a byte order mark
    data = (
        codecs.BOM_UTF8
        + b"S. No.;Product Name;Input Image Urls\r\n"
        + b"1;Shoe, red;http://a.example/1.jpg,http://a.example/2.jpg\r\n"
    )
    [product] = parse_products(data, CsvLimits())
    assert (product.product_name, product.image_urls) == (
        "Shoe, red",
        ("http://a.example/1.jpg", "http://a.example/2.jpg"),
    )
    dialect = validate_products(data, CsvLimits()).dialect
    assert dialect == CsvDialect(delimiter=";", bom=True)

    # Then its output CSV has the same separator and mark, for Excel to read it back
    out = io.StringIO()
    row = OutputRow("1", "Shoe, red", list(product.image_urls), ["http://o/1.jpg", ""])
    write_output_csv([row], out, dialect)
    assert out.getvalue() == (
        "\ufeffS. No.;Product Name;Input Image Urls;Output Image Urls\r\n"
        "1;Shoe, red;http://a.example/1.jpg,http://a.example/2.jpg;http://o/1.jpg,\r\n"
    )


@pytest.mark.parametrize(
    ("data", "dialect"),
    [
        (b"S. No.,Product Name,Input Image Urls\n1,a,http://a/1.jpg\n", CsvDialect(",", False)),
        (
            "S. No.\tProduct Name\tInput Image Urls\n1\ta\thttp://a/1.jpg\n".encode("utf-16"),
            CsvDialect(",", True),  # Excel's "Unicode Text": a CSV back, with its mark
        ),
        (b"\n\nS. No.;Product Name;Input Image Urls\n1;a;http://a/1.jpg\n", CsvDialect(";", False)),
        (
            b"S. No.;Product Name;Input Image Urls\r1;a;http://a/1.jpg,http://a/2.jpg\r",
            CsvDialect(";", False),  # Excel for Mac: CR alone, and commas in a later row
        ),
    ],
    ids=["plain", "utf-16 tabs", "semicolons after blank lines", "CR alone"],
)
def test_the_dialect_is_what_the_file_was_written_in(data: bytes, dialect: CsvDialect) -> None:
    assert validate_products(data, CsvLimits()).dialect == dialect


def test_a_cell_too_long_for_the_reader_is_named_in_words() -> None:
    name = "x" * 200_000
    data = f"S. No.,Product Name,Input Image Urls\n1,{name},http://a.example/1.jpg\n".encode()
    with pytest.raises(CsvInvalid) as refused:
        parse_products(data, CsvLimits())
    assert [problem.message for problem in refused.value.problems] == [
        "A cell is longer than 131,072 characters."
    ]


def test_past_the_limit_of_problems_the_list_says_where_it_stopped() -> None:
    # Given 150 rows, each with a URL that is not one
    rows = "".join(f"{n},Hat,ftp://a.example/{n}.jpg\n" for n in range(1, 151))
    with pytest.raises(CsvInvalid) as raised:
        parse_products(f"S. No.,Product Name,Input Image Urls\n{rows}".encode(), CsvLimits())

    # Then the first 100 are listed, rows 2 to 101, and a last line says the list stopped
    problems = raised.value.problems
    assert [problem.row for problem in problems[:100]] == list(range(2, 102))
    assert problems[100] == CsvProblem(
        None,
        None,
        "Only the first 100 problems are listed; reading stopped at row 101, and the rows "
        "after it may have more.",
    )
    assert len(problems) == 101


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://a.example/1.jpg\u200b", "U+200B, at character 23"),
        ("\ufeffhttp://a.example/1.jpg", "U+FEFF, at character 1"),
        ("http://a.example/a\x01.jpg", "U+0001, at character 19"),
    ],
    ids=["zero-width space", "BOM", "control"],
)
def test_an_invisible_character_in_a_url_is_refused_by_its_code_and_place(
    url: str, named: str
) -> None:
    data = f'S. No.,Product Name,Input Image Urls\n1,Hat,"{url}"\n'.encode()
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    [problem] = raised.value.problems
    assert (problem.row, problem.column) == (2, "Input Image Urls")
    assert problem.message.endswith(f"contains an invisible character, {named}.")


def test_white_space_in_a_url_is_told_as_white_space_not_as_an_invisible_character() -> None:
    data = b'S. No.,Product Name,Input Image Urls\n1,Hat,"http://a.example/my\tphoto.jpg"\n'
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert raised.value.problems[0].message.endswith(
        "contains white space, U+0009, at character 20."
    )


def test_a_space_in_a_url_is_told_with_its_place_and_how_to_write_it() -> None:
    data = b"S. No.,Product Name,Input Image Urls\n1,Hat,http://a.example/red shoe.jpg\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert raised.value.problems == [
        CsvProblem(
            2,
            "Input Image Urls",
            "'http://a.example/red shoe.jpg' contains a space, at character 21: write it as %20.",
        )
    ]


def test_a_no_break_space_in_a_url_is_named_by_its_code_and_place() -> None:
    data = "S. No.,Product Name,Input Image Urls\n1,Hat,http://a.example/my\u00a0photo.jpg\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data.encode(), CsvLimits())
    assert raised.value.problems[0].message.endswith(
        "contains white space, U+00A0, at character 20."
    )


@pytest.mark.parametrize("separator", ["; ", ";", " ", "\n", " | ", "|"])
def test_urls_listed_with_another_separator_than_the_comma_are_told_so(separator: str) -> None:
    urls = f"http://a.example/1.jpg{separator}HTTPS://b.example/2.jpg"
    data = f'S. No.,Product Name,Input Image Urls\n1,Hat,"{urls}"\n'.encode()
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    [problem] = raised.value.problems
    assert problem.message == f"'{urls}' holds several URLs: separate them with commas."


def test_a_url_whose_query_holds_another_url_is_one_url() -> None:
    url = "https://cdn.example/fetch?src=https://shop.example/1.jpg"
    data = f"S. No.,Product Name,Input Image Urls\n1,Hat,{url}\n".encode()
    [product] = parse_products(data, CsvLimits())
    assert product.image_urls == (url,)


def test_blank_lines_above_the_header_are_skipped_and_rows_keep_their_numbers() -> None:
    data = b"\n  \nS. No.,Product Name,Input Image Urls\n1,Hat,http://a.example/1.jpg\n2,,x\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    # The header is row 3: the product without a name is row 5
    assert {problem.row for problem in raised.value.problems} == {5}
    assert parse_products(data[:-5], CsvLimits()) == [
        ParsedProduct(4, 1, "1", "Hat", ("http://a.example/1.jpg",))
    ]


@pytest.mark.parametrize(
    ("blank", "delimiter"),
    [(b"\n", b","), (b",,\r\n", b","), (b" , ,\n", b","), (b";;\n", b";"), (b"\t\t\n", b"\t")],
    ids=["empty", "commas CRLF", "spaces", "semicolons", "tabs"],
)
def test_runs_of_blank_rows_are_skipped_and_counted_as_rows(blank: bytes, delimiter: bytes) -> None:
    """As Excel writes a sheet whose formatting ran to its last row: a million of them."""
    header = delimiter.join([b"S. No.", b"Product Name", b"Input Image Urls"]) + b"\n"
    row = delimiter.join([b"1", b"Hat", b"http://a.example/1.jpg"]) + b"\n"
    unnamed = delimiter.join([b"2", b"", b"http://a.example/2.jpg"]) + b"\n"
    data = blank * 3 + header + blank * 1000 + row + blank * 50_000 + unnamed + blank * 7
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    # The header is row 4, the hat row 1005; the product without a name row 51006
    assert [problem.row for problem in raised.value.problems] == [51_006]
    [hat] = parse_products(data.replace(unnamed, b""), CsvLimits())
    assert (hat.row, hat.product_name) == (1005, "Hat")


def test_blank_lines_inside_a_quoted_cell_are_the_cells_own() -> None:
    data = (
        b"S. No.,Product Name,Input Image Urls\n"
        b'1,"Hat\n\n,,\n\nred",http://a.example/1.jpg\n'
        b"\n\n"
        b"2,Shoe,http://a.example/2.jpg\n"
    )
    assert [(p.row, p.product_name) for p in parse_products(data, CsvLimits())] == [
        (2, "Hat\n\n,,\n\nred"),
        (5, "Shoe"),
    ]


def test_a_quote_never_closed_after_blank_rows_is_told_at_its_row() -> None:
    data = b'S. No.,Product Name,Input Image Urls\n1,Hat,http://a.example/1.jpg\n,,\n\n3,"Lamp\n'
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert [problem.row for problem in raised.value.problems] == [5]


def test_a_header_that_cannot_be_read_below_blank_lines_is_told_at_its_row() -> None:
    """The blank lines above the header were counted in its row and once more."""
    with pytest.raises(CsvInvalid) as raised:
        parse_products(b'\n,,\nS. No.,Product Name,"Input Image Urls\n', CsvLimits())
    assert [problem.row for problem in raised.value.problems] == [3]


def test_blank_runs_above_the_header_are_passed_over_after_any_blank_line() -> None:
    """After one blank line the regex does not take (U+0085), the rest of a run
    above the header was read one line at a time: 10 MB of them held a thread 10 s."""
    data = "\u0085\n".encode() + b"\n" * 1000 + b"S. No.,Product Name,Input Image Urls\n"
    lines = csv_format._Lines(data, 0)
    assert csv_format._header_line(lines) == ("S. No.,Product Name,Input Image Urls\n", 1002)
    assert lines.skipped == 1000


@pytest.mark.parametrize(
    ("blank", "above_the_header"),
    [(b'"",""\n', False), ("\u00a0\n".encode(), False), ("\u00a0\n".encode(), True)],
    ids=["quoted empty cells", "no-break spaces", "no-break spaces above the header"],
)
def test_blank_rows_read_one_at_a_time_are_bounded(blank: bytes, above_the_header: bool) -> None:
    """Blank rows the one-step skip does not take are each read by the CSV reader: a
    file of nothing else is refused once past the limit, naming the row it was passed on,
    instead of holding the web thread for seconds. Up to the limit they are skipped."""
    header = b"S. No.,Product Name,Input Image Urls\n"
    row = b"1,Hat,http://a.example/1.jpg\n"
    limit = csv_format.MAX_BLANK_ROWS

    def file(blank_rows: int) -> bytes:
        blanks = blank * blank_rows
        return blanks + header + row if above_the_header else header + blanks + row

    [hat] = parse_products(file(limit), CsvLimits())
    assert hat.row == limit + 2
    with pytest.raises(CsvInvalid) as raised:
        parse_products(file(limit + 1), CsvLimits())
    assert raised.value.problems == [
        CsvProblem(limit + (1 if above_the_header else 2), None, csv_format.TOO_MANY_BLANK_ROWS)
    ]


def test_only_unicode_white_space_is_an_empty_file() -> None:
    with pytest.raises(CsvInvalid) as raised:
        parse_products("\u2028\n\u0085\n".encode(), CsvLimits())
    assert raised.value.problems == [CsvProblem(None, None, "The file is empty.")]


@pytest.mark.parametrize(
    ("opened_on", "header", "column"), [(1, '"S. No.', None), (3, "S. No.", "Product Name")]
)
def test_a_quote_never_closed_is_told_at_the_row_it_opened_not_at_the_files_end(
    opened_on: int, header: str, column: str | None
) -> None:
    rows = [f"{n},Hat,http://a.example/{n}.jpg" for n in range(1, 41)]
    if opened_on == 3:
        rows[1] = '2,"Lamp,http://a.example/2.jpg'  # the quote opens on row 3 of 41
    data = "\n".join([f"{header},Product Name,Input Image Urls", *rows]) + "\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data.encode(), CsvLimits())
    assert raised.value.problems == [
        CsvProblem(
            opened_on,
            column,
            'A quoted cell (one opening with ") is never closed: add its closing ".',
        )
    ]


def test_a_file_without_a_header_is_told_so_once() -> None:
    data = b"1,Shoe,http://a.example/1.jpg\n2,Hat,http://a.example/2.jpg\n"
    with pytest.raises(CsvInvalid) as refused:
        parse_products(data, CsvLimits())
    assert refused.value.problems == [
        CsvProblem(
            1,
            None,
            "The first row is a product, not a header: the file must start with a row naming "
            "its columns, 'S. No.', 'Product Name' and 'Input Image Urls'.",
        )
    ]


def test_a_header_with_a_column_misnamed_is_not_taken_for_a_product() -> None:
    data = b"1,Product Name,http://a.example/1.jpg\n"
    with pytest.raises(CsvInvalid) as refused:
        parse_products(data, CsvLimits())
    assert [problem.message for problem in refused.value.problems] == [
        "The header has no 'S. No.' column.",
        "The header has no 'Input Image Urls' column.",
    ]


def test_empty_rows_above_the_header_are_skipped_as_below_it() -> None:
    data = b",,\r\n;;\r\n\r\nS. No.,Product Name,Input Image Urls\r\n1,Shoe,http://a.example/1.jpg\r\n,,\r\n"
    [product] = parse_products(data, CsvLimits())
    assert (product.row, product.serial_number) == (5, 1)


def test_a_title_above_the_header_is_named_with_the_row_the_header_is_on() -> None:
    data = (
        b"Catalogue export 2026-11,,\n"
        b"Shop: Example,,\n"
        b"S. No.,Product Name,Input Image Urls\n"
        b"1,Shoe,http://a.example/1.jpg\n"
    )
    with pytest.raises(CsvInvalid) as refused:
        parse_products(data, CsvLimits())
    assert refused.value.problems == [
        CsvProblem(
            1,
            None,
            "The header is on row 3: delete the rows above it, so that the file starts with "
            "the header.",
        )
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://img.example/a.jpg?rect=0,0,200,150&w=100",
        "https://res.cloudinary.com/demo/image/upload/w_300,h_200,c_crop/sample.jpg",
    ],
    ids=["imgix query", "cloudinary path"],
)
def test_a_comma_not_followed_by_a_new_url_is_the_urls_own(url: str) -> None:
    """Split at every comma, such a URL was refused as pieces: "'0' is not an absolute
    http(s) URL", naming nothing the shop wrote."""
    data = f'S. No.,Product Name,Input Image Urls\n1,Hat,"{url},https://b.example/2.jpg"\n'
    [product] = parse_products(data.encode(), CsvLimits())
    assert product.image_urls == (url, "https://b.example/2.jpg")


@pytest.mark.parametrize(
    ("cell", "urls"),
    [
        (
            "http://a.example/1.jpg, http://b.example/2.jpg",
            ["http://a.example/1.jpg", "http://b.example/2.jpg"],
        ),
        (
            "http://a.example/1.jpg,,http://b.example/2.jpg",
            ["http://a.example/1.jpg", "http://b.example/2.jpg"],
        ),
        ("http://a.example/1.jpg,", ["http://a.example/1.jpg"]),
        (
            "http://a.example/1.jpg,ftp://b.example/2.jpg",
            ["http://a.example/1.jpg", "ftp://b.example/2.jpg"],
        ),
        ("http://a.example/1.jpg, b.jpg", ["http://a.example/1.jpg", "b.jpg"]),
        # a second URL without its scheme, or with a typo in it, is split off and refused
        # by name, not taken as the first one's own (fetched, it was a 404 on a path the
        # shop never wrote)
        (
            "http://a.example/1.jpg,shop.example/2.jpg",
            ["http://a.example/1.jpg", "shop.example/2.jpg"],
        ),
        ("http://a.example/1.jpg,www.shop.example", ["http://a.example/1.jpg", "www.shop.example"]),
        (
            "http://a.example/1.jpg,//cdn.example/2.jpg",
            ["http://a.example/1.jpg", "//cdn.example/2.jpg"],
        ),
        (
            "http://a.example/1.jpg,https//b.example/2.jpg",
            ["http://a.example/1.jpg", "https//b.example/2.jpg"],
        ),
        ("http://a.example/1.jpg,2.jpg", ["http://a.example/1.jpg", "2.jpg"]),
    ],
    ids=[
        "space after",
        "empty item",
        "trailing",
        "another scheme",
        "white space-led junk",
        "host without scheme",
        "www without path",
        "scheme-relative",
        "scheme without colon",
        "file name",
    ],
)
def test_a_comma_followed_by_a_scheme_white_space_or_nothing_separates_urls(
    cell: str, urls: list[str]
) -> None:
    assert csv_format.split_urls(cell) == urls


@pytest.mark.parametrize(
    ("data", "delimiter"),
    [
        (
            codecs.BOM_UTF8
            + b"S. No.;Product Name;Input Image Urls;Gewicht (kg, netto)\r\n"
            + b"1;Hut;http://a.example/1.jpg,http://a.example/2.jpg;0,5\r\n",
            ";",
        ),
        (
            b"S. No.\tProduct Name\tInput Image Urls\tPrice, USD\n"
            b"1\tHut\thttp://a.example/1.jpg,http://a.example/2.jpg\t9.99\n",
            ",",  # a tab-separated file's output is a CSV
        ),
    ],
    ids=["semicolons", "tabs"],
)
def test_the_separator_is_the_one_under_which_the_header_names_every_column(
    data: bytes, delimiter: str
) -> None:
    """A comma in another column's name made the header read as one of commas: refused
    with "The header has no 'S. No.' column" three times over."""
    [product] = parse_products(data, CsvLimits())
    assert (product.product_name, product.image_urls) == (
        "Hut",
        ("http://a.example/1.jpg", "http://a.example/2.jpg"),
    )
    assert validate_products(data, CsvLimits()).dialect.delimiter == delimiter


def test_a_cell_quoted_after_a_space_is_told_where_its_quote_must_be() -> None:
    """Told only to add the quotes it had; and read as quoted (the csv module's
    skipinitialspace), a file with a space after a closing quote, as hand-aligned ones
    have, failed whole."""
    data = (
        b"S. No., Product Name, Input Image Urls\n"
        b'1, Hat, "http://a.example/1.jpg, http://a.example/2.jpg"\n'
        b'2, "Shoe" , http://a.example/3.jpg\n'
    )
    with pytest.raises(CsvInvalid) as refused:
        parse_products(data, CsvLimits())
    told = [problem.message for problem in refused.value.problems if problem.row == 2]
    assert any("the quote right after the separator: here one has a space" in m for m in told)
    # and the row quoted with a space after its quote is read, as it was
    assert not [problem for problem in refused.value.problems if problem.row == 3]


QUOTE_INSIDE = (
    'A cell opens with a double quote and has more after its closing one ("Hat" large): a '
    'double quote inside a cell must be doubled, and the whole cell quoted ("""Hat"" large").'
)


def test_an_unreadable_row_is_told_in_words_with_its_column_and_that_reading_stopped() -> None:
    """Python's words (',' expected after '"') named no column, and the rows after it were
    passed over without a word: the user mended one row to meet the next problem."""
    data = (
        b"S. No.,Product Name,Input Image Urls\n"
        b"1,Hat,http://a.example/1.jpg\n"
        b'2,"Shoe" red,http://a.example/2.jpg\n'
        b"3,Glass,ftp://a.example/3.jpg\n"
    )
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert raised.value.problems == [
        CsvProblem(3, "Product Name", QUOTE_INSIDE),
        CsvProblem(
            None,
            None,
            "Reading stopped at row 3: the rows after it were not checked, and may have "
            "problems of their own.",
        ),
    ]


def test_an_unreadable_row_names_the_cell_the_reader_broke_at_past_a_space_and_quote() -> None:
    """The column was looked for with spaces after a separator skipped, as the reader no
    longer does: ' "Hat' was taken for a quoted cell, and the quote never closed in Note
    was told in Product Name."""
    data = b'S. No.,Product Name,Input Image Urls,Note\n1, "Hat,x"y,"never closed\n'
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert raised.value.problems[0].column == "Note"


def test_a_line_break_alone_in_a_cell_not_quoted_is_told_in_words_with_its_column() -> None:
    data = b"S. No.,Product Name,Input Image Urls\r\n1,Hat\rwool,http://a.example/1.jpg\r\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert raised.value.problems == [
        CsvProblem(
            2,
            "Product Name",
            "A cell holds a line break (a carriage return, CR) but is not quoted: quote the "
            "cell, or remove the line break.",
        )
    ]


def test_lines_ended_by_cr_alone_are_read_so_with_a_line_feed_inside_a_quoted_cell() -> None:
    """The line feed kept the file from being read as Excel for Mac's: the whole file was
    refused as row 1, in Python's words."""
    data = (
        b"S. No.,Product Name,Input Image Urls\r"
        b'1,"Hat\nwool",http://a.example/1.jpg\r'
        b"2,,http://a.example/2.jpg\r"
    )
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert raised.value.problems == [CsvProblem(3, "Product Name", "Product Name is empty.")]
    [hat] = parse_products(data.replace(b"2,,", b"2,Glass,"), CsvLimits())[:1]
    assert (hat.row, hat.product_name) == (2, "Hat\nwool")


def test_lines_ended_by_cr_cr_lf_are_rows_told_at_their_own_numbers() -> None:
    """Python's csv module writes CR CR LF on Windows to a file not opened with
    newline="": taken for Excel for Mac's CR alone, each row was three lines, and the
    problems' rows three times too high."""
    data = (
        b"S. No.,Product Name,Input Image Urls\r\r\n"
        b"1,Hat,http://a.example/1.jpg\r\r\n"
        b"2,,http://a.example/2.jpg\r\r\n"
    )
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert raised.value.problems == [CsvProblem(3, "Product Name", "Product Name is empty.")]


def test_a_url_whose_unicode_host_name_idna_refuses_is_refused_at_upload() -> None:
    data = (
        "S. No.,Product Name,Input Image Urls\n"
        "1,Hat,http://straße.example/1.jpg\n"
        "2,Snowman,http://☃.example/2.jpg\n"
    )
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data.encode(), CsvLimits())
    assert raised.value.problems == [
        CsvProblem(
            3,
            "Input Image Urls",
            "'http://☃.example/2.jpg' has a host name, '☃.example', that is not a valid "
            "internationalised domain name (IDNA 2008).",
        )
    ]


def test_text_not_utf8_is_told_at_its_row_after_a_cell_over_several_lines() -> None:
    """The line's number was told, two more than the row's after a three-line cell."""
    data = (
        b"S. No.,Product Name,Input Image Urls\r\n"
        b'1,"Shoe\r\nline two\r\nline three",http://a.example/1.jpg\r\n'
        b"\r\n,,\r\n"
        b"2,Caf\xe9,http://a.example/2.jpg\r\n"
    )
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    [problem] = raised.value.problems
    assert problem.row == 5
    assert problem.message.startswith("The file is not UTF-8 text (byte 105)")


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
def test_a_first_line_declaring_the_separator_is_read_as_such_and_not_counted(bom: bytes) -> None:
    """Excel's "sep=;" line, which Excel hides: refused as a title above the header."""
    data = (
        bom + b"sep=;\r\n"
        b"S. No.;Product Name;Input Image Urls;Gewicht (kg, netto)\r\n"
        b"1;Hut;http://a.example/1.jpg,http://a.example/2.jpg;0,5\r\n"
    )
    [product] = parse_products(data, CsvLimits())
    assert (product.row, product.image_urls) == (
        2,  # as Excel shows it, the header on row 1
        ("http://a.example/1.jpg", "http://a.example/2.jpg"),
    )
    assert validate_products(data, CsvLimits()).dialect.delimiter == ";"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data + b"2;;http://a.example/3.jpg;1\r\n", CsvLimits())
    assert raised.value.problems == [CsvProblem(3, "Product Name", "Product Name is empty.")]


@pytest.mark.parametrize(
    "line", [b"sep=;;;", b'"sep=;";;', b"SEP=;"], ids=["padded", "quoted", "capitals"]
)
def test_a_separator_line_a_spreadsheet_saved_as_a_cell_is_read_as_one(line: bytes) -> None:
    """A spreadsheet that shows the line as a cell saves it padded with separators to the
    row's width, and quoted where it holds one: told "the header is on row 2"."""
    data = line + b"\r\nS. No.;Product Name;Input Image Urls\r\n1;Hut;http://a.example/1.jpg\r\n"
    [product] = parse_products(data, CsvLimits())
    assert (product.row, product.image_urls) == (2, ("http://a.example/1.jpg",))
    dialect = validate_products(data, CsvLimits()).dialect
    assert dialect == CsvDialect(delimiter=";", bom=False, separator_line=True)


def test_a_separator_line_padded_with_tabs_is_read_at_once_however_long() -> None:
    """Its padding was taken back one tab at a time for the spaces and tabs that may end the
    line: 40,000 tabs before a letter held the web thread 12 s, 10 MB of them days."""
    data = b"sep=\t" + b"\t" * 50_000 + b"x\nS. No.\tProduct Name\tInput Image Urls\n"
    started = time.monotonic()
    with pytest.raises(CsvInvalid):
        parse_products(data, CsvLimits())
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (b"sep=,", "(sep=,) declares a comma as the separator, but the header is separated by "),
        (b"sep=\t", "(sep= and a tab) declares a tab as the separator, but the header is "),
    ],
    ids=["comma", "tab"],
)
def test_a_separator_line_the_header_contradicts_is_named_as_the_fault(
    line: bytes, said: str
) -> None:
    """It was told as three columns missing from a header that has them all."""
    data = line + b"\r\nS. No.;Product Name;Input Image Urls\r\n1;Hut;http://a.example/1.jpg\r\n"
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    [problem] = raised.value.problems
    assert problem.row == 1
    assert said in problem.message
    assert problem.message.endswith("semicolons: correct that line, or delete it.")


@pytest.mark.parametrize(
    ("declared", "written"), [(";", ";"), ("|", ","), ("\t", ",")], ids=["semicolon", "bar", "tab"]
)
def test_a_file_declaring_its_separator_gets_an_output_declaring_the_outputs(
    declared: str, written: str
) -> None:
    """Its output had no "sep=" line: Excel, which the input's had told to split cells by
    semicolons, split the output by the computer's list separator, all in one column."""
    # Given a file whose first line declares its separator
    data = (
        f"sep={declared}\r\nS. No.{declared}Product Name{declared}Input Image Urls\r\n"
        f"1{declared}Hut{declared}http://a.example/1.jpg\r\n"
    ).encode()
    dialect = validate_products(data, CsvLimits()).dialect
    assert dialect == CsvDialect(delimiter=written, bom=False, separator_line=True)

    # Then its output CSV declares its own, which the output's cells are separated by
    out = io.StringIO()
    write_output_csv([OutputRow("1", "Hut", ["http://a.example/1.jpg"], [""])], out, dialect)
    assert out.getvalue() == (
        f"sep={written}\r\n"
        f"S. No.{written}Product Name{written}Input Image Urls{written}Output Image Urls\r\n"
        f"1{written}Hut{written}http://a.example/1.jpg{written}\r\n"
    )


def test_a_shop_exports_names_for_the_columns_are_named_with_the_name_to_give_them() -> None:
    """Shopify's "Title" and "Image Src" are too far from ours for a near miss: three bare
    "no column" lines, naming nothing to rename."""
    data = (
        b"Handle,Title,Body (HTML),Vendor,Image Src,Image Position\n"
        b"red-shoe,Red shoe,<p>Nice</p>,Acme,http://a.example/1.jpg,1\n"
    )
    with pytest.raises(CsvInvalid) as raised:
        parse_products(data, CsvLimits())
    assert [problem.message for problem in raised.value.problems] == [
        "The header has no 'S. No.' column.",
        "The header has no 'Product Name' column. Column 2, 'Title', is what shop exports call "
        "it: name it 'Product Name'.",
        "The header has no 'Input Image Urls' column. Column 5, 'Image Src', is what shop "
        "exports call it: name it 'Input Image Urls'.",
    ]
