"""The clock: run the tick once a minute, on the minute. Run exactly one."""

from __future__ import annotations

import logging
import time
from collections import Counter

from sqlmodel import Session

from nudger.config import Settings
from nudger.db import get_engine, utcnow
from nudger.insights import snapshots
from nudger.tick.run import tick

log = logging.getLogger("nudger.clock")


def run_once(settings: Settings) -> dict[str, int]:
    """Tick at the current time; ask a worker for fresh dashboard figures when they get old."""
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        now = utcnow()
        counts = tick(session, settings, now)
        if snapshots.stale(session, now):
            counts["dashboard_refresh"] = int(request_refresh(settings))
        return counts


def request_refresh(settings: Settings) -> bool:
    """Enqueue the dashboard refresh unless one is waiting or running; False if Redis is down."""
    from rq.job import Job, JobStatus

    from nudger.queue import DEFAULT_QUEUE, queue, redis_connection

    try:
        conn = redis_connection(settings)
        try:
            status = Job.fetch(snapshots.REFRESH_JOB_ID, connection=conn).get_status()
        except Exception:  # no such job (never enqueued, or expired): enqueue one
            status = None
        if status in (JobStatus.QUEUED, JobStatus.STARTED):
            return False
        queue(settings, DEFAULT_QUEUE).enqueue_call(
            "workers.jobs.refresh_dashboard", job_id=snapshots.REFRESH_JOB_ID, result_ttl=60
        )
        return True
    except Exception:  # the page computes its own figures when none are fresh
        log.warning("could not ask for fresh dashboard figures", exc_info=True)
        return False


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
