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


def send_batch(ids: list[int]) -> dict[str, int]:
    """Send a batch of outbox rows over one SMTP connection."""
    from nudger.outbox import send_batch as send

    settings, engine = runtime()
    return send(engine, settings, ids)
