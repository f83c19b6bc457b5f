"""Long-running commands, run as a person runs them: Ctrl-C or SIGTERM stops them cleanly.

Each test starts the command as its own process group (as a shell does), waits
until it is up, signals it, and expects exit code 0, nothing alarming on
stderr, and no process of its own left: no child, and no embedded Redis.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func
from sqlmodel import select

from nudger.models import TickRun
from tests import processes
from tests.factories import make_enrolment, make_journey, make_person

EMBEDDED = not os.environ.get("NUDGER_TEST_REDIS_URL")
SIGNALS = [pytest.param(signal.SIGINT, id="ctrl-c"), pytest.param(signal.SIGTERM, id="sigterm")]
HANGUP = [pytest.param(signal.SIGHUP, id="terminal-closed")]


class Command:
    """A `nudger` command running in its own process group, its output collected as it comes."""

    def __init__(self, args: list[str], env: dict[str, str], folder: Path) -> None:
        self.folder = folder
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nudger.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """Return the first line of output holding `text`, once it has come."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.out + self.err:
                if text in line:
                    return line
            assert self.proc.poll() is None, f"it ended early:\n{''.join(self.err)}"
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout} s:\n{''.join(self.out + self.err)}")

    def ours(self) -> list[psutil.Process]:
        """Return the processes it started: its children, and Redis servers in its folder."""
        children = psutil.Process(self.proc.pid).children(recursive=True)
        return children + processes.redis_servers_under(self.folder)

    def stop(self, signum: int, timeout: float = 60) -> int:
        """Send `signum` the way a terminal (Ctrl-C: the group) or `kill` (the process) does."""
        if signum == signal.SIGINT:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)
        code = self.proc.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=5)
        return code

    def clean_up(self) -> None:
        """Whatever happened in the test, leave nothing running."""
        left = []
        if self.proc.poll() is None:
            left = [*self.ours(), psutil.Process(self.proc.pid)]
        processes.stop(left + processes.redis_servers_under(self.folder))


@pytest.fixture
def command(settings, engine, tmp_path):
    """Start `nudger ARGS...` on the test's database and instance folder."""
    env = {
        **os.environ,
        "NUDGER_INSTANCE_PATH": str(tmp_path),
        "NUDGER_DATABASE_URL": settings.database_url,
        "NUDGER_REDIS_URL": settings.redis_url,
        "NUDGER_SECRET_KEY": settings.secret_key,
        "NUDGER_SMTP_URL": "outbox:",
        "PYTHONUNBUFFERED": "1",
    }
    started: list[Command] = []

    def start(*args: str) -> Command:
        started.append(Command(list(args), env, tmp_path))
        return started[-1]

    yield start
    for cmd in started:
        cmd.clean_up()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_stopped_cleanly(cmd: Command, signum: int, started: list[psutil.Process]) -> None:
    code = cmd.stop(signum)
    err = "".join(cmd.err)
    assert code == 0, err
    for alarming in ("Traceback", "unexpected error", "Error:", "Aborted"):
        assert alarming not in err, err
    left = processes.alive(started + processes.redis_servers_under(cmd.folder))
    assert left == [], processes.describe(left)
    with pytest.raises(ProcessLookupError):  # nothing left in its process group either
        os.killpg(cmd.proc.pid, 0)


@pytest.mark.parametrize("signum", SIGNALS + HANGUP)
def test_web_stops_on_a_signal_and_leaves_nothing_running(command, signum):
    port = free_port()
    web = command("web", "--port", str(port), "--json")
    url = json.loads(web.wait_for('"url"'))["url"]
    assert url == f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{url}/healthz", timeout=30) as answer:  # uses Redis
        assert answer.status == 200
    started = web.ours()
    if EMBEDDED:
        assert any(p.name() == "redis-server" for p in started)
    assert_stopped_cleanly(web, signum, started)


@pytest.mark.parametrize("signum", SIGNALS + HANGUP)
def test_worker_stops_on_a_signal_says_what_it_did_and_leaves_nothing_running(command, signum):
    worker = command("worker", "--json")
    worker.wait_for("Listening on")
    started = worker.ours()
    if EMBEDDED:
        assert any(p.name() == "redis-server" for p in started)
    assert_stopped_cleanly(worker, signum, started)
    summary = json.loads("".join(worker.out))
    assert summary == {"burst": False, "jobs": 0, "failed_jobs": 0, "emails": {}}


def _monday_a_week_ago() -> date:
    today = date.today()
    return today - timedelta(days=7 + today.weekday())


@pytest.mark.parametrize("signum", SIGNALS + HANGUP)
def test_clock_stops_on_a_signal_and_leaves_nothing_running(command, session, signum):
    # A step already due, so that the first tick queues an email (and starts Redis).
    make_enrolment(session, make_person(session), make_journey(session), _monday_a_week_ago())
    clock = command("clock", "--json")
    clock.wait_for("Clock started")
    deadline = time.monotonic() + 60
    while not session.exec(select(func.count(TickRun.id))).one():
        assert time.monotonic() < deadline, "".join(clock.err)
        time.sleep(0.1)
    started = clock.ours()
    if EMBEDDED:
        assert any(p.name() == "redis-server" for p in started)
    assert_stopped_cleanly(clock, signum, started)
    summary = json.loads("".join(clock.out))
    assert summary["ticks"] == 1 and summary["enqueued"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS)
def test_demo_stops_on_a_signal_and_leaves_nothing_running(command, tmp_path, signum):
    port = free_port()
    demo = command("demo", "--port", str(port), "--instance-path", str(tmp_path / "demo"))
    demo.wait_for("Ctrl-C stops", timeout=300)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as answer:
        assert answer.status == 200
    started = demo.ours()
    assert any(p.name() == "redis-server" for p in started)
    assert_stopped_cleanly(demo, signum, started)
    assert "Stopping." in "".join(demo.out)


def test_ctrl_c_while_the_demo_sets_up_stops_it_cleanly(command, tmp_path):
    demo = command("demo", "--port", str(free_port()), "--instance-path", str(tmp_path / "d"))
    demo.wait_for("Setting up the demo")
    time.sleep(1)  # into the set-up's work
    assert_stopped_cleanly(demo, signal.SIGINT, demo.ours())


def test_a_stopping_worker_does_not_wait_a_minute_for_its_command_thread(settings):
    from nudger.queue import DEFAULT_QUEUE, queue
    from workers.worker import NudgerWorker

    q = queue(settings, DEFAULT_QUEUE)
    worker = NudgerWorker([q], connection=q.connection)
    worker.subscribe()
    # Unsubscribed, RQ's command thread sleeps for its whole poll (60 s) ...
    worker.pubsub.unsubscribe()
    deadline = time.monotonic() + 10
    while worker.pubsub.subscribed:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)
    # ... and stopping must not wait for it to wake up.
    started = time.monotonic()
    worker.unsubscribe()
    assert time.monotonic() - started < 5
