"""The command line: exit codes, JSON output, errors a person can act on."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner

from nudger.cli import main
from nudger.db import utcnow
from nudger.summaries import describe_tick
from tests.factories import make_enrolment, make_journey, make_person
from tests.privacykit import cells_mentioning


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


def served_apps(monkeypatch) -> list:
    """Make `nudger web` build its app and return at once; collect the apps it would serve."""
    import werkzeug.serving

    class Server:
        def __init__(self, app) -> None:
            served.append(app)

        def serve_forever(self) -> None:
            pass

    served: list = []
    monkeypatch.setattr(werkzeug.serving, "make_server", lambda h, p, app, **kw: Server(app))
    return served


def test_nudger_web_captures_mail_when_none_is_set_and_says_so(run, monkeypatch):
    served = served_apps(monkeypatch)
    monkeypatch.delenv("NUDGER_SMTP_URL")

    result = run("web", "--port", "5055")

    assert "NUDGER_SMTP_URL is not set: mail is captured" in result.output
    assert "http://127.0.0.1:5055/outbox" in result.output
    assert served[0].extensions["nudger.settings"].captures_mail


def test_nudger_web_sends_mail_as_set(run, monkeypatch):
    served = served_apps(monkeypatch)
    monkeypatch.setenv("NUDGER_SMTP_URL", "smtp://mail.example.com")

    result = run("web")

    assert "captured" not in result.output
    assert served[0].test_client().get("/outbox").status_code == 404


def test_erase_shows_what_goes_and_asks_before_erasing(run, session, now):
    from nudger.models import Person

    person = make_person(session, "zoe@example.com", "Zoë Quintero")
    make_enrolment(session, person, make_journey(session), now.date())

    declined = run("erase", "ZOE@example.com", input="n\n")
    assert declined.exit_code == 1
    assert "Erasing person 1 removes:" in declined.stderr
    assert "name: 'Zoë Quintero'" in declined.stderr
    assert "nothing erased" in declined.stderr
    session.expire_all()
    assert session.get(Person, person.id).email == "zoe@example.com"

    accepted = run("erase", "zoe@example.com", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "Erased person 1's personal data" in accepted.stdout
    assert "Quintero" not in accepted.stdout and "zoe@" not in accepted.stdout
    session.expire_all()
    erased = session.get(Person, person.id)
    assert erased.name == "" and erased.email.endswith("@invalid")


def test_erase_yes_json_prints_one_object_without_personal_data(run, session, now):
    person = make_person(session, "zoe@example.com", "Zoë Quintero")
    make_enrolment(session, person, make_journey(session), now.date())

    result = run("erase", "zoe@example.com", "--yes", "--json")

    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["erased"] is True and data["person_id"] == person.id
    assert data["placeholder"].endswith("@invalid") and data["enrolments"] == 1
    assert "zoe@" not in result.output and "Quintero" not in result.output
    session.expire_all()
    assert cells_mentioning(session, ("zoe@example.com", "quintero")) == []
    again = run("erase", data["placeholder"], "--yes", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["erased"] is False


def test_erase_of_an_unknown_address_is_rejected(run):
    result = run("erase", "nobody@example.com", "--yes")
    assert result.exit_code == 1
    assert "no person has the address 'nobody@example.com'; nothing erased" in result.output


def test_prune_reports_what_it_removed(run, session):
    from datetime import UTC, datetime

    from nudger.models import CapturedMail

    old = datetime(2026, 1, 5, tzinfo=UTC)
    session.add(CapturedMail(at=old, to_email="a@example.com", subject="Hi", raw=b"Subject: Hi"))
    session.commit()

    result = run("prune", "--now", "2026-12-01T00:00:00Z", "--json")

    assert result.exit_code == 0
    data = json.loads(result.output)
    assert (data["stored_copies"], data["subjects"], data["retain_mail_days"]) == (1, 0, 180)
    human = run("prune", "--now", "2026-12-01T00:00:00Z")
    assert "0 stored copies deleted" in human.output


def readme_commands() -> list[list[str]]:
    """Return the commands of the README's Command line table, as argument lists."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    commands = []
    for cell in re.findall(r"^\| `nudger ([^`]+)`", table, re.M):
        words = []  # up to the first argument or option
        for word in cell.replace("\\|", "|").split():
            if not re.fullmatch(r"[a-z|-]+", word):
                break
            words.append(word)
        commands += [[name, *words[1:]] for name in words[0].split("|")]
    return commands


def test_every_command_in_the_readme_takes_json():
    commands = readme_commands()
    assert ["report"] in commands and ["journeys", "check"] in commands and len(commands) >= 14
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "--json" in result.output, f"`nudger {' '.join(command)}` has no --json"


def test_report_json_prints_one_object(run, session, now):
    make_enrolment(session, make_person(session), make_journey(session), now.date())
    result = run("report", "--json")
    assert result.exit_code == 0, result.output
    (enrolment,) = json.loads(result.output)["enrolments"]
    assert enrolment["email"] == "ada@example.com" and len(enrolment["steps"]) == 3


def test_version_names_the_package_and_its_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"nudger {version('nudger')}\n"


@pytest.fixture
def jobs_env(run):
    """Send jobs read their settings from the environment `run` set, built afresh."""
    from workers import jobs

    jobs.runtime.cache_clear()
    yield
    jobs.runtime.cache_clear()


def test_worker_burst_says_how_many_jobs_ran_and_emails_went(run, session, jobs_env):
    journey = make_journey(session)
    for i in range(3):
        make_enrolment(session, make_person(session, f"p{i}@example.com"), journey, date.today())
    ticked = run("tick", "--now", f"{date.today()}T23:00:00Z", "--json")
    assert json.loads(ticked.output)["enqueued"] == 3
    result = run("worker", "--burst")
    assert result.exit_code == 0, result.output
    assert "Queues drained: 1 job done, 0 failed; emails: 3 sent, 0 failed." in result.output
    again = run("worker", "--burst", "--json")
    assert json.loads(again.output) == {"burst": True, "jobs": 0, "failed_jobs": 0, "emails": {}}


def test_tick_says_what_it_queued_and_tells_new_from_queued_again(run, session, now):
    journey = make_journey(session)
    make_enrolment(session, make_person(session), journey, now.date())
    make_enrolment(session, make_person(session, "bo@example.com", "Bo"), journey, now.date())
    first = run("tick", "--now", "2027-03-01T09:30:00Z", "--no-enqueue")
    assert first.output == (
        "Tick at 2027-03-01 09:30 UTC: 2 new emails to send for 2 enrolments due: "
        "2 step emails (2 steps).\nNothing queued (--no-enqueue).\n"
    )
    # Their rows wait without a job; a later tick queues them again, and nothing new.
    second = run("tick", "--now", "2027-03-01T09:40:00Z")
    assert second.output == (
        "Tick at 2027-03-01 09:40 UTC: no new email (0 enrolments due).\n"
        "Queued for sending: 0 new, 2 again (earlier emails left without a job).\n"
    )
    assert run("tick", "--now", "2027-03-01T09:41:00Z").output.endswith("Nothing to queue.\n")


def test_describe_tick_names_each_kind_and_emails_taken_back_from_a_stopped_worker(now):
    counts = {"digest": 1, "enqueued": 5, "enrolments": 3, "escalations": 1, "reenqueued": 2,
              "reminder": 1, "requeued": 1, "step": 1, "steps": 2}  # fmt: skip
    assert describe_tick(now, counts, enqueued=True) == (
        "Tick at 2027-03-01 07:00 UTC: 3 new emails to send for 3 enrolments due: "
        "1 step email (2 steps), 1 digest email, 1 reminder email; 1 overdue step escalated "
        "to managers.\nQueued for sending: 3 new, 2 again (earlier emails left without a job, "
        "1 email taken back from a worker that stopped sending)."
    )


def test_report_table_has_a_header_and_keeps_its_columns_with_long_names(run, session, now):
    short, long = make_journey(session, "a"), make_journey(session, "x" * 45)
    make_enrolment(session, make_person(session), short, now.date())
    make_enrolment(session, make_person(session, "b" * 40 + "@example.com"), long, now.date())
    lines = run("report").output.splitlines()
    assert lines[0].split() == ["EMAIL", "JOURNEY", "STATUS", "STEPS", "DONE"]
    columns = [lines[0].index(name) for name in ("JOURNEY", "STATUS", "STEPS", "DONE")]
    for line in lines[1:3]:  # every cell starts under its heading
        assert all(line[c - 1] == " " and line[c] != " " for c in columns), (line, lines[0])
    assert lines[1].startswith("ada@example.com ") and lines[1].endswith("[   ]  0/3")
    assert lines[2].split()[1] == "x" * 45


def test_report_of_an_unknown_journey_is_refused_and_names_the_known_ones(run, session, now):
    make_journey(session, "giving-feedback")
    make_journey(session, "coaching")
    result = run("report", "--journey", "nope")
    assert result.exit_code == 1
    assert "no journey 'nope'; the journeys are: coaching, giving-feedback" in result.output


def test_create_admin_refuses_a_short_password_before_asking_for_it_again(run):
    result = run(
        "create-admin", "boss@example.com", input="short\nlong enough pw\nlong enough pw\n"
    )
    assert result.exit_code == 0, result.output
    refused = result.output.index("at least 10 characters")
    assert refused < result.output.index("Repeat for confirmation")
    assert result.output.count("Password: ") == 2  # asked again at once, not after repeating
    assert result.output.endswith("Admin boss@example.com created.\n")


def test_create_admin_refuses_a_bad_address_before_asking_for_a_password(run):
    result = run("create-admin", "not-an-address", input="long enough pw\nlong enough pw\n")
    assert result.exit_code == 1
    assert "not a valid email address" in result.output and "Password" not in result.output


@pytest.mark.parametrize("command", ["demo", "web"])
def test_a_busy_port_is_a_usage_error_before_any_work(command, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "NUDGER_INSTANCE_PATH": str(tmp_path)}
        args = [sys.executable, "-m", "nudger.cli", command, "--port", str(port)]
        if command == "demo":
            args += ["--instance-path", str(tmp_path / "demo")]
        started = time.monotonic()
        result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert f"Choose another port with --port, e.g. `nudger {command} --port " in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "demo").exists()  # no set-up, no replay
    assert time.monotonic() - started < 30


def test_a_host_that_is_not_this_machine_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--host", "nowhere.invalid"])
    assert result.exit_code == 2
    assert "Invalid value for --host: 'nowhere.invalid' is not a name or address" in result.output
    assert "Traceback" not in result.output


def test_a_control_character_in_the_csv_is_a_row_error_naming_the_column(run, session, tmp_path):
    make_journey(session)
    session.commit()
    path = tmp_path / "nul.csv"
    path.write_bytes(b"email,name,journey\nada@example.com,Ada\x00 Lovelace,giving-feedback\n")

    result = run("import", str(path))

    assert result.exit_code == 1
    assert f"{path}: row 2: name: contains a control character (U+0000)" in result.output
    assert "unexpected error" not in result.output


def test_a_database_error_prints_no_statement_or_values(
    run, session, engine, monkeypatch, tmp_path
):
    from sqlalchemy import insert

    from nudger.models import Person

    make_person(session, "ada@example.com")
    session.commit()

    def refused(*args, **kwargs):
        row = dict(email="ada@example.com", name="Secret Name", timezone="UTC", country="GB",
                   created_at=utcnow(), updated_at=utcnow())  # fmt: skip
        with engine.begin() as conn:
            conn.execute(insert(Person.__table__), row)  # the email is taken: IntegrityError

    monkeypatch.setattr("nudger.roster.import_roster", refused)
    path = tmp_path / "learners.csv"
    path.write_text("email,name,journey\nada@example.com,Ada,giving-feedback\n")

    result = run("import", str(path))

    assert result.exit_code == 1
    assert result.output == (
        "Error: database error: the database refused the change (run with -v for details)\n"
    )


def test_a_setting_that_is_not_a_number_is_named_without_a_traceback(run, monkeypatch):
    monkeypatch.setenv("NUDGER_RETAIN_HISTORY_DAYS", "two years")
    result = run("prune", "--json")
    assert result.exit_code == 1
    assert "NUDGER_RETAIN_HISTORY_DAYS must be a whole number, not 'two years'" in result.output
    assert "unexpected error" not in result.output and "ValueError" not in result.output
