"""Mail goes where someone chose: no process falls back to publishing it at /outbox."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from nudger import create_app
from nudger.config import ROOT, MailNotConfigured, load_settings, require_mail
from nudger.demo import demo_settings


def test_mail_is_not_captured_unless_someone_asks(monkeypatch, tmp_path):
    monkeypatch.delenv("NUDGER_SMTP_URL")
    settings = load_settings({"instance_path": tmp_path})

    assert settings.smtp_url == "" and not settings.captures_mail
    with pytest.raises(MailNotConfigured, match="NUDGER_SMTP_URL is not set"):
        require_mail(settings)
    assert create_app(settings).test_client().get("/outbox").status_code == 404


def test_an_explicit_outbox_setting_still_captures(monkeypatch, tmp_path):
    monkeypatch.setenv("NUDGER_SMTP_URL", "outbox:")
    settings = require_mail(load_settings({"instance_path": tmp_path}))
    assert settings.captures_mail


def test_the_demo_captures_mail_with_nothing_set(monkeypatch):
    monkeypatch.delenv("NUDGER_SMTP_URL")
    for name in ("NUDGER_INSTANCE_PATH", "NUDGER_DATABASE_URL", "NUDGER_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)  # demo_settings sets them for its process
    assert demo_settings("127.0.0.1", 5000).captures_mail
    assert os.environ["NUDGER_SMTP_URL"] == "outbox:"  # and for the jobs it runs


def gunicorn(tmp_path, **env: str) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NUDGER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "nudger.wsgi:app", "--bind", "127.0.0.1:0",
         "--workers", "1"],
        env={**base, "NUDGER_INSTANCE_PATH": str(tmp_path), **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_gunicorn_refuses_to_start_without_a_mail_setting(tmp_path):
    server = gunicorn(tmp_path)
    try:
        _out, err = server.communicate(timeout=60)
    finally:
        server.kill()
        server.wait()
    assert server.returncode != 0
    assert "NUDGER_SMTP_URL is not set" in err


def test_gunicorn_starts_with_a_mail_server_set(tmp_path):
    server = gunicorn(tmp_path, NUDGER_SMTP_URL="smtp://mail.example.com:25")
    try:
        time.sleep(3)
        assert server.poll() is None  # still serving
    finally:
        server.terminate()
        _out, err = server.communicate(timeout=30)
    assert "Booting worker" in err and "NUDGER_SMTP_URL" not in err
