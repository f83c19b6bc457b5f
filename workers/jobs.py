"""Thin RQ entry points: ids in, one domain call inside."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.engine import Engine

from nudger.config import Settings, load_settings
from nudger.db import get_engine


@lru_cache(maxsize=1)
def runtime() -> tuple[Settings, Engine]:
    """Return this work-horse's settings and engine, built on first use (after the fork)."""
    settings = load_settings()
    return settings, get_engine(settings.database_url)


def send_batch(ids: list[int], due_by: str | None = None) -> dict[str, int]:
    """Send a batch of outbox rows over one SMTP connection.

    `due_by` (ISO 8601) is the time the rows were enqueued for; rows that went
    back into backoff since then are left to a later job.
    """
    from datetime import datetime

    from nudger.outbox.sending import send_batch as send

    settings, engine = runtime()
    when = datetime.fromisoformat(due_by) if due_by else None
    return send(engine, settings, ids, due_by=when)


def warm_up() -> None:
    """Import and build what every send job needs, once, before the worker forks."""
    from nudger.outbox import sending

    sending.warm_up()


def import_csv(upload_id: str, dry_run: bool) -> dict:
    """Check (dry run) or commit a learner CSV uploaded in the admin console."""
    from nudger.db import utcnow
    from nudger.roster.uploads import UploadStore, run_upload

    settings, engine = runtime()
    store = UploadStore(settings.instance_path)
    return run_upload(settings, engine, store, upload_id, dry_run, utcnow())


def process_inbound(inbound_id: int) -> str | None:
    """Act on one stored inbound message (a reply, a bounce), once."""
    from sqlmodel import Session

    from nudger import webhooks
    from nudger.db import utcnow
    from nudger.inbound.processing import process

    settings, engine = runtime()
    with Session(engine, expire_on_commit=False) as session:
        outcome = process(session, settings, inbound_id, utcnow())
        if outcome:  # it may have completed steps or recorded a bounce: events to deliver
            webhooks.kick_if_subscribed(session, settings)
        return outcome


def deliver_webhooks() -> dict[str, int]:
    """Fan new events out to webhook endpoints and the LRS, then send what is due."""
    from nudger.db import utcnow
    from nudger.webhooks.delivery import run

    settings, engine = runtime()
    return run(engine, settings, utcnow())


def refresh_dashboard() -> str:
    """Compute the dashboard's figures and store them (the clock asks when they get old)."""
    from sqlmodel import Session

    from nudger.db import utcnow
    from nudger.insights.snapshots import refresh

    _settings, engine = runtime()
    with Session(engine, expire_on_commit=False) as session:
        return refresh(session, utcnow()).computed_at.isoformat()
