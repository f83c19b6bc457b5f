"""The sent-mail ledger's health rules."""

from datetime import UTC, datetime, timedelta

from nudger.insights.ledger import CLOCK_LATE, clock_late
from nudger.models import TickRun

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_the_clock_is_late_when_it_never_ticked():
    assert clock_late(None, NOW)


def test_the_clock_is_late_only_past_three_missed_minutes():
    on_time = TickRun(started_at=NOW - CLOCK_LATE)
    late = TickRun(started_at=NOW - CLOCK_LATE - timedelta(seconds=1))
    assert not clock_late(on_time, NOW)
    assert clock_late(late, NOW)
