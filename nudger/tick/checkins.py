"""The tick's check-in phase: plan new enrolments' check-ins, send those due, remind once.

The rules live in `nudger.measure`; this phase runs them with the tick's plans,
counts and outbox writer, before step emails, so that a status-quo check-in
reaches the learner before the first step does.
"""

from __future__ import annotations

from collections import Counter

from nudger.measure.due import send_due_checkins, send_reminders
from nudger.measure.planning import plan_checkins
from nudger.tick.state import TickContext


def queue_checkins(ctx: TickContext) -> None:
    """Do the check-in work due at the tick's `now`."""
    country = ctx.settings.default_country
    counts = Counter(
        checkins_planned=plan_checkins(ctx.session, ctx.now, ctx.plan, country),
    )
    counts.update(send_due_checkins(ctx.session, ctx.now, ctx.plan, ctx.add_outboxes, country))
    counts["checkin_reminders"] += send_reminders(ctx.session, ctx.now, ctx.add_outboxes)
    # Only what happened: a quiet tick reports nothing about check-ins.
    ctx.counts.update(+counts)
