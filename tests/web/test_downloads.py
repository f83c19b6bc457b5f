"""Download names: a file name from a user can neither end the header nor add to it."""

from __future__ import annotations

import pytest
from markupsafe import escape
from werkzeug.http import parse_options_header

from nudger.web.downloads import filename_params
from tests.adminkit import redis, token
from tests.web.test_admin_upload import MESSY, console, upload_id

__all__ = ["console", "redis"]

INJECTION = "a\"; filename*=UTF-8''evil.html; x=\".csv"


def saved_as(header: str) -> tuple[str, dict[str, str]]:
    """Return the disposition and the name a browser saves the file as (filename* first)."""
    return parse_options_header(header)


def upload_named(client, name: str, data: bytes = MESSY):
    """Upload a file whose name is sent as curl sends it: quoted, with quotes escaped."""
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    body = b"".join(
        [
            b'--B\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n',
            token(client, "/admin/account").encode(),
            b'\r\n--B\r\nContent-Disposition: form-data; name="file"; ',
            f'filename="{quoted}"\r\nContent-Type: text/csv\r\n\r\n'.encode(),
            data,
            b"\r\n--B--\r\n",
        ]
    )
    response = client.post(
        "/admin/upload", data=body, content_type="multipart/form-data; boundary=B"
    )
    assert response.status_code == 302
    page = client.get(response.headers["Location"])
    assert str(escape(name)) in page.text  # the app got the name as sent
    return page


def error_csv_header(console, name: str) -> str:
    uid = upload_id(upload_named(console, name))
    response = console.get(f"/admin/upload/{uid}/errors.csv")
    assert response.status_code == 200
    return response.headers["Content-Disposition"]


def test_an_uploaded_file_name_cannot_inject_a_second_file_name(console):
    value, params = saved_as(error_csv_header(console, INJECTION))

    assert value == "attachment"
    assert params == {"filename": "a\"; filename*=UTF-8''evil.html; x=\"-errors.csv"}


def test_a_non_ascii_file_name_is_kept_with_an_ascii_fallback(console):
    header = error_csv_header(console, "Équipe été — 北京.csv")

    assert saved_as(header) == ("attachment", {"filename": "Équipe été — 北京-errors.csv"})
    assert header.isascii()
    assert 'filename="Equipe ete  -errors.csv"' in header  # for clients without RFC 8187


@pytest.mark.parametrize("name", ["line\r\nSet-Cookie: x=1.csv", "tab\there.csv", "\x00.csv"])
def test_control_characters_never_reach_the_header(name):
    params = filename_params(name)
    assert all(c.isprintable() for value in params.values() for c in value), params


def test_the_console_and_outbox_downloads_name_their_files(console):
    response = console.get("/admin/enrolments.csv")
    assert saved_as(response.headers["Content-Disposition"]) == (
        "attachment",
        {"filename": "nudger-enrolments.csv"},
    )
