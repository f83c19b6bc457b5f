"""`nudger webhooks` and the console's Webhooks page: secret shown once, log, redeliver."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner
from sqlmodel import select

from nudger import events, webhooks
from nudger.cli import main
from nudger.models import AuditLog, WebhookDelivery, WebhookEndpoint
from nudger.webhooks import delivery
from tests.adminkit import admin_app, make_admin, post, sign_in
from tests.webhooks.kit import RECEIVER_PORT, receiver

URL = f"http://127.0.0.1:{RECEIVER_PORT}/hooks"


def cli(settings, monkeypatch, *args: str):
    monkeypatch.setenv("NUDGER_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("NUDGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NUDGER_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("NUDGER_WEBHOOK_ALLOW_PRIVATE", "1")  # the receiver is on loopback
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_add_prints_the_secret_once_list_and_remove(settings, engine, session, monkeypatch):
    added = cli(settings, monkeypatch, "webhooks", "add", URL, "--events",
                "step.completed,escalation.raised", "--json")  # fmt: skip
    assert added.exit_code == 0, added.output
    data = json.loads(added.output)
    assert data["secret"].startswith("whsec_")
    assert data["events"] == ["step.completed", "escalation.raised"]

    listed = cli(settings, monkeypatch, "webhooks", "list", "--json")
    [row] = json.loads(listed.output)["webhooks"]
    assert row["url"] == URL and row["enabled"] and "secret" not in row
    assert data["secret"] not in listed.output
    human = cli(settings, monkeypatch, "webhooks", "list")
    assert URL in human.output and "whsec_" not in human.output

    bad = cli(settings, monkeypatch, "webhooks", "add", URL, "--events", "step.finished")
    assert bad.exit_code == 1 and "unknown event type 'step.finished'" in bad.output
    assert "Traceback" not in bad.output

    removed = cli(settings, monkeypatch, "webhooks", "remove", str(row["id"]), "--json")
    assert json.loads(removed.output) == {"removed": row["id"], "url": URL}
    assert cli(settings, monkeypatch, "webhooks", "remove", "99").exit_code == 1
    session.expire_all()
    assert session.exec(select(WebhookEndpoint)).all() == []
    actions = session.exec(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["webhook.add", "webhook.remove"]


def test_the_console_adds_shows_the_log_and_redelivers(session, settings, now):
    settings = settings.__class__(**{**settings.__dict__, "webhook_allow_private": True})
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    page = post(client, "/admin/webhooks", {"url": URL, "events": ["email.bounced"]})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    secret = re.search(r'<code class="secret">(whsec_[^<]+)</code>', html).group(1)
    again = client.get("/admin/webhooks").get_data(as_text=True)
    assert secret not in again  # shown once

    refused = post(client, "/admin/webhooks", {"url": "gopher://x", "events": ["email.bounced"]})
    assert refused.status_code == 400 and "nothing added" in refused.get_data(as_text=True)

    events.record(session, events.EMAIL_BOUNCED, {"person_id": 3}, now=now)
    session.commit()
    with receiver() as got:
        delivery.run(session.get_bind(), settings, now)
        log = client.get("/admin/webhooks").get_data(as_text=True)
        assert "email.bounced" in log and "204" in log and "Redeliver" in log
        row = session.exec(select(WebhookDelivery)).one()
        # A GET changes nothing; the button POSTs with the CSRF token, and is audited.
        assert client.post(f"/admin/webhooks/deliveries/{row.id}/redeliver").status_code == 400
        done = post(client, f"/admin/webhooks/deliveries/{row.id}/redeliver")
        assert done.status_code == 303
        delivery.run(session.get_bind(), settings, now)
    assert len(got.requests) == 2
    assert {h["webhook-id"] for h, _ in got.requests} == {row.message_id}
    audit = session.exec(select(AuditLog).where(AuditLog.action == "webhook.redeliver")).one()
    assert audit.actor == "admin@example.com"
    assert webhooks.list_endpoints(session)[0].secret == secret
