"""The clock: run the tick once a minute, on the minute. Run exactly one."""

from __future__ import annotations

import logging
import time
from collections import Counter

from sqlmodel import Session

from nudger.config import Settings
from nudger.db import get_engine, utcnow
from nudger.tick.run import tick

log = logging.getLogger("nudger.clock")


def run_once(settings: Settings) -> dict[str, int]:
    """Tick at the current time."""
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        return tick(session, settings, utcnow())


def run_forever(settings: Settings, interval: float = 60.0, totals: Counter | None = None) -> None:
    """Tick every `interval` seconds until interrupted; a failed tick is logged and retried.

    Each tick's counts are added to `totals`, with `ticks` and `failed_ticks`.
    """
    totals = Counter() if totals is None else totals
    while True:
        try:
            counts = run_once(settings)
            totals.update(counts)
            totals["ticks"] += 1
            if any(counts.values()):
                log.info("tick: %s", counts)
        except Exception:
            # The next tick re-derives everything from the database, so keep going.
            totals["failed_ticks"] += 1
            log.exception("tick failed")
        time.sleep(interval - (time.time() % interval))
