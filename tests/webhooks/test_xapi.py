"""xAPI statements of one learner's journey, stored by a real LRS (ralph) and read back.

ralph-malph pins versions of pydantic and others that do not fit beside the
project's, so it lives in its own virtual environment: `.venv-ralph/` in the
checkout (or the `ralph` named by NUDGER_TEST_RALPH), created here if missing.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from nudger import webhooks
from nudger.models import Enrolment, EnrolmentStep, Step, WebhookAttempt, WebhookDelivery
from nudger.progress import complete_step
from nudger.roster import import_roster
from nudger.tick.run import tick
from nudger.webhooks import delivery, xapi
from tests.factories import make_journey
from tests.webhooks.kit import LRS_PORT

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "nudger", "lrs-secret-for-tests"
STEPS = [
    {"key": "read", "day": 0, "kind": "read", "title": "Read the one-pager"},
    {"key": "watch", "day": 0, "kind": "video", "title": "Watch the talk"},
    {"key": "workshop", "day": 0, "kind": "workshop", "title": "Attend the workshop"},
    {"key": "try", "day": 0, "kind": "practice", "title": "Try it with a colleague"},
]


def ralph() -> Path:
    """Return the ralph command, making its virtual environment on first use."""
    given = os.environ.get("NUDGER_TEST_RALPH")
    if given:
        return Path(given)
    venv = ROOT / ".venv-ralph"
    command = venv / "bin" / "ralph"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q"]
        # requests: ralph's API imports it, its [lrs] extra does not name it.
        subprocess.run([*pip, "ralph-malph[cli,lrs]", "requests"], check=True, timeout=1200)
    return command


@pytest.fixture
def lrs(tmp_path):
    """Run `ralph runserver -b fs` on loopback with one basic-auth user; yield its xAPI URL."""
    command = ralph()
    env = {
        **os.environ,
        "RALPH_APP_DIR": str(tmp_path / "ralph"),
        "RALPH_AUTH_FILE": str(tmp_path / "ralph" / "auth.json"),
        "RALPH_RUNSERVER_BACKEND": "fs",
        "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(tmp_path / "ralph" / "data"),
    }
    (tmp_path / "ralph" / "data").mkdir(parents=True)
    # The auth file holds users with bcrypt hashes: ralph writes it itself.
    subprocess.run(
        [str(command), "auth", "-u", KEY, "-p", SECRET, "-s", "all",
         "-A", KEY, "http://nudger.test", "-w"],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    # What `ralph runserver -b fs` runs, in one process (its reloader would start a
    # second). ralph's file-system backend opens its one statements file with "create"
    # on every write, so only the first POST would succeed (later ones answer 500);
    # appending is what an LRS does, and the only change made to the server here.
    launcher = (
        "import uvicorn; from ralph.backends.data.base import BaseOperationType as T; "
        "from ralph.backends.lrs.fs import FSLRSBackend as B; "
        "B.default_operation_type = T.APPEND; "
        f"uvicorn.run('ralph.api:app', host='127.0.0.1', port={LRS_PORT}, log_level='warning')"
    )
    server = subprocess.Popen(
        [str(command.parent / "python"), "-c", launcher],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # stopped as a group, whatever it starts
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", LRS_PORT), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, "ralph runserver exited"
                assert time.monotonic() < deadline, "ralph did not start in 60 s"
                time.sleep(0.3)
        yield f"http://127.0.0.1:{LRS_PORT}/xAPI"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)


def read_back(url: str, registration: str) -> list[dict]:
    answer = httpx.get(
        f"{url}/statements",
        params={"registration": registration, "ascending": "true"},
        headers={"X-Experience-API-Version": "1.0.3"},
        auth=(KEY, SECRET),
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["statements"]


def test_one_learners_journey_reads_back_from_the_lrs_with_the_right_verbs(session, settings, lrs):
    settings = dataclasses.replace(settings, xapi_url=lrs, xapi_key=KEY, xapi_secret=SECRET)
    journey = make_journey(session, slug="feedback", steps=STEPS)
    monday = datetime(2027, 3, 1, 7, tzinfo=UTC)
    csv = "email,name,manager_email,journey,start_date,timezone,country\n"
    csv += "ada@example.com,Ada Lovelace,,feedback,2027-03-01,Europe/London,GB\n"
    assert import_roster(session, settings, io.BytesIO(csv.encode()), now=monday).ok
    tick(session, settings, datetime(2027, 3, 1, 9, tzinfo=UTC), enqueue=False)
    enrolment = session.exec(select(Enrolment)).one()
    rows = session.exec(
        select(EnrolmentStep.id, Step.key).join(Step, Step.id == EnrolmentStep.step_id)
    ).all()
    for hour, (es_id, _key) in enumerate(sorted(rows), start=10):
        complete_step(session, es_id, datetime(2027, 3, 1, hour, tzinfo=UTC))

    counts = delivery.run(session.get_bind(), settings, datetime(2027, 3, 1, 15, tzinfo=UTC))
    errors = session.exec(select(WebhookAttempt.status, WebhookAttempt.error)).all()
    # The tick fanned out `enrolment.created` already; the presses made four more.
    assert counts == {"dispatched": 4, "delivered": 5, "retrying": 0, "failed": 0}, errors
    # Sent again (a redelivery): the LRS keeps one copy, and the row counts as delivered.
    first = session.exec(select(WebhookDelivery).order_by(WebhookDelivery.id)).first()
    webhooks.redeliver(session, first.id, datetime(2027, 3, 1, 16, tzinfo=UTC), "test")
    again = delivery.run(session.get_bind(), settings, datetime(2027, 3, 1, 16, tzinfo=UTC))
    assert again["delivered"] == 1

    registration = xapi.registration(settings, enrolment.id)
    stored = read_back(lrs, registration)
    verbs = [(s["verb"]["display"]["en-US"], s["object"]["id"].rsplit("/", 1)[-1]) for s in stored]
    assert sorted(verbs) == sorted(
        [
            ("registered", "feedback"),
            ("experienced", "read"),
            ("experienced", "watch"),
            ("attended", "workshop"),
            ("completed", "try"),
        ]
    )
    for s in stored:
        assert s["actor"]["account"] == {
            "homePage": settings.base_url,
            "name": f"person-{enrolment.person_id}",
        }
        assert "ada" not in str(s["actor"])  # a stable id, never the address
        assert s["context"]["registration"] == registration
        assert s["verb"]["id"].startswith("http://adlnet.gov/expapi/verbs/")
    assert journey.slug in stored[0]["object"]["id"] or any(
        s["object"]["id"].endswith("/journeys/feedback") for s in stored
    )
    assert date(2027, 3, 1).isoformat() in stored[-1]["timestamp"]
