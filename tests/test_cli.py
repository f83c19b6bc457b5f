"""The command line: exit codes, JSON output, errors a person can act on."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nudger.cli import main
from tests.factories import make_enrolment, make_journey, make_person


@pytest.fixture
def run(settings, engine, monkeypatch):
    """Invoke `nudger` in-process with the test settings in its environment."""
    monkeypatch.setenv("NUDGER_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("NUDGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NUDGER_SECRET_KEY", settings.secret_key)
    if settings.redis_url:
        monkeypatch.setenv("NUDGER_REDIS_URL", settings.redis_url)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return invoke


def test_a_bad_journey_file_is_rejected_with_file_line_and_field(run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "slug: bad\ntitle: Bad\ngoal: [x]\nsteps:\n  - key: a\n    day: 0\n    kind: lecture\n"
        "    title: A\n"
    )
    result = run("journeys", "check", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:7: steps[0].kind" in result.output


def test_journeys_check_json_lists_problems(run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("slug: Bad Slug\n")
    result = run("journeys", "check", str(bad), "--json")
    assert result.exit_code == 1
    problems = json.loads(result.output)["problems"]
    assert any(p["field"] == "slug" and p["line"] == 1 for p in problems)


def test_sync_of_a_bad_file_writes_nothing(run, session, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(
        "slug: good\ntitle: Good\ngoal: [x]\nsteps:\n  - key: a\n    day: 0\n    kind: read\n"
        "    title: A\n"
    )
    (tmp_path / "bad.yaml").write_text("slug: bad\n")
    result = run("journeys", "sync", str(tmp_path))
    assert result.exit_code == 1
    from sqlmodel import select

    from nudger.models import Journey

    assert session.exec(select(Journey)).all() == []


def test_an_unknown_option_is_a_usage_error(run):
    result = run("tick", "--when", "tomorrow")
    assert result.exit_code == 2


def test_a_bad_now_is_a_usage_error(run):
    result = run("tick", "--now", "next tuesday")
    assert result.exit_code == 2
    assert "ISO 8601" in result.output


def test_tick_json_reports_counts_and_the_second_tick_does_nothing(run, session, now):
    journey = make_journey(session)
    make_enrolment(session, make_person(session), journey, now.date())
    first = json.loads(
        run("tick", "--now", "2027-03-01T09:30:00Z", "--no-enqueue", "--json").output
    )
    assert first["step"] == 1
    second = json.loads(
        run("tick", "--now", "2027-03-01T09:30:00Z", "--no-enqueue", "--json").output
    )
    assert second.get("step", 0) == 0


def test_withdraw_names_the_journey_when_a_person_has_several(run, session, now):
    person = make_person(session)
    make_enrolment(session, person, make_journey(session, "one"), now.date())
    make_enrolment(session, person, make_journey(session, "two"), now.date())
    result = run("withdraw", "ada@example.com")
    assert result.exit_code == 1
    assert "several journeys (one, two)" in result.output
    ok = run("withdraw", "ada@example.com", "--journey", "two", "--json")
    assert ok.exit_code == 0
    assert json.loads(ok.output) == {
        "email": "ada@example.com",
        "changed": True,
        "status": "withdrawn",
    }


def test_withdraw_of_an_unknown_person_is_rejected(run):
    result = run("withdraw", "nobody@example.com")
    assert result.exit_code == 1
    assert "no enrolment for nobody@example.com" in result.output


def test_create_admin_reads_the_password_from_stdin(run):
    result = run(
        "create-admin", "Boss@Example.com", "--password-stdin", "--json", input="a long password\n"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"email": "boss@example.com", "created": True}
    short = run("create-admin", "boss@example.com", "--password-stdin", input="short\n")
    assert short.exit_code == 1
    assert "at least 10 characters" in short.output


def test_report_csv_has_a_line_per_step(run, session, now):
    journey = make_journey(session)
    make_enrolment(session, make_person(session), journey, now.date())
    result = run("report", "--format", "csv")
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("email,journey,enrolment_status,step,status")
    assert len(lines) == 1 + 3
    assert all(",scheduled," in line for line in lines[1:])


def test_a_database_that_is_not_initialised_gets_a_hint_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("NUDGER_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("NUDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = CliRunner().invoke(main, ["report"])
    assert result.exit_code == 1
    assert "nudger init" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["worker", "clock"])
def test_worker_and_clock_refuse_to_start_without_a_mail_setting(run, monkeypatch, command):
    monkeypatch.delenv("NUDGER_SMTP_URL")
    result = CliRunner().invoke(main, [command, "--burst"] if command == "worker" else [command])
    assert result.exit_code == 1
    assert "NUDGER_SMTP_URL is not set" in result.output
    assert "Traceback" not in result.output


def test_nudger_web_captures_mail_when_none_is_set_and_says_so(run, monkeypatch):
    import flask

    served = []
    monkeypatch.setattr(flask.Flask, "run", lambda app, **kw: served.append(app))
    monkeypatch.delenv("NUDGER_SMTP_URL")

    result = run("web", "--port", "5055")

    assert "NUDGER_SMTP_URL is not set: mail is captured" in result.output
    assert "http://127.0.0.1:5055/outbox" in result.output
    assert served[0].extensions["nudger.settings"].captures_mail


def test_nudger_web_sends_mail_as_set(run, monkeypatch):
    import flask

    served = []
    monkeypatch.setattr(flask.Flask, "run", lambda app, **kw: served.append(app))
    monkeypatch.setenv("NUDGER_SMTP_URL", "smtp://mail.example.com")

    result = run("web")

    assert "captured" not in result.output
    assert served[0].test_client().get("/outbox").status_code == 404
