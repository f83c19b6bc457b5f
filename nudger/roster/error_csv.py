"""The rejected rows handed back as a CSV, with an `error` column, safe for spreadsheets."""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict

from nudger.insights.exports import neutralise
from nudger.roster.reading import Source, open_binary, read_records
from nudger.roster.result import ImportResult


def write_error_csv(result: ImportResult, source: Source) -> str:
    """Return the rejected rows of `source` with an `error` column, safe for spreadsheets.

    The separator is the original file's, so it opens where the original did;
    encode it as utf-8-sig for Excel.
    """
    messages: dict[int, list[str]] = defaultdict(list)
    for e in result.errors:
        if e.row >= 2:
            messages[e.row].append(f"{e.field}: {e.message}" if e.field else e.message)
    out = io.StringIO()
    with open_binary(source, rewind=True) as raw:
        delimiter, records = read_records(raw, hashlib.sha256(), errors="replace")
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
        header = next(records, [])
        writer.writerow([*map(neutralise, header), "error"])
        for row, record in enumerate(records, start=2):
            if row in messages:
                padded = record + [""] * (len(header) - len(record))
                writer.writerow([*map(neutralise, padded), neutralise("; ".join(messages[row]))])
    return out.getvalue()
