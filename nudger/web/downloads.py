"""Responses a browser saves as a file, under a name no one can turn into a header."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from urllib.parse import quote

from flask import Response


def attachment(body: bytes | str | Iterable, mimetype: str, filename: str) -> Response:
    """Return `body` as a download named `filename` (which may come from a user)."""
    response = Response(body, mimetype=mimetype)
    response.headers.set("Content-Disposition", "attachment", **filename_params(filename))
    return response


def filename_params(filename: str) -> dict[str, str]:
    """Return the Content-Disposition parameters naming `filename` (RFC 6266).

    As werkzeug's send_file does: an ASCII name is one `filename` parameter,
    which Headers.set quotes and escapes; any other name also gets a
    percent-encoded UTF-8 `filename*` (RFC 8187) and an ASCII fallback. Control
    characters go first: a line break would end the header, and no file name
    needs one.
    """
    name = "".join(c for c in filename if not unicodedata.category(c).startswith("C"))
    name = name.strip() or "download"
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        simple = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
        # safe: the attr-chars of RFC 8187, which need no percent-encoding.
        encoded = quote(name, safe="!#$&+-.^_`|~")
        return {"filename": simple or "download", "filename*": f"UTF-8''{encoded}"}
    return {"filename": name}
