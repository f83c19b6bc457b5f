"""The `nudger inbound` server as a process, on the test's database."""

from __future__ import annotations

import os

import pytest

from tests.inbound.kit import DOMAIN, free_port, with_inbound
from tests.test_serving import Command


@pytest.fixture
def inbound_settings(settings):
    return with_inbound(settings)


@pytest.fixture
def environment(inbound_settings, tmp_path):
    env = {
        **os.environ,
        "NUDGER_INSTANCE_PATH": str(tmp_path),
        "NUDGER_DATABASE_URL": inbound_settings.database_url,
        "NUDGER_SECRET_KEY": inbound_settings.secret_key,
        "NUDGER_INBOUND_DOMAIN": DOMAIN,
        "NUDGER_INBOUND_MAX_BYTES": "200000",
        "NUDGER_SMTP_URL": "outbox:",
        "PYTHONUNBUFFERED": "1",
    }
    if inbound_settings.redis_url:
        env["NUDGER_REDIS_URL"] = inbound_settings.redis_url
    else:
        env.pop("NUDGER_REDIS_URL", None)
    return env


@pytest.fixture
def inbound_server(engine, environment, tmp_path):
    """Start `nudger inbound` on a free port; yield the port; stop it with Ctrl-C."""
    port = free_port()
    cmd = Command(["inbound", "--port", str(port)], environment, tmp_path)
    try:
        cmd.wait_for("Receiving mail for")
        yield port
        assert cmd.stop(2) == 0, "".join(cmd.err)  # SIGINT: Ctrl-C
    finally:
        cmd.clean_up()
