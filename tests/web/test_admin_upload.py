"""Uploading learners in the console: the same checks as `nudger import`, preview, commit."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from click.testing import CliRunner
from rq import SimpleWorker
from sqlalchemy import func
from sqlmodel import select

from nudger.cli import main
from nudger.db import utcnow
from nudger.models import AuditLog, Enrolment, ImportBatch, Person
from nudger.queue import DEFAULT_QUEUE, queue
from nudger.roster import uploads as imports_job
from tests.adminkit import admin_app, make_admin, post, redis, sign_in
from tests.factories import make_journey

__all__ = ["redis"]

MESSY = (
    "\ufeffE-mail;First Name;Last name;Manager Email;Journey;Start Date;Time zone;Country\r\n"
    "ada@example.com;Ada;Lovelace;grace@example.com;giving-feedback;2030-03-04;Europe/London;GB\r\n"
    "not-an-email;Bob;Smith;;giving-feedback;2030-03-04;;\r\n"
    "carol@example.com;Carol;;;no-such-journey;2030-03-04;;\r\n"
    "dan@example.com;Dan;Brown;dan@example.com;giving-feedback;04/03/2030;Mars/Olympus;ZZ\r\n"
    '=HYPERLINK("http://evil");Eve;;;giving-feedback;;;\r\n'
    "\r\n"
).encode()
FIXED = (
    "\ufeffE-mail;First Name;Last name;Manager Email;Journey;Start Date;Time zone;Country\r\n"
    "ada@example.com;Ada;Lovelace;grace@example.com;giving-feedback;2030-03-04;Europe/London;GB\r\n"
    "bob@example.com;Bob;Smith;;giving-feedback;2030-03-04;;\r\n"
    "carol@example.com;Carol;;;giving-feedback;2030-03-04;;\r\n"
    "dan@example.com;Dan;Brown;grace@example.com;giving-feedback;2030-03-04;Europe/Paris;FR\r\n"
).encode()


@pytest.fixture
def console(settings, session, now, redis):
    """A signed-in admin's client, the app's clock at the real time (as the CLI's is)."""
    make_journey(session)
    make_admin(session, now)
    app = admin_app(settings, now)
    app.config["NUDGER_CLOCK"] = utcnow
    client = app.test_client()
    sign_in(client)
    return client


@pytest.fixture
def cli(settings, engine, monkeypatch):
    """Run `nudger` in-process against the test database."""
    monkeypatch.setenv("NUDGER_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("NUDGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NUDGER_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("NUDGER_REDIS_URL", settings.redis_url)

    def run(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


def upload(client, data: bytes, name: str = "learners.csv", journey: str = ""):
    """Upload a file through the form; return the upload page's response."""
    response = post(
        client, "/admin/upload", {"file": (io.BytesIO(data), name), "journey": journey},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert response.status_code == 302, response.get_data(as_text=True)
    return client.get(response.headers["Location"])


def upload_id(page) -> str:
    return re.search(r"/admin/upload/([A-Za-z0-9_-]{20,})/", page.get_data(as_text=True)).group(1)


def stored(settings, page) -> dict:
    result = imports_job.UploadStore(settings.instance_path).result(upload_id(page), "preview")
    return result.to_json()


def count(session, model) -> int:
    session.expire_all()
    return session.exec(select(func.count()).select_from(model)).one()


def comparable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("dry_run", "batch_id")}


def test_the_upload_gives_the_same_errors_as_nudger_import(console, cli, settings, tmp_path):
    path = tmp_path / "messy.csv"
    path.write_bytes(MESSY)
    by_cli = cli("import", str(path), "--dry-run", "--json")
    assert by_cli.exit_code == 1
    page = upload(console, MESSY)
    by_web = stored(settings, page)
    assert comparable(by_web) == comparable(json.loads(by_cli.output))
    assert len(by_web["errors"]) >= 5
    html = page.get_data(as_text=True)
    for error in by_web["errors"]:
        assert f"<td>{error['row']}</td><td>{error['field']}</td>" in html
    assert "Mars/Olympus" in html and "unknown time zone" in html
    assert "Enrol" not in re.sub(r"Enrolments|enrolled|enrolments", "", html)


def test_the_upload_accepts_what_nudger_import_accepts(console, cli, settings, session, tmp_path):
    path = tmp_path / "fixed.csv"
    path.write_bytes(FIXED)
    by_cli = cli("import", str(path), "--dry-run", "--json")
    assert by_cli.exit_code == 0, by_cli.output
    page = upload(console, FIXED)
    assert comparable(stored(settings, page)) == comparable(json.loads(by_cli.output))
    assert "Enrol 4 learners" in page.get_data(as_text=True)
    assert count(session, Person) == count(session, Enrolment) == 0  # a preview writes nothing


def test_enrol_commits_the_file_in_one_go_as_the_admin(console, settings, session):
    page = upload(console, FIXED)
    uid = upload_id(page)
    done = console.get(post(console, f"/admin/upload/{uid}/commit").headers["Location"])
    assert "Enrolled 4 learners" in done.get_data(as_text=True)
    assert count(session, Enrolment) == 4
    assert count(session, Person) == 5  # grace, the manager, came with the file
    batch = session.exec(select(ImportBatch)).one()
    assert (batch.actor, batch.filename, batch.enrolments_created) == (
        "admin@example.com", "learners.csv", 4,
    )  # fmt: skip
    audit = session.exec(select(AuditLog).where(AuditLog.action == "import")).one()
    assert audit.actor == "admin@example.com"
    assert not imports_job.UploadStore(settings.instance_path).csv_path(uid).exists()


def test_uploading_the_same_file_again_changes_nothing(console, session):
    uid = upload_id(upload(console, FIXED))
    post(console, f"/admin/upload/{uid}/commit")
    again = upload(console, FIXED).get_data(as_text=True)
    assert "there is nothing to change" in again
    assert count(session, Enrolment) == 4


def test_a_file_with_errors_cannot_be_enrolled(console, session):
    uid = upload_id(upload(console, MESSY))
    response = console.get(post(console, f"/admin/upload/{uid}/commit").headers["Location"])
    assert "can&#39;t be enrolled as it is" in response.get_data(as_text=True)
    assert count(session, Person) == count(session, Enrolment) == 0


def test_the_error_csv_has_the_bad_rows_with_an_error_column(console):
    uid = upload_id(upload(console, MESSY))
    response = console.get(f"/admin/upload/{uid}/errors.csv")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == "attachment; filename=learners-errors.csv"
    text = response.data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0][-1] == "error" and rows[0][0] == "E-mail"
    assert [r[0] for r in rows[1:]] == [
        "not-an-email", "carol@example.com", "dan@example.com", "'=HYPERLINK(\"http://evil\")",
    ]  # fmt: skip
    assert "unknown journey 'no-such-journey'" in rows[2][-1]
    assert "timezone: unknown time zone" in rows[3][-1]


def test_an_empty_file_is_refused_with_a_clear_message(console):
    response = post(console, "/admin/upload", {"file": (io.BytesIO(b""), "empty.csv")},
                    content_type="multipart/form-data")  # fmt: skip
    page = console.get(response.headers["Location"]).get_data(as_text=True)
    assert "empty.csv is empty" in page


def test_discarding_an_upload_deletes_the_file(console, settings):
    uid = upload_id(upload(console, MESSY))
    store = imports_job.UploadStore(settings.instance_path)
    assert store.csv_path(uid).exists()
    post(console, f"/admin/upload/{uid}/discard")
    assert not store.csv_path(uid).exists()
    assert console.get(f"/admin/upload/{uid}").status_code == 404


def big_file(n: int) -> bytes:
    lines = ["email,name,journey,start_date"]
    lines += [f"learner{i}@example.com,Learner {i},giving-feedback,2030-03-04" for i in range(n)]
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.fixture
def worker(settings, monkeypatch):
    """Run queued jobs in this process, as `nudger worker --burst` would, on the test setup."""
    from workers import jobs

    monkeypatch.setenv("NUDGER_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("NUDGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NUDGER_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("NUDGER_REDIS_URL", settings.redis_url)
    jobs.runtime.cache_clear()

    def burst() -> None:
        q = queue(settings, DEFAULT_QUEUE)
        SimpleWorker([q], connection=q.connection).work(burst=True)

    yield burst
    jobs.runtime.cache_clear()


def test_a_big_file_is_checked_and_enrolled_by_a_job_with_progress(
    console, settings, session, worker, monkeypatch
):
    monkeypatch.setattr(imports_job, "INLINE_MAX_ROWS", 20)
    page = upload(console, big_file(60))
    uid = upload_id(page)
    html = page.get_data(as_text=True)
    assert '<progress id="upload-progress"' in html and "Waiting for a worker" in html
    assert f'data-poll="/admin/upload/{uid}/status.json"' in html
    assert '<meta http-equiv="refresh"' in html  # the page works without JavaScript
    assert console.get(f"/admin/upload/{uid}/status.json").json["running"] is True
    worker()
    status = console.get(f"/admin/upload/{uid}/status.json").json
    assert (status["running"], status["state"], status["progress"]) == (False, "checked", 1.0)
    assert "Enrol 60 learners" in console.get(f"/admin/upload/{uid}").get_data(as_text=True)
    post(console, f"/admin/upload/{uid}/commit")
    assert console.get(f"/admin/upload/{uid}/status.json").json["state"] == "committing"
    assert count(session, Enrolment) == 0
    worker()
    done = console.get(f"/admin/upload/{uid}").get_data(as_text=True)
    assert "Enrolled 60 learners" in done
    assert count(session, Enrolment) == 60


def test_a_job_that_died_shows_that_nothing_was_written(console, settings, monkeypatch):
    monkeypatch.setattr(imports_job, "INLINE_MAX_ROWS", 20)
    uid = upload_id(upload(console, big_file(30)))
    queue(settings, DEFAULT_QUEUE).empty()  # the job is lost, as if Redis were flushed
    page = console.get(f"/admin/upload/{uid}").get_data(as_text=True)
    assert "The import did not finish" in page
    assert "stopped before it finished; nothing was written" in page
    assert "Check the file again" in page


def test_a_nul_byte_is_a_row_error_in_the_preview_and_the_file_cannot_be_enrolled(
    console, settings, session
):
    data = FIXED.replace(b"Bob;Smith", b"Bob\x00;Smith")
    page = upload(console, data)
    [error] = stored(settings, page)["errors"]
    assert (error["row"], error["field"]) == (3, "first_name")
    assert "control character (U+0000)" in page.get_data(as_text=True)
    uid = upload_id(page)
    response = console.get(post(console, f"/admin/upload/{uid}/commit").headers["Location"])
    assert "can&#39;t be enrolled as it is" in response.get_data(as_text=True)
    assert count(session, Person) == count(session, Enrolment) == 0


def test_an_import_that_fails_names_no_internal_error(console, settings, engine, monkeypatch):
    from sqlalchemy.exc import DataError

    def refused(*args, **kwargs):
        raise DataError("INSERT INTO person (name) VALUES (%(name)s)", {"name": "Ada"}, None)

    uid = upload_id(upload(console, FIXED))
    monkeypatch.setattr(imports_job, "import_roster", refused)
    with pytest.raises(DataError):
        imports_job.run_upload(
            settings, engine, imports_job.UploadStore(settings.instance_path),
            uid, False, utcnow(),
        )  # fmt: skip
    page = console.get(f"/admin/upload/{uid}").get_data(as_text=True)
    assert "The import stopped unexpectedly; nothing was written." in page
    assert "dataerror" not in page.lower() and "insert" not in page.lower()
