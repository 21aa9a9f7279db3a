"""What reading an upload's CSV costs the web thread, on files made to be slow.

`python -m bench.csv_costs`: each file just under the 10 MB upload limit, timed through
validate_products (the read every upload pays before anything is stored; a valid file is
read once more to be inserted). Needs no service and no database. BENCHMARKS.md has the
figures.
"""

import os
import random
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from processing.csv_format import CsvInvalid, validate_products  # noqa: E402
from processing.policies import csv_limits  # noqa: E402

HEADER = "S. No.,Product Name,Input Image Urls\n"
PRODUCT = "1,Hat,https://shop.example/1.jpg\n"
SIZE = 10 * 1000 * 1000


def _wide_header() -> str:
    """Distinct header cells, none of them a column's name: each compared with each name."""
    random.seed(1)
    cells = {"".join(random.choices(string.ascii_lowercase, k=14)) for _ in range(SIZE // 15)}
    return ",".join(cells) + "\n" + PRODUCT


def _valid(urls_per_row: int) -> str:
    rows = [
        f'{n},Product {n},"'
        + ",".join(f"https://cdn.shop.example/p/{n}/{u}.jpg" for u in range(urls_per_row))
        + '"\n'
        for n in range(1, 10_001)
    ]
    return HEADER + "".join(rows)


FILES: dict[str, Callable[[], str]] = {
    "10,000 products, 1 URL each": lambda: _valid(1),
    "10,000 products, 20 URLs each": lambda: _valid(20),
    "line breaks after the header": lambda: HEADER + "\n" * (SIZE - 100) + PRODUCT,
    "line breaks above the header": lambda: "\n" * (SIZE - 100) + HEADER + PRODUCT,
    "rows of empty cells (,,)": lambda: HEADER + ",,\n" * (SIZE // 3 - 100) + PRODUCT,
    'rows of quoted empty cells ("","")': lambda: HEADER + '"",""\n' * (SIZE // 6 - 100) + PRODUCT,
    "rows of no-break spaces": lambda: HEADER + "\u00a0\n" * (SIZE // 3 - 100) + PRODUCT,
    "a header of ~670,000 cells": _wide_header,
}


def main() -> None:
    print(f"{'file':34} {'MB':>5} {'seconds':>8}  outcome")
    for name, make in FILES.items():
        data = make().encode()
        started = time.perf_counter()
        try:
            summary = validate_products(data, csv_limits())
            outcome = f"{summary.products:,} products"
        except CsvInvalid as invalid:
            outcome = f"refused: {invalid.problems[0].message[:40]}"
        seconds = time.perf_counter() - started
        print(f"{name:34} {len(data) / 1e6:5.1f} {seconds:8.2f}  {outcome}")


if __name__ == "__main__":
    main()
