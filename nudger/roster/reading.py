"""Read the CSV: decoding, the separator, header matching and streaming rows to the checks."""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from nudger.roster.checks import RowChecker
from nudger.roster.result import RowError
from nudger.text import control_character, escape_controls

Source = str | Path | bytes | BinaryIO  # a str is a path, as with open()
COLUMNS = ("email", "name", "first_name", "last_name", "manager_email", "manager_name",
           "journey", "start_date", "timezone", "country")  # fmt: skip
ALIASES = {c.replace("_", ""): c for c in COLUMNS} | {
    "emailaddress": "email", "fullname": "name", "journeyslug": "journey", "tz": "timezone"
}  # fmt: skip
NAME_COLUMNS = {"name", "first_name", "last_name"}
SHIFTED = "more values than the header has columns: quote values that contain the separator"
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")
_HEADER_NOISE = re.compile(r"[\s_-]+")


class _NotUtf8(Exception):
    pass


@contextmanager
def open_binary(source: Source, rewind: bool = False) -> Iterator[BinaryIO]:
    if isinstance(source, bytes | bytearray):
        yield io.BytesIO(source)
    elif isinstance(source, str | Path):
        with open(source, "rb") as f:
            yield f
    else:
        if rewind and source.seekable():
            source.seek(0)
        yield source


def _lines(raw: BinaryIO, digest: Any, errors: str) -> Iterator[str]:
    """Decode line by line, so a byte that is not UTF-8 is reported with its line."""
    for number, line in enumerate(raw, start=1):
        digest.update(line)
        try:
            text = line.decode("utf-8", errors)
        except UnicodeDecodeError as exc:
            byte = line[exc.start : exc.start + 1].hex().upper()
            message = f"the file is not UTF-8 text (line {number} has the byte 0x{byte})"
            raise _NotUtf8(message + ': save it as "CSV UTF-8" and try again') from exc
        if "\r" in text[:-2]:  # old Mac spreadsheets end lines with a lone CR
            yield from filter(None, _LONE_CR.split(text))
        else:
            yield text


def read_records(raw: BinaryIO, digest: Any, errors: str = "strict") -> tuple[str, Iterator[list]]:
    """Return the separator and the records; the header line decides comma or semicolon."""
    lines = _lines(raw, digest, errors)
    first = next(lines, "").removeprefix("\ufeff")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    return delimiter, csv.reader(itertools.chain([first], lines), delimiter=delimiter)


def _header(cells: list[str], default_journey: bool) -> tuple[dict[str, int], list, list]:
    """Map canonical column names to positions; report missing and unknown columns."""
    index: dict[str, int] = {}
    errors, warnings = [], []
    for i, raw in enumerate(cells):
        if code := control_character(raw):
            message = f"a column name contains a control character ({code}): remove it"
            errors.append(RowError(1, escape_controls(raw.strip()), "", message))
            continue
        key = _HEADER_NOISE.sub("", raw).lower()
        if not key:
            continue  # a trailing separator makes a nameless, empty column
        column = ALIASES.get(key)
        if column is None:
            message = f"unknown column, ignored (known: {', '.join(COLUMNS)})"
            warnings.append(RowError(1, raw.strip(), "", message))
        elif column in index:
            errors.append(RowError(1, raw.strip(), "", f"the {column} column appears twice"))
        else:
            index[column] = i
    missing = []
    if "email" not in index:
        missing.append("the file has no email column")
    if not index.keys() & NAME_COLUMNS:
        missing.append("the file has no name column: add name, or first_name and last_name")
    if "journey" not in index and not default_journey:
        missing.append("the file has no journey column: add one, or name the journey for the file")
    return index, errors + [RowError(1, "", "", m) for m in missing], warnings


def read_rows(reader: RowChecker, raw: BinaryIO, digest: Any, default_journey: bool) -> None:
    """Stream the file through the reader; file-level problems become row 0 or 1 errors."""
    row = 1
    try:
        _, records = read_records(raw, digest)
        header = next(records, [])
        if not any(c.strip() for c in header):
            reader.error(0, "", "", "the file is empty: expected a header line and learners")
            return
        index, errors, warnings = _header(header, default_journey)
        reader.errors += errors
        reader.warnings += warnings
        if errors:
            return
        width, columns = len(header), list(index.items())
        for row, record in enumerate(records, start=2):
            cells = [c.strip() for c in record]
            if not any(cells):
                continue  # spreadsheets leave blank lines behind
            if len(cells) > width and any(cells[width:]):
                # The values have shifted, so checking them one by one would only mislead.
                reader.rows += 1
                reader.error(row, "", "", SHIFTED)
                continue
            reader.add(row, {c: cells[i] if i < len(cells) else "" for c, i in columns})
        if reader.rows == 0:
            reader.error(0, "", "", "the file has a header but no learners")
    except _NotUtf8 as exc:
        reader.error(0, "", "", str(exc))
    except csv.Error as exc:
        reader.error(row + 1, "", "", f"the file is not a readable CSV here: {exc}")
