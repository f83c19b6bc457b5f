"""/metrics: Prometheus text read back with prometheus-client's own parser."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlmodel import select

from nudger.models import (
    Event,
    InboundMessage,
    Outbox,
    Person,
    TickRun,
    WebhookDelivery,
    WebhookEndpoint,
)
from nudger.outbox import add
from tests.pagekit import SEND, app_for, learner_with_first_step

TOKEN = "metrics-secret-for-tests"


def _scrape(settings, now) -> dict[str, list]:
    client = app_for(dataclasses.replace(settings, metrics_token=TOKEN), now).test_client()
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    families = text_string_to_metric_families(answer.get_data(as_text=True))
    return {f.name: f.samples for f in families}


def test_metrics_are_404_unless_configured_and_401_without_the_token(settings, engine, now):
    assert app_for(settings, now).test_client().get("/metrics").status_code == 404
    client = app_for(dataclasses.replace(settings, metrics_token=TOKEN), now).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = client.get("/metrics", headers=headers)
        assert answer.status_code == 401 and "Bearer" in answer.headers["WWW-Authenticate"]


def test_metrics_read_emails_backlog_tick_and_queues(settings, engine, session, now):
    learner_with_first_step(session, settings, now)  # one step email, pending; one tick
    # The last was sent, and bounced later by mail (nudger.inbound marks it "bounced").
    for i, (state, error) in enumerate([("sent", None), ("failed", "550 no such user"),
                                        ("failed", "timed out"),
                                        ("bounced", "5.1.1 550 user unknown")]):  # fmt: skip
        (row,) = add(session, [{"kind": "reminder", "dedupe_key": f"r{i}",
                                "to_email": f"p{i}@example.com", "payload": {}}], now)  # fmt: skip
        session.execute(
            update(Outbox).where(Outbox.id == row.id).values(state=state, last_error=error)
        )
    session.commit()
    at = now + SEND + timedelta(minutes=5)
    samples = _scrape(settings, at)

    emails = {(s.labels["kind"], s.labels["outcome"]): s.value for s in samples["nudger_emails"]}
    assert emails == {("reminder", "sent"): 1, ("reminder", "bounced"): 2,
                      ("reminder", "failed"): 1}  # fmt: skip
    assert samples["nudger_outbox_backlog"][0].value == 1
    pending = session.exec(Outbox.__table__.select().where(Outbox.state == "pending")).one()
    age = (at - pending.next_attempt_at).total_seconds()
    assert samples["nudger_outbox_oldest_age_seconds"][0].value == age > 0
    last = session.exec(TickRun.__table__.select()).one()
    assert samples["nudger_tick_duration_seconds"][0].value == last.duration_ms / 1000
    since = samples["nudger_tick_seconds_since_last"][0].value
    assert since == (at - last.started_at).total_seconds()
    queues = {s.labels["queue"]: s.value for s in samples["nudger_queue_depth"]}
    assert queues == {"nudger-send": 0, "nudger-default": 0}  # the tick did not enqueue
    assert samples["nudger_redis_up"][0].value == 1
    assert samples["nudger_webhook_deliveries"] == []  # no endpoint, no delivery
    assert all(s.value >= 0 for s in samples["nudger_failed_jobs"])


def test_webhook_deliveries_are_counted_by_target_and_state(settings, engine, session, now):
    learner_with_first_step(session, settings, now)  # its step.sent event
    event = session.exec(select(Event)).first()
    hook = WebhookEndpoint(url="http://127.0.0.1:9/hook", secret="whsec_x", events=["step.sent"])
    session.add(hook)
    session.flush()
    for i, (target, state) in enumerate([("webhook", "delivered"), ("webhook", "delivered"),
                                         ("webhook", "failed"), ("xapi", "pending")]):  # fmt: skip
        session.add(WebhookDelivery(message_id=f"msg_{i}", event_id=event.id, target=target,
                                    state=state, endpoint_id=hook.id if target == "webhook"
                                    else None))  # fmt: skip
    session.commit()
    samples = _scrape(settings, now + SEND)
    found = {(s.labels["target"], s.labels["state"]): s.value
             for s in samples["nudger_webhook_deliveries"]}  # fmt: skip
    assert found == {("webhook", "delivered"): 2, ("webhook", "failed"): 1, ("xapi", "pending"): 1}


def test_a_clock_that_never_ticked_is_infinitely_late(settings, engine, now):
    samples = _scrape(settings, now)
    assert math.isinf(samples["nudger_tick_seconds_since_last"][0].value)
    assert samples["nudger_tick_duration_seconds"] == []
    assert samples["nudger_outbox_backlog"][0].value == 0


def test_inbound_mail_is_counted_by_kind_and_state_with_the_unreachable(
    settings, engine, session, now
):
    _, enrolment, _ = learner_with_first_step(session, settings, now)
    for i, (kind, state) in enumerate([("reply", "done"), ("bounce", "done"),
                                       ("bounce", "done"), ("", "received")]):  # fmt: skip
        session.add(InboundMessage(message_key=f"<m{i}@example.com>", kind=kind, state=state,
                                   raw=b"", received_at=now))  # fmt: skip
    learner = session.get(Person, enrolment.person_id)
    learner.undeliverable_at = now
    session.add(learner)
    session.commit()
    samples = _scrape(settings, now + SEND)
    found = {(s.labels["kind"], s.labels["state"]): s.value
             for s in samples["nudger_inbound_messages"]}  # fmt: skip
    assert found == {("reply", "done"): 1, ("bounce", "done"): 2, ("", "received"): 1}
    assert samples["nudger_undeliverable_people"][0].value == 1
