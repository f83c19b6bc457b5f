"""How the cohort is doing, for the page after "Mark as done", without counting it every time.

Counting everyone on a journey costs the database time in proportion to the
cohort, on every click. The numbers are a nudge ("28 of the 40 people on
this journey have done this step"), not a ledger, so each process counts a
step's cohort at most once per `ttl` and adds the completions it sees in
between; completions made by other processes show up at the next count.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlmodel import Session

from nudger.progress import cohort_done

TTL = timedelta(seconds=30)


class CohortCounts:
    """Per-step (done, total) counts, recounted when older than `ttl`."""

    def __init__(self, ttl: timedelta = TTL) -> None:
        self.ttl = ttl
        self._counts: dict[int, tuple[datetime, int, int]] = {}
        self._lock = threading.Lock()

    def get(
        self, session: Session, step_id: int, journey_id: int, now: datetime, just_done: bool
    ) -> tuple[int, int]:
        """Return (people who did the step, people on the journey) as of `now`.

        `just_done` says the caller has just completed the step in `session`'s
        transaction: a fresh count includes it, a kept one gains it.
        """
        with self._lock:
            kept = self._counts.get(step_id)
            if kept is not None and kept[0] <= now < kept[0] + self.ttl:
                at, done, total = kept
                if just_done:
                    done = min(done + 1, total)
                    self._counts[step_id] = (at, done, total)
                return done, total
        done, total = cohort_done(session, step_id, journey_id)
        with self._lock:
            self._counts[step_id] = (now, done, total)
        return done, total
