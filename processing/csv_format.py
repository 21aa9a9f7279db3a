"""The input CSV (parse and validate, all or nothing) and the output CSV. No ORM here."""

import codecs
import csv
import difflib
import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, TextIO
from urllib.parse import urlsplit

from net import ascii_host

SERIAL_COLUMN: Final = "S. No."
NAME_COLUMN: Final = "Product Name"
URLS_COLUMN: Final = "Input Image Urls"
OUTPUT_URLS_COLUMN: Final = "Output Image Urls"
REQUIRED_COLUMNS: Final = (SERIAL_COLUMN, NAME_COLUMN, URLS_COLUMN)
# As a header cell is compared with them: stripped and lowered.
REQUIRED_LOWERED: Final = frozenset(column.lower() for column in REQUIRED_COLUMNS)
OUTPUT_HEADER: Final = (*REQUIRED_COLUMNS, OUTPUT_URLS_COLUMN)

MAX_URL_LENGTH: Final = 2048
# Blank rows read one at a time, those a run of line breaks and separators skipped in one
# step is not (quoted empty cells, no-break spaces): ~1.5 us each, a 10 MB file of nothing
# else held a web thread for 2-5 s. No catalogue has this many.
MAX_BLANK_ROWS: Final = 100_000
TOO_MANY_BLANK_ROWS: Final = (
    f"The file has more than {MAX_BLANK_ROWS:,} blank rows (empty cells, spaces or empty "
    "quotes); delete them."
)
MAX_SERIAL: Final = 2**63 - 1  # what a 64-bit database column holds
MAX_SERIAL_DIGITS: Final = len(str(MAX_SERIAL))
# An S. No. as written, leading zeros counted: what shops pad numbers to ("00000042") with
# room to spare, and no more of a cell stored and shown on every page.
MAX_SERIAL_CHARACTERS: Final = 32
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
SERIAL_PATTERN: Final = re.compile(r"[0-9]+")
SAVE_AS_UTF8: Final = 'Save it as UTF-8 (Excel: "CSV UTF-8"), or UTF-16 with a byte order mark.'
# What the files most often uploaded instead of a CSV start with: a spreadsheet's own
# workbook, or an image or a PDF picked by mistake.
NOT_CSV_SIGNATURES: Final = {
    b"PK\x03\x04": "a ZIP archive, as an Excel (.xlsx) or OpenDocument (.ods) workbook is",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "an old Excel workbook (.xls)",
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF-": "a PDF document",
}
# A workbook is saved again as a CSV; an image or a document was picked by mistake.
PICK_THE_CSV: Final = "Pick the product CSV instead."
WORKBOOKS: Final = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
# Python's csv module refuses a longer cell; the longest a valid cell holds is the URL list,
# at most 50 URLs of 2,048 characters (CsvLimits), well under it.
MAX_CELL_CHARACTERS: Final = csv.field_size_limit()
WHITESPACE: Final = re.compile(r"\s")
# A comma followed by white space, another comma, the cell's end or a scheme ("https:",
# "ftp:"): one between URLs. Split at every comma, a URL of imgix or Cloudinary holding
# one was refused as pieces ("'0' is not an absolute http(s) URL").
URL_SEPARATOR: Final = re.compile(
    r",(?=\s|,|$"
    r"|[A-Za-z][A-Za-z0-9+.-]*:"  # a scheme: https:, ftp:, data:
    r"|//|(?i:https?)/"  # a URL without its scheme's colon, or its scheme: //cdn.example
    # a host name without a scheme (shop.example/b.jpg, www.shop.example): labels of
    # letters, digits and hyphens, the last starting with a letter, then a path, a port,
    # a query, the next comma or the end (Cloudinary's "h_200", "c_crop/x.jpg" and imgix's
    # "200" are none)
    r"|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z][A-Za-z0-9-]*(?:[/:?#,]|$))"
)
# Another URL after a space, a line break, a semicolon or a bar: URLs listed with the
# wrong separator (a URL's own query may hold one after "=", which is not matched).
SEPARATED_URLS: Final = re.compile(r"[\s;|]+https?://", re.IGNORECASE)
# Unicode's control and format characters (U+0001, U+200B zero-width space, U+FEFF), but
# white space, which is told as such; the ASCII ones by a regex, as most URLs are ASCII.
INVISIBLE: Final = frozenset({"Cc", "Cf"})
ASCII_CONTROL: Final = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
NO_HEADER: Final = (
    "The first row is a product, not a header: the file must start with a row naming its "
    f"columns, '{SERIAL_COLUMN}', '{NAME_COLUMN}' and '{URLS_COLUMN}'."
)


@dataclass(frozen=True)
class CsvLimits:
    max_rows: int = 10_000
    max_urls_per_row: int = 50
    max_problems: int = 100


@dataclass(frozen=True)
class CsvProblem:
    row: int | None  # the header is row 1
    column: str | None
    message: str


class CsvInvalid(Exception):
    def __init__(self, problems: list[CsvProblem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the CSV")
        self.problems = problems


@dataclass(frozen=True)
class ParsedProduct:
    row: int
    serial_number: int  # what S. No. are compared by: 007 and 7 are one
    serial_text: str  # as written, for the output CSV: "007"
    product_name: str
    image_urls: tuple[str, ...]


@dataclass(frozen=True)
class OutputRow:
    serial_text: str  # the S. No. as the input wrote it
    product_name: str
    input_urls: list[str]
    output_urls: list[str]  # "" where that image failed


class _Problems:
    def __init__(self, limit: int) -> None:
        self.items: list[CsvProblem] = []
        self.limit = limit

    def add(self, row: int | None, column: str | None, message: str) -> None:
        if len(self.items) < self.limit:
            self.items.append(CsvProblem(row, column, message))

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limit

    def stopped_at(self, row: int) -> None:
        """Say the list ends here, past its limit: a user who mended the problems shown
        then met as many more, told nothing of them."""
        self.items.append(
            CsvProblem(
                None,
                None,
                f"Only the first {self.limit} problems are listed; reading stopped at row "
                f"{row}, and the rows after it may have more.",
            )
        )


@dataclass(frozen=True)
class CsvDialect:
    """How a file was written, for the output CSV to be written alike: a spreadsheet that
    wrote it reads the output as it read the input (Excel where the comma is the decimal
    mark writes and reads semicolons; Excel on Windows reads UTF-8 as such only after a
    byte order mark; Excel splits cells by the separator a first line "sep=;" declares,
    and without one by the computer's list separator)."""

    delimiter: str = ","
    bom: bool = False
    separator_line: bool = False


@dataclass(frozen=True)
class CsvSummary:
    products: int
    images: int
    dialect: CsvDialect = CsvDialect()


def validate_products(data: bytes, limits: CsvLimits) -> CsvSummary:
    """Read the whole file once, keeping only counts and serial numbers; CsvInvalid lists
    every problem (up to a limit)."""
    products = images = 0
    for product in iter_products(data, limits):
        products += 1
        images += len(product.image_urls)
    return CsvSummary(products, images, dialect_of(data))


def dialect_of(data: bytes) -> CsvDialect:
    """The dialect of a file iter_products has read: its separator (a tab-separated
    file's output is comma-separated: it is a CSV), whether it began with a BOM, and
    whether it declared its separator in a "sep=" line."""
    bom = data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    data = _line_ends_mended(_utf8(data))  # UTF-16's mark is gone from it; UTF-8's skipped
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    declared, start = _declared_delimiter(data, start)
    header, _ = _header_line(_Lines(data, start))
    delimiter = declared or _delimiter(header)
    return CsvDialect(
        delimiter=";" if delimiter == ";" else ",", bom=bom, separator_line=declared is not None
    )


def parse_products(data: bytes, limits: CsvLimits) -> list[ParsedProduct]:
    """Every product of the file, in order; CsvInvalid lists every problem (up to a limit)."""
    return list(iter_products(data, limits))


def iter_products(data: bytes, limits: CsvLimits) -> Iterator[ParsedProduct]:
    """Every product of the file, in order, as it is read.

    A file with problems raises CsvInvalid at the end, after yielding the products before
    them: validate the whole file (validate_products) before storing anything.
    """
    data = _utf8(data)
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    if len(data) == bom or data[bom:].isspace():
        raise CsvInvalid([CsvProblem(None, None, "The file is empty.")])
    for signature, what in NOT_CSV_SIGNATURES.items():
        if data.startswith(signature):
            advice = SAVE_AS_UTF8 if signature in WORKBOOKS else PICK_THE_CSV
            raise CsvInvalid(
                [CsvProblem(None, None, f"The file is {what}, not a CSV file. {advice}")]
            )
    nul = data.find(b"\x00")
    if nul >= 0:
        # No database text column can hold it, and no CSV a person writes has one.
        row = data.count(b"\n", 0, nul) + 1
        raise CsvInvalid([CsvProblem(row, None, f"The file has a NUL byte (byte {nul + 1}).")])
    data = _line_ends_mended(data)
    problems = _Problems(limits.max_problems)
    declared, start = _declared_delimiter(data, bom)
    lines = _Lines(data, start)
    header, header_row = _header_line(lines)
    lines.skipped = 0  # counted in header_row already
    delimiter = declared or _delimiter(header)
    reader = _reader(itertools.chain([header], lines), delimiter)
    rows = blank_rows = 0
    read = header_row - 1  # the last row read whole
    header_cells: list[str] = []
    columns: dict[str, int] = {}
    try:
        header_cells = next(reader, [])
        read = header_row
        lines.blank_run = _blank_run(delimiter)
        columns = _column_indexes(header_cells, problems, row=header_row)
        if problems.items:
            if contradicted := _separator_contradicted(header, declared):
                raise CsvInvalid([CsvProblem(header_row, None, contradicted)])
            if not columns and _looks_like_a_product(header_cells):
                # The cause, alone: three "no column" lines would send the user hunting
                # for a typo in a header that is not there.
                raise CsvInvalid([CsvProblem(header_row, None, NO_HEADER)])
            below = _header_row_below(data, start, header_row, delimiter)
            if below is not None:  # a title above the table, as report exports write
                message = (
                    f"The header is on row {below}: delete the rows above it, so that "
                    "the file starts with the header."
                )
                raise CsvInvalid([CsvProblem(header_row, None, message)])
            raise CsvInvalid(problems.items)
        first_row_of_serial: dict[int, tuple[int, str]] = {}
        for cells in _rows(reader, lines):
            # Rows the reader gave, and the blank ones passed over before them
            row_number = read = read + 1 + lines.skipped
            lines.skipped = 0
            if not any(cell.strip() for cell in cells):
                blank_rows += 1
                if blank_rows > MAX_BLANK_ROWS:
                    problems.add(row_number, None, TOO_MANY_BLANK_ROWS)
                    break
                continue  # a blank line is not a product
            rows += 1
            if rows > limits.max_rows:
                problems.add(
                    row_number,
                    None,
                    f"The file has more than {limits.max_rows:,} products; split it.",
                )
                break
            product = _parse_row(
                row_number, cells, len(header_cells), columns, limits, problems, first_row_of_serial
            )
            if product is not None and not problems.items:
                yield product
            if problems.full:
                problems.stopped_at(row_number)
                break
    except csv.Error as error:
        row_number = read + 1 + lines.skipped
        text = lines.data[lines.row_start : lines.start].decode("utf-8", "replace")
        fault = _cell_at_fault(text, delimiter)
        column = None
        if fault is not None and row_number != header_row:
            names = {index: name for name, index in columns.items()}
            column = names.get(fault) or (
                header_cells[fault].strip() or None if fault < len(header_cells) else None
            )
        problems.add(row_number, column, _unreadable(str(error)))
        if lines.data[lines.start :].strip(b" \t\r\n" + delimiter.encode()):
            # The reader cannot find where the next row starts: the rest is not checked,
            # and a user who mended this row would meet its problems unwarned.
            problems.add(
                None,
                None,
                f"Reading stopped at row {row_number}: the rows after it were not checked, "
                "and may have problems of their own.",
            )
    if problems.items:
        raise CsvInvalid(problems.items)
    if not rows:
        raise CsvInvalid([CsvProblem(None, None, "The file has a header but no products.")])


def _utf8(data: bytes) -> bytes:
    """The file as UTF-8: UTF-16 with a byte order mark (Excel's "Unicode Text") is turned
    into it; a file in another encoding that announces itself is refused, naming it."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise CsvInvalid([CsvProblem(None, None, f"The file is UTF-32 text. {SAVE_AS_UTF8}")])
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as error:
            raise CsvInvalid(
                [CsvProblem(None, None, f"The file is not valid UTF-16 (byte {error.start + 1}).")]
            ) from None
    if len(data) >= 4 and data[1:4:2] == b"\x00\x00" and data[0:4:2] != b"\x00\x00":
        raise CsvInvalid(
            [
                CsvProblem(
                    None,
                    None,
                    f"The file looks like UTF-16 text without a byte order mark. {SAVE_AS_UTF8}",
                )
            ]
        )
    return data


def _not_utf8(data: bytes, line_number: int, position: int) -> CsvProblem:
    """What a file that is not UTF-8 looks like, in words a person can act on."""
    message = f"The file is not UTF-8 text (byte {position + 1})"
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return CsvProblem(
            line_number, None, f"{message}, nor any encoding it can be read as. {SAVE_AS_UTF8}"
        )
    return CsvProblem(
        line_number,
        None,
        f"{message}: it looks like Windows-1252 or Latin-1, what Excel's "
        f'"CSV (Comma delimited)" writes. {SAVE_AS_UTF8}',
    )


class _Lines:
    """The file's lines, decoded one at a time (a UTF-8 character never contains b"\\n").

    Where a row starts (at_row_start, set by whoever reads rows), a run of blank lines is
    passed over in one step and counted in skipped: one line at a time, a file of 10 MB of
    line breaks held a web thread for 10-20 s, and it is read twice (validated, inserted).
    A blank line inside a quoted cell is the cell's, read as any other line."""

    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.start = start
        self.number = 0  # of the last line read, the skipped included
        # The spreadsheet's row the last line read is in, where rows are told (at_row_start):
        # a cell over several lines is one row, as the problems' rows are counted.
        self.row = 0
        self.skipped = 0
        self.at_row_start = False
        self.row_start = start  # where the row being read starts, for a reader's error
        self.blank_run = _blank_run(",;")  # the header's, until it says which

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        data, start = self.data, self.start
        if self.at_row_start:
            self.at_row_start = False
            run = self.blank_run.match(data, start)
            if run is not None:
                count = data.count(b"\n", start, run.end())
                self.number += count
                self.skipped += count
                start = self.start = run.end()
                self.row += count
            self.row_start = start
            self.row += 1
        if start >= len(data):
            raise StopIteration
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        self.start = end
        self.number += 1
        try:
            return data[start:end].decode("utf-8")
        except UnicodeDecodeError as error:
            row = self.row or self.number
            raise CsvInvalid([_not_utf8(data, row, start + error.start)]) from None


def _blank_run(delimiter: str) -> "re.Pattern[bytes]":
    """Lines that hold nothing but the delimiter and spaces: rows of empty cells. One class
    repeated, to the last line break in it: a repeated group took 150 ns a line."""
    return re.compile(rb"[ \t\r\n\x0b\x0c\x1c-\x1f" + re.escape(delimiter.encode()) + rb"]*\n")


class OutputCsvWriter:
    """The output CSV: the three input columns plus output URLs, each in the position of its
    input URL. The header is written at once; rows as they are given."""

    def __init__(self, stream: TextIO, dialect: CsvDialect = CsvDialect()) -> None:
        if dialect.bom:
            stream.write("\ufeff")
        if dialect.separator_line:
            # The output's separator: a comma for a "sep=|" input, as for one without.
            stream.write(f"sep={dialect.delimiter}\r\n")
        self._writer = csv.writer(stream, delimiter=dialect.delimiter, lineterminator="\r\n")
        self._writer.writerow(OUTPUT_HEADER)

    def write_rows(self, rows: Iterable[OutputRow]) -> None:
        self._writer.writerows(
            [
                row.serial_text,
                neutralise(row.product_name),
                neutralise(",".join(row.input_urls)),
                neutralise(",".join(row.output_urls)),
            ]
            for row in rows
        )


def write_output_csv(
    rows: Iterable[OutputRow], stream: TextIO, dialect: CsvDialect = CsvDialect()
) -> None:
    """The whole output CSV at once."""
    OutputCsvWriter(stream, dialect).write_rows(rows)


def neutralise(cell: str) -> str:
    """Make a cell that a spreadsheet would run as a formula read as text."""
    return f"'{cell}" if cell.startswith(FORMULA_PREFIXES) else cell


def split_urls(cell: str) -> list[str]:
    """The URLs of a cell: a comma separates two only where a new URL (with a scheme, or
    a host name without one, refused then by name) or white space follows it; any other
    comma is its URL's own (imgix's "?rect=0,0,200,150", Cloudinary's "/w_300,h_200/")."""
    if "," not in cell:
        return [cell.strip()] if cell.strip() else []
    return [item.strip() for item in URL_SEPARATOR.split(cell) if item.strip()]


def _reader(lines: Iterable[str], delimiter: str) -> "Iterator[list[str]]":
    """The CSV reader of a file's lines. Spaces after a separator are kept: skipped, a cell
    quoted after one (`1, Hat, "url1, url2"`) read as quoted, but one with a space after
    its closing quote too (`1, "Hat" , url`, as hand-aligned files have) failed the whole
    file as bad quoting. The row's check says where the space is instead (_parse_row)."""
    return csv.reader(lines, strict=True, delimiter=delimiter)


def _rows(reader: Iterator[list[str]], lines: _Lines) -> Iterator[list[str]]:
    """The reader's rows, each read with lines told where it starts."""
    while True:
        lines.at_row_start = True
        cells = next(reader, None)
        if cells is None:
            return
        yield cells


# The header's cells a missing column's name is compared with, for a near miss to name.
HINTED_COLUMNS: Final = 1000
# What shop platforms' product exports call a column of ours (Shopify's "Title" and "Image
# Src", WooCommerce's "Name" and "Images"), by letters and digits: too far from ours for a
# near miss, the user was told three times that no column was there, and not which to rename.
EXPORT_NAMES: Final = {
    "title": NAME_COLUMN,
    "name": NAME_COLUMN,
    "imagesrc": URLS_COLUMN,
    "images": URLS_COLUMN,
}


def _column_indexes(header: list[str], problems: _Problems, *, row: int) -> dict[str, int]:
    normalised = [cell.strip().lower() for cell in header]
    required = REQUIRED_LOWERED
    # Cells that are none of ours, by their letters and digits alone: "S.No" and "Input
    # Image URL" are near misses, told as such, where a spreadsheet's extra columns are not.
    others = {
        _letters(cell): index
        # The first columns only: a header of 700,000 cells, each compared with each name,
        # held a web thread for 20 s.
        for index, cell in enumerate(normalised[:HINTED_COLUMNS])
        # not the output's column either: its URLs are not to be fed back in
        if cell not in required and cell != OUTPUT_URLS_COLUMN.lower()
    }
    indexes: dict[str, int] = {}
    for column in REQUIRED_COLUMNS:
        name = column.lower()
        matches = [i for i, cell in enumerate(normalised) if cell == name]
        if not matches:
            near = difflib.get_close_matches(_letters(name), others, n=1, cutoff=0.75)
            exported = [i for letters, i in others.items() if EXPORT_NAMES.get(letters) == column]
            hint = (
                f" Column {others[near[0]] + 1}, '{header[others[near[0]]].strip()}', is close: "
                f"name it '{column}'."
                if near
                else f" Column {exported[0] + 1}, '{header[exported[0]].strip()}', is what "
                f"shop exports call it: name it '{column}'."
                if exported
                else ""
            )
            problems.add(row, column, f"The header has no '{column}' column.{hint}")
        elif len(matches) > 1:
            problems.add(row, column, f"The header has '{column}' more than once.")
        else:
            indexes[column] = matches[0]
    return indexes


CR_RUN: Final = re.compile(rb"\r+")


def _line_ends_mended(data: bytes) -> bytes:
    """CR alone ends lines (Excel for Mac's "CSV (Macintosh)") where it ends the first: LF
    is then the text's own, inside a quoted cell ("Hat<LF>wool"), which the file having
    one had kept it from being mended, and the whole file told as row 1."""
    cr = data.find(b"\r")  # found by memchr: a regex for either took 29 ms over 10 MB
    if cr < 0 or data.find(b"\n", 0, cr) >= 0:
        return data
    # CR CR LF, as Python's csv module writes on Windows to a file not opened with
    # newline="", ends a line as CR LF does (mended, each row was three lines)
    run = CR_RUN.match(data, cr)
    if run is not None and data.startswith(b"\n", run.end()):
        return data
    return data.replace(b"\r", b"\n")


def _header_line(lines: _Lines) -> tuple[str, int]:
    """The first line that is not blank, and its row."""
    lines.at_row_start = True
    header = next(lines, "")
    blank_rows = 0
    while _blank(header):  # blank lines above the header are skipped, as below it
        blank_rows += 1
        if blank_rows > MAX_BLANK_ROWS:
            raise CsvInvalid([CsvProblem(lines.number, None, TOO_MANY_BLANK_ROWS)])
        lines.at_row_start = True  # a run after a blank line the regex does not take, too
        following = next(lines, None)
        if following is None:  # white space that bytes do not call so (U+0085, U+2028)
            raise CsvInvalid([CsvProblem(None, None, "The file is empty.")])
        header = following
    return header, max(lines.number, 1)


# Excel's "sep=;" first line: the separator, declared. Excel hides the line, and its rows
# are counted without it. Also as a spreadsheet that shows it as a cell saves it again:
# quoted where it holds the separator ("sep=;"), padded with separators to the row's width
# (sep=;;;); either was told "the header is on row 2". The padding taken whole (*+): a tab's
# was taken back one at a time for [ \t]*, and 40,000 tabs before a letter held the web
# thread 12 s (10 MB of them, days).
SEPARATOR_LINE: Final = re.compile(
    rb'("?)sep=([\t\x21\x23-\x7e])\1(?:\2)*+[ \t]*\r?(?:\n|$)', re.IGNORECASE
)
# Each separator the header may be read by, as one and as many.
SEPARATOR_NAMES: Final = {
    ",": ("a comma", "commas"),
    ";": ("a semicolon", "semicolons"),
    "\t": ("a tab", "tabs"),
}


def _declared_delimiter(data: bytes, start: int) -> tuple[str | None, int]:
    """The separator a first line "sep=X" declares, and where the lines after it start; None
    and start where there is none (refused as a title above the header, it cost a row)."""
    declared = SEPARATOR_LINE.match(data, start)
    if declared is None:
        return None, start
    return declared.group(2).decode("ascii"), declared.end()


def _separator_contradicted(header: str, declared: str | None) -> str | None:
    """What is wrong where the "sep=" line declares one separator and the header is written
    with another (it was told as three columns missing from a header that has them); None
    where nothing is."""
    if declared is None:
        return None
    written = _delimiter(header)
    if written == declared or written not in header:
        return None
    if not _names_every_column(header, written):
        return None
    name = SEPARATOR_NAMES[declared][0] if declared in SEPARATOR_NAMES else f"'{declared}'"
    line = "sep= and a tab" if declared == "\t" else f"sep={declared}"
    return (
        f"The first line ({line}) declares {name} as the separator, but the header "
        f"is separated by {SEPARATOR_NAMES[written][1]}: correct that line, or delete it."
    )


def _delimiter(header: str) -> str:
    """The separator the header's cells are written with: the one of comma, tab and
    semicolon under which it names every column ("Gewicht (kg, netto)" in a header
    separated by semicolons made it read as one of commas, naming none). Where none does,
    a comma, unless there is none and there is a tab (Excel's "Unicode Text", UTF-16) or a
    semicolon (Excel's CSV where the comma is the decimal mark)."""
    candidates = [delimiter for delimiter in ",\t;" if delimiter in header]
    usual = candidates[0] if candidates else ","
    if len(candidates) < 2:
        return usual  # nothing to choose: the common case, and a header of 10 MB of commas
    lowered = header.lower()
    if not all(column.lower() in lowered for column in REQUIRED_COLUMNS):
        return usual  # no separator can make it name them
    for delimiter in candidates:
        if _names_every_column(header, delimiter):
            return delimiter
    return usual


def _names_every_column(header: str, delimiter: str) -> bool:
    """Whether the header, its cells separated by delimiter, names every required column."""
    try:
        cells = next(_reader([header], delimiter), [])
    except csv.Error:
        return False
    return {cell.strip().lower() for cell in cells} >= REQUIRED_LOWERED


def _unreadable(error: str) -> str:
    """A csv.Error in words a person can act on, not Python's."""
    if error.startswith("field larger than field limit"):
        return f"A cell is longer than {MAX_CELL_CHARACTERS:,} characters."
    if error == "unexpected end of data":
        # The reader only finds out at the file's end, which it named: the row was
        # where the quote opened, maybe thousands of rows before.
        return 'A quoted cell (one opening with ") is never closed: add its closing ".'
    if error.endswith("expected after '\"'"):
        return (
            'A cell opens with a double quote and has more after its closing one ("Hat" large): '
            'a double quote inside a cell must be doubled, and the whole cell quoted ("""Hat"" '
            'large").'
        )
    if error.startswith("new-line character seen in unquoted field"):
        return (
            "A cell holds a line break (a carriage return, CR) but is not quoted: quote the "
            "cell, or remove the line break."
        )
    return f"Not a readable CSV file: {error}."


def _cell_at_fault(text: str, delimiter: str) -> int | None:
    """The index of the cell where a row's text breaks the reader's rules (strict), or
    None: the reader's error does not say which."""
    cell = place = 0
    end = len(text)
    while place < end:
        if place < end and text[place] == '"':
            place += 1
            while True:
                close = text.find('"', place)
                if close < 0:
                    return cell  # never closed
                place = close + (2 if text.startswith('""', close) else 1)
                if place == close + 1:
                    break
            if place < end and text[place] not in (delimiter, "\r", "\n"):
                return cell  # more after the closing quote
        while place < end and text[place] not in (delimiter, "\r", "\n"):
            place += 1
        if place < end and text[place] == delimiter:
            cell, place = cell + 1, place + 1
            continue
        if text.startswith("\r", place) and place + 1 < end and text[place + 1] != "\n":
            return cell  # a CR alone inside the row
        return None
    return None


def _blank(line: str) -> bool:
    """A line with no text, or only separators: the empty row a spreadsheet writes as ",,"."""
    return not line.replace(",", "").replace(";", "").strip()


# How far below the first row a header is looked for when the first row is not one.
HEADER_LOOKAHEAD: Final = 10


def _header_row_below(data: bytes, start: int, first: int, delimiter: str) -> int | None:
    """The row, within HEADER_LOOKAHEAD below the first, that names every column; None if
    there is none, or the rows cannot be read."""
    lines = itertools.islice(_Lines(data, start), first + HEADER_LOOKAHEAD)
    reader = _reader(lines, delimiter)
    required = REQUIRED_LOWERED
    try:
        for row_number, cells in enumerate(reader, start=1):
            if row_number > first and required <= {cell.strip().lower() for cell in cells}:
                return row_number
    except csv.Error:
        pass
    return None


def _looks_like_a_product(cells: list[str]) -> bool:
    """A serial number first and a URL further on: a row of data where the header belongs."""
    return (
        len(cells) >= len(REQUIRED_COLUMNS)
        and SERIAL_PATTERN.fullmatch(cells[0].strip()) is not None
        and any("://" in cell for cell in cells[1:])
    )


def _letters(cell: str) -> str:
    return "".join(character for character in cell if character.isalnum())


def _parse_row(
    row_number: int,
    cells: list[str],
    width: int,
    columns: dict[str, int],
    limits: CsvLimits,
    problems: _Problems,
    first_row_of_serial: dict[int, tuple[int, str]],
) -> ParsedProduct | None:
    """The row's product, or None where problems has been told what is wrong with it. width:
    the header's number of cells; a row may have fewer (the rest read as empty) or more
    that are empty (spreadsheets pad rows so), never more with something in them.
    first_row_of_serial: where each S. No. was first seen and how it was written there, this
    row's added, whatever else is wrong with it (a repeat of it would otherwise be told only
    once it was mended)."""

    def cell(column: str) -> str:
        index = columns[column]
        return cells[index].strip() if index < len(cells) else ""

    found_before = len(problems.items)
    if any(extra.strip() for extra in cells[width:]):
        # Almost always a list of URLs without its quotes: read as it stands, every URL but
        # the first would be dropped without a word.
        problems.add(
            row_number,
            None,
            f"The row has {len(cells)} cells where the header has {width}. A cell that "
            'holds commas, such as a list of URLs, must be in double quotes: "url1,url2"'
            + (
                ", the quote right after the separator: here one has a space before it."
                if any(extra[:1].isspace() and extra.lstrip()[:1] == '"' for extra in cells)
                else "."
            ),
        )
    serial_text = cell(SERIAL_COLUMN)
    # Read without its leading zeros, and as too large past 19 digits: Python's int()
    # refuses more than 4,300, and a cell of 5,000 was an upload's 500.
    digits = serial_text.lstrip("0") if SERIAL_PATTERN.fullmatch(serial_text) else ""
    serial = int(digits or "0") if len(digits) <= MAX_SERIAL_DIGITS else MAX_SERIAL + 1
    if serial <= 0:
        shown = f"'{serial_text}'" if serial_text else "empty"
        problems.add(
            row_number, SERIAL_COLUMN, f"S. No. must be a positive whole number, not {shown}."
        )
    elif serial > MAX_SERIAL:
        problems.add(row_number, SERIAL_COLUMN, f"S. No. must be at most {MAX_SERIAL}.")
    elif len(serial_text) > MAX_SERIAL_CHARACTERS:
        problems.add(
            row_number,
            SERIAL_COLUMN,
            f"S. No. is longer than {MAX_SERIAL_CHARACTERS} characters, leading zeros counted.",
        )
    else:
        # Compared as numbers, as they were before their text was kept: 007 repeats 7.
        first, written = first_row_of_serial.setdefault(serial, (row_number, serial_text))
        if first != row_number:
            as_written = f" (as '{written}')" if written != serial_text else ""
            problems.add(
                row_number,
                SERIAL_COLUMN,
                f"S. No. {serial_text} is already used on row {first}{as_written}.",
            )
    name = cell(NAME_COLUMN)
    if not name:
        problems.add(row_number, NAME_COLUMN, "Product Name is empty.")
    urls = split_urls(cell(URLS_COLUMN))
    if not urls:
        problems.add(row_number, URLS_COLUMN, "The row has no image URL.")
    elif len(urls) > limits.max_urls_per_row:
        problems.add(
            row_number,
            URLS_COLUMN,
            f"The row has {len(urls)} image URLs; at most {limits.max_urls_per_row} are allowed.",
        )
    for url in urls:
        message = url_problem(url)
        if message:
            problems.add(row_number, URLS_COLUMN, message)
    if len(problems.items) > found_before:
        return None
    return ParsedProduct(row_number, serial, serial_text, name, tuple(urls))


def _invisible_at(url: str) -> int | None:
    if url.isascii():
        found = ASCII_CONTROL.search(url)
        return found.start() if found else None
    return next(
        (
            place
            for place, char in enumerate(url)
            if unicodedata.category(char) in INVISIBLE and not char.isspace()
        ),
        None,
    )


def url_problem(url: str) -> str | None:
    """Why url is not an absolute http(s) URL the service can fetch, or None."""
    shown = url if len(url) <= 80 else url[:77] + "..."
    if len(url) > MAX_URL_LENGTH:
        return f"'{shown}' is longer than {MAX_URL_LENGTH} characters."
    hidden = _invisible_at(url)
    if hidden is not None:
        # A zero-width space pasted from a web page or a BOM at a cell's start: accepted,
        # the image failed later as a 404 or a DNS error, naming nothing the shop could see.
        return (
            f"'{shown}' contains an invisible character, U+{ord(url[hidden]):04X}, at "
            f"character {hidden + 1}."
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number or out of range
    except ValueError:
        return f"'{shown}' is not a valid URL."
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return f"'{shown}' is not an absolute http(s) URL."
    # url first: .hostname is parsed anew at each call, 50 ms over 200,000 URLs
    if not url.isascii() and not parts.hostname.isascii():
        try:
            ascii_host(parts.hostname)  # as the fetch will, for it not to fail there
        except UnicodeError:
            return (
                f"'{shown}' has a host name, '{parts.hostname}', that is not a valid "
                "internationalised domain name (IDNA 2008)."
            )
    if SEPARATED_URLS.search(url):
        return f"'{shown}' holds several URLs: separate them with commas."
    if space := WHITESPACE.search(url):
        if space.group() == " ":
            # A file name with a space, as a shop's own server may serve it: a browser
            # sends it as %20, which the URL must hold for the fetch to ask for that file.
            return f"'{shown}' contains a space, at character {space.start() + 1}: write it as %20."
        # A no-break space pasted from a web page looks like a space, and the shop's own
        # copy of the URL looked right: told by its code and place, as invisible ones are.
        return (
            f"'{shown}' contains white space, U+{ord(space.group()):04X}, at character "
            f"{space.start() + 1}."
        )
    return None
