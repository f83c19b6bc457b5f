"""Send a CSV export as a streamed download."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from flask import Response, current_app
from sqlmodel import Session

from nudger.insights.exports import iter_csv
from nudger.web.downloads import attachment

Rows = Iterable[Sequence[Any]]


def csv_download(
    filename: str, header: Sequence[str], rows: Rows | Callable[[Session], Rows]
) -> Response:
    """Stream rows as a CSV attachment (formula cells neutralised).

    `rows` may be a function of a session: it then reads through a session of
    its own, opened and closed by the stream, so a long export holds no
    request's session and ends its transaction even if the download stops.
    """
    engine = current_app.extensions["nudger.engine"]

    def generate() -> Iterator[str]:
        if not callable(rows):
            yield from iter_csv(header, rows)
            return
        with Session(engine, expire_on_commit=False) as session:
            yield from iter_csv(header, rows(session))

    return attachment(generate(), "text/csv", filename)
