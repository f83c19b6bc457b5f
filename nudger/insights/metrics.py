"""Prometheus metrics, computed from the database and Redis when they are scraped.

Nothing is counted in the process: every figure is read at scrape time by a
custom collector, so any number of web processes (gunicorn workers) answer
the same, with no shared files (prometheus-client's multi-process mode is for
counters kept in memory, which this does not have).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, case, func
from sqlmodel import Session, select

from nudger.config import Settings
from nudger.insights.ledger import bounced, last_tick
from nudger.models import InboundMessage, Outbox, Person, WebhookDelivery


def email_outcomes(session: Session) -> Iterator[Metric]:
    """Emails by kind and outcome (sent, failed, bounced), as counters."""
    outcome = case(
        (Outbox.state == "sent", "sent"),
        (bounced(), "bounced"),
        (Outbox.state == "failed", "failed"),
        else_=None,
    )
    emails = CounterMetricFamily(
        "nudger_emails", "Emails by kind and outcome (failed: not bounced)",
        labels=["kind", "outcome"],
    )  # fmt: skip
    rows = session.exec(
        select(Outbox.kind, outcome, func.count())
        # "bounced": sent, then bounced by mail; leaving it out would make the counter fall.
        .where(Outbox.state.in_(["sent", "failed", "bounced"]))
        .group_by(Outbox.kind, outcome)
    )
    for kind, result, count in rows:
        emails.add_metric([kind, result], count)
    yield emails


def backlog(session: Session, now: datetime) -> Iterator[Metric]:
    """Emails waiting (pending or being sent) and the age of the oldest due one."""
    waiting, oldest = session.exec(
        select(func.count(), func.min(Outbox.next_attempt_at)).where(
            Outbox.state.in_(["pending", "sending"])
        )
    ).one()
    yield GaugeMetricFamily(
        "nudger_outbox_backlog", "Emails waiting to be sent (pending or sending)", value=waiting
    )
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    yield GaugeMetricFamily(
        "nudger_outbox_oldest_age_seconds",
        "How long the oldest waiting email has been due (0: none waiting)",
        value=age,
    )


def tick_figures(session: Session, now: datetime) -> Iterator[Metric]:
    """The last tick's duration and the seconds since it started (+Inf: never ticked)."""
    tick = last_tick(session)
    duration = GaugeMetricFamily("nudger_tick_duration_seconds", "How long the last tick took")
    since = GaugeMetricFamily(
        "nudger_tick_seconds_since_last", "Seconds since the last tick started (+Inf: never)"
    )
    if tick is None:
        since.add_metric([], math.inf)
    else:
        duration.add_metric([], tick.duration_ms / 1000)
        since.add_metric([], max(0.0, (now - tick.started_at).total_seconds()))
    yield duration
    yield since


def queue_figures(settings: Settings) -> Iterator[Metric]:
    """Jobs waiting and failed per RQ queue, and whether Redis answered."""
    depth = GaugeMetricFamily("nudger_queue_depth", "Jobs waiting per queue", labels=["queue"])
    failed = GaugeMetricFamily("nudger_failed_jobs", "Failed jobs per queue", labels=["queue"])
    up = 1
    try:
        from rq.registry import FailedJobRegistry

        from nudger.queue import QUEUES, queue

        for name in QUEUES:
            q = queue(settings, name)
            depth.add_metric([name], q.count)
            failed.add_metric([name], FailedJobRegistry(queue=q).count)
    except Exception:  # a scrape reports Redis down rather than failing
        up = 0
    yield depth
    yield failed
    yield GaugeMetricFamily("nudger_redis_up", "1 if Redis answered this scrape", value=up)


def webhook_deliveries(session: Session) -> Iterator[Metric]:
    """Webhook and xAPI deliveries by target and state (pending, sending, delivered, failed)."""
    family = GaugeMetricFamily(
        "nudger_webhook_deliveries", "Webhook and xAPI deliveries by target and state",
        labels=["target", "state"],
    )  # fmt: skip
    rows = session.exec(
        select(WebhookDelivery.target, WebhookDelivery.state, func.count()).group_by(
            WebhookDelivery.target, WebhookDelivery.state
        )
    )
    for target, state, count in rows:
        family.add_metric([target, state], count)
    yield family


def inbound_messages(session: Session) -> Iterator[Metric]:
    """Mail received (replies, bounces, auto-replies) by kind and state, and who is unreachable."""
    family = GaugeMetricFamily(
        "nudger_inbound_messages", "Inbound messages by kind (reply, bounce, auto-reply, "
        "unknown; empty until acted on) and state (received, done)", labels=["kind", "state"],
    )  # fmt: skip
    rows = session.exec(
        select(InboundMessage.kind, InboundMessage.state, func.count()).group_by(
            InboundMessage.kind, InboundMessage.state
        )
    )
    for kind, state, count in rows:
        family.add_metric([kind, state], count)
    yield family
    # inbound.listing.undeliverable_count says the same, but the features below insights
    # import insights (measure does), so it cannot be imported here without a circle.
    unreachable = session.scalar(
        select(func.count(Person.id)).where(Person.undeliverable_at.is_not(None))
    )
    yield GaugeMetricFamily(
        "nudger_undeliverable_people", "People whose address bounced: nothing is sent to them",
        value=unreachable or 0,
    )  # fmt: skip


class NudgerCollector(Collector):
    """Read every figure at scrape time (register it in a registry made for the scrape)."""

    def __init__(self, engine: Engine, settings: Settings, now: Callable[[], datetime]) -> None:
        self.engine, self.settings, self.now = engine, settings, now

    def collect(self) -> Iterator[Metric]:
        now = self.now()
        with Session(self.engine) as session:
            yield from email_outcomes(session)
            yield from backlog(session, now)
            yield from tick_figures(session, now)
            yield from webhook_deliveries(session)
            yield from inbound_messages(session)
        yield from queue_figures(self.settings)
