"""Webhooks end to end: a learner's press reaches a loopback receiver, signed; retries, SSRF."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import httpx
import pytest
from rq import SimpleWorker
from sqlmodel import select
from standardwebhooks.webhooks import Webhook

from nudger import events, tokens, webhooks
from nudger.db import utcnow
from nudger.models import (
    AuditLog,
    CapturedMail,
    Event,
    Outbox,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from nudger.outbox.sending import send_batch
from nudger.queue import DEFAULT_QUEUE, queue, redis_connection
from nudger.tick.run import tick
from nudger.webhooks import delivery, safety
from tests.adminkit import admin_app, make_admin, sign_in
from tests.pagekit import SEND, csrf_token, learner_with_first_step, live_server
from tests.webhooks.kit import RECEIVER_PORT, receiver

URL = f"http://127.0.0.1:{RECEIVER_PORT}/hooks"


@pytest.fixture
def allowed(settings, monkeypatch, tmp_path, database_url):
    """Loopback receivers allowed; the worker's jobs read the same settings from the env."""
    from workers import jobs

    env = {
        "NUDGER_INSTANCE_PATH": str(tmp_path),
        "NUDGER_DATABASE_URL": database_url,
        "NUDGER_REDIS_URL": settings.redis_url,
        "NUDGER_SECRET_KEY": settings.secret_key,
        "NUDGER_BASE_URL": settings.base_url,
        "NUDGER_WEBHOOK_ALLOW_PRIVATE": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    jobs.runtime.cache_clear()
    yield dataclasses.replace(settings, webhook_allow_private=True)
    jobs.runtime.cache_clear()


def verified(got, secret: str) -> list[dict]:
    """Return the payloads a receiver got, each checked with the standardwebhooks library."""
    hook = Webhook(secret)
    return [hook.verify(body, headers) for headers, body in got.requests]


def test_a_press_on_done_reaches_the_receiver_signed_within_seconds(session, allowed, now):
    settings = allowed
    _person, enrolment, es = learner_with_first_step(session, settings, now)
    _, secret = webhooks.add_endpoint(
        session, URL, [events.STEP_COMPLETED], now, allow_private=True
    )
    clicked = now + SEND + timedelta(hours=1)
    with receiver() as got, live_server(settings, clicked) as (base, _app):
        link = tokens.url(dataclasses.replace(settings, base_url=base), "done", es.id, clicked)
        with httpx.Client() as browser:
            page = browser.get(link)
            pressed = time.monotonic()
            answer = browser.post(link, data={"csrf_token": csrf_token(page.text)})
        assert answer.status_code == 200
        # The view enqueued a delivery run; the real worker code runs it.
        redis = redis_connection(settings)
        SimpleWorker([queue(settings, DEFAULT_QUEUE)], connection=redis).work(burst=True)
        assert got.arrived.wait(10)
        took = time.monotonic() - pressed
    [payload] = verified(got, secret)
    assert payload["type"] == "step.completed"
    assert payload["data"]["enrolment_step_id"] == es.id
    assert payload["data"]["enrolment_id"] == enrolment.id
    assert took < 5, f"{took:.1f}s from the press to the receiver"
    headers = got.requests[0][0]
    assert headers["webhook-id"] == webhooks.message_id(payload_event_id(session), 1)


def payload_event_id(session) -> int:
    return session.exec(select(WebhookDelivery.event_id)).one()


def test_a_receiver_that_is_down_gets_the_event_later_once(session, allowed, now):
    settings, engine = allowed, session.get_bind()
    _, secret = webhooks.add_endpoint(session, URL, list(events.TYPES), now, allow_private=True)
    events.record(session, events.EMAIL_BOUNCED, {"person_id": 7}, now=now)
    session.commit()

    counts = delivery.run(engine, settings, now)  # nobody listens on the port yet
    assert counts == {"dispatched": 1, "delivered": 0, "retrying": 1, "failed": 0}
    [row] = session.exec(select(WebhookDelivery)).all()
    session.refresh(row)
    assert row.next_attempt_at == now + timedelta(seconds=5)

    with receiver() as got:
        assert delivery.run(engine, settings, now + timedelta(seconds=2))["delivered"] == 0
        later = now + timedelta(seconds=6)
        assert delivery.run(engine, settings, later)["delivered"] == 1
        for minutes in (1, 10, 60):  # later runs, and the tick's, send nothing again
            delivery.run(engine, settings, later + timedelta(minutes=minutes))
    [payload] = verified(got, secret)
    assert payload == {
        "type": "email.bounced",
        "timestamp": now.isoformat(),
        "data": {"person_id": 7},
    }
    session.expire_all()
    attempts = session.exec(select(WebhookAttempt).order_by(WebhookAttempt.id)).all()
    assert [(a.attempt, a.status) for a in attempts] == [(1, None), (2, 204)]
    assert session.get(WebhookEndpoint, 1).failing_since is None


def test_two_runs_at_once_claim_a_delivery_once(session, allowed, now):
    webhooks.add_endpoint(session, URL, list(events.TYPES), now, allow_private=True)
    events.record(session, events.EMAIL_BOUNCED, {"person_id": 1}, now=now)
    session.commit()
    webhooks.dispatch(session, allowed, now)
    [row_id] = delivery.due(session, now)
    assert delivery.claim(session, row_id, now)
    assert not delivery.claim(session, row_id, now)  # the second run skips it
    # A run that died leaves a lease that runs out: then the row is taken again.
    assert delivery.claim(session, row_id, now + delivery.LEASE + timedelta(seconds=1))


def test_private_addresses_are_refused_unless_allowed(session, settings, now):
    assert not settings.webhook_allow_private
    for host in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "[::1]", "localhost"):
        answer = safety.post(f"http://{host}:{RECEIVER_PORT}/", b"{}", {}, allow_private=False)
        assert answer.status is None and "private, loopback or link-local" in answer.error, host
    for url in (URL, "http://localhost/x", "https://[fe80::1]/x", "http://192.168.0.10/x"):
        with pytest.raises(webhooks.BadEndpoint, match="NUDGER_WEBHOOK_ALLOW_PRIVATE"):
            webhooks.add_endpoint(session, url, [events.STEP_SENT], now)
    with receiver() as got:
        # Added while its name pointed elsewhere (say): checked again on every delivery.
        webhooks.add_endpoint(session, URL, list(events.TYPES), now, allow_private=True)
        events.record(session, events.EMAIL_BOUNCED, {"person_id": 1}, now=now)
        session.commit()
        delivery.run(session.get_bind(), settings, now)
    assert got.requests == []  # nothing reached the loopback receiver
    attempt = session.exec(select(WebhookAttempt)).one()
    assert "NUDGER_WEBHOOK_ALLOW_PRIVATE" in attempt.error


def test_the_request_goes_to_the_checked_address_with_the_name_in_host(allowed):
    with receiver() as got:
        answer = safety.post(f"http://localhost:{RECEIVER_PORT}/x", b"{}", {}, allow_private=True)
    assert answer.ok
    assert got.requests[0][0]["host"] == f"localhost:{RECEIVER_PORT}"


def test_an_endpoint_failing_for_a_day_is_disabled_and_admins_told(session, allowed, now):
    settings, engine = allowed, session.get_bind()
    make_admin(session, now)
    endpoint, _ = webhooks.add_endpoint(session, URL, list(events.TYPES), now, allow_private=True)
    with receiver(status=500) as got:
        when = now
        for i in range(3):
            events.record(session, events.EMAIL_BOUNCED, {"person_id": i}, now=when)
            session.commit()
            delivery.run(engine, settings, when)
            when += timedelta(hours=13)  # 0 h, 13 h, 26 h: failing all along
    assert len(got.requests) >= 3
    session.expire_all()
    endpoint = session.get(WebhookEndpoint, endpoint.id)
    assert not endpoint.enabled and "failed for 24 hours" in endpoint.disabled_reason
    notice = session.exec(select(Outbox).where(Outbox.kind == "webhook-disabled")).one()
    assert notice.to_email == "admin@example.com"
    send_batch(engine, settings, [notice.id])
    mail = session.exec(select(CapturedMail)).one()
    assert mail.subject == f"Webhook endpoint disabled: {URL}"
    text = message_from_bytes(mail.raw, policy=default_policy).get_body(("plain",)).get_content()
    assert "every delivery failed for 24 hours" in text and "nudger webhooks enable 1" in text
    assert session.exec(select(AuditLog).where(AuditLog.action == "webhook.disabled")).one()
    client = admin_app(settings, when).test_client()
    sign_in(client)
    for page in ("/admin/", "/admin/webhooks"):
        html = client.get(page).get_data(as_text=True)
        assert "disabled" in html and URL in html, page  # the console's banner
    # Disabled: nothing more is sent until it is enabled again.
    assert delivery.due(session, when + timedelta(days=2)) == []
    webhooks.enable_endpoint(session, endpoint.id, when)
    assert delivery.due(session, when + timedelta(days=2)) != []


def test_retries_back_off_then_give_up(session, allowed, now):
    settings, engine = allowed, session.get_bind()
    webhooks.add_endpoint(session, URL, list(events.TYPES), now, allow_private=True)
    events.record(session, events.EMAIL_BOUNCED, {"person_id": 1}, now=now)
    session.commit()
    when, gaps = now, []
    with receiver(status=503):
        for _ in range(delivery.MAX_ATTEMPTS):
            delivery.run(engine, settings, when)
            row = session.exec(select(WebhookDelivery)).one()
            session.refresh(row)
            gaps.append(row.next_attempt_at - when)
            when = row.next_attempt_at
    assert row.state == "failed" and row.attempts == delivery.MAX_ATTEMPTS
    assert gaps[:-1] == list(delivery.SCHEDULE)
    assert timedelta(hours=24) < sum(delivery.SCHEDULE, timedelta()) < timedelta(hours=30)


def test_bad_endpoints_are_refused_with_reasons(session, now):
    with pytest.raises(webhooks.BadEndpoint, match="http"):
        webhooks.add_endpoint(session, "ftp://example.com/x", ["step.sent"], now)
    with pytest.raises(webhooks.BadEndpoint, match=r"unknown event type .step\.done."):
        webhooks.parse_types("step.sent,step.done")
    assert session.exec(select(WebhookEndpoint)).all() == []
    assert json.loads(json.dumps(webhooks.parse_types("*"))) == list(events.TYPES)


def test_with_redis_down_the_clocks_tick_sends_them(session, allowed):
    settings, now = allowed, utcnow()  # the worker's job runs at the real time
    down = dataclasses.replace(settings, redis_url="redis://127.0.0.1:2899/0")  # nobody there
    _, secret = webhooks.add_endpoint(session, URL, [events.EMAIL_BOUNCED], now, allow_private=True)
    events.record(session, events.EMAIL_BOUNCED, {"person_id": 5}, now=now)
    session.commit()
    assert webhooks.kick_if_subscribed(session, down) is False  # logged, not raised

    counts = tick(session, settings, now)  # the next minute's tick, Redis back
    assert counts["webhooks"] == 1
    with receiver() as got:
        redis = redis_connection(settings)
        SimpleWorker([queue(settings, DEFAULT_QUEUE)], connection=redis).work(burst=True)
        assert got.arrived.wait(10)
    [payload] = verified(got, secret)
    assert payload["data"] == {"person_id": 5}


def test_a_delivery_that_cannot_be_built_backs_off_like_a_failure(session, allowed, now):
    endpoint, _ = webhooks.add_endpoint(session, URL, list(events.TYPES), now, allow_private=True)
    endpoint.secret = "whsec_"  # broken by hand in the database: nothing to sign with
    session.add(endpoint)
    events.record(session, events.EMAIL_BOUNCED, {"person_id": 1}, now=now)
    session.commit()
    counts = delivery.run(session.get_bind(), allowed, now)
    assert counts["retrying"] == 1
    attempt = session.exec(select(WebhookAttempt)).one()
    assert attempt.error == "could not build the request: EmptyWebhookSecretError"


def test_with_no_endpoint_and_no_lrs_events_are_done_with_and_nothing_is_delivered(
    session, settings, now
):
    for n in range(5):
        events.record(session, events.STEP_SENT, {"n": n}, now=now)
    session.commit()
    assert webhooks.dispatch(session, settings, now) == 0
    session.expire_all()
    assert session.exec(select(Event.dispatched)).all() == [True] * 5
    assert session.exec(select(WebhookDelivery)).all() == []
    # an endpoint added later hears what happens from then on, not these
    webhooks.add_endpoint(session, "https://hr.example.com/hook", ["step.sent"], now)
    events.record(session, events.STEP_SENT, {"n": 5}, now=now)
    session.commit()
    assert webhooks.dispatch(session, settings, now) == 1
