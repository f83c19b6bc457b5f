"""CSV exports that are safe to open in a spreadsheet.

A cell beginning with = + - @ tab or CR is a formula to Excel, LibreOffice
and Google Sheets (CSV injection); such cells get a leading apostrophe, which
spreadsheets show as text and do not print.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FLUSH_ROWS = 500  # rows per streamed chunk: small enough to start at once, big enough to be cheap


def neutralise(value: Any) -> str:
    """Return the cell as text, defused if a spreadsheet would run it as a formula."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def iter_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """Yield the CSV in chunks, with a BOM so Excel reads it as UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    out.write("\ufeff")
    writer.writerow([neutralise(h) for h in header])
    for n, row in enumerate(rows, start=1):
        writer.writerow([neutralise(cell) for cell in row])
        if n % FLUSH_ROWS == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return the whole CSV as one string."""
    return "".join(iter_csv(header, rows))
