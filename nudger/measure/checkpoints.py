"""When each checkpoint of a journey falls, for one enrolment and one rater's zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from nudger.calendar import WorkCalendar, local_instant
from nudger.journeys.spec import (
    CHECKPOINT_OPEN_DAYS,
    BehaviourSpec,
    JourneySpec,
    MeasureSpec,
    checkpoint_order,
)
from nudger.models import Journey
from nudger.schedule import JourneyPlan


@dataclass(frozen=True)
class Measure:
    """What a journey measures: its behaviours, raters and checkpoints (None: nothing)."""

    behaviours: list[BehaviourSpec]
    raters: list[str]
    checkpoints: list[str]
    share_manager_ratings: bool
    due_after: int

    @classmethod
    def of(cls, journey: Journey) -> Measure | None:
        """Return what a stored journey measures, or None when it has no `measure:`."""
        spec = journey.spec or {}
        if not spec.get("measure"):
            return None
        parsed = JourneySpec.model_validate(spec)
        measure: MeasureSpec = parsed.measure  # type: ignore[assignment]
        return cls(
            behaviours=parsed.behaviours(),
            raters=list(measure.raters),
            checkpoints=measure.checkpoints(),
            share_manager_ratings=parsed.share_manager_ratings,
            due_after=parsed.schedule.due_after,
        )

    def behaviour_text(self) -> dict[str, str]:
        """Return each behaviour's wording by key."""
        return {b.key: b.text for b in self.behaviours}


def checkpoint_date(
    plan: JourneyPlan, cal: WorkCalendar, start: date, shift: int, checkpoint: str
) -> date:
    """Return the learner-local date of a checkpoint.

    start: the enrolment's first working day, on which step 1 goes out (the
    check-in goes with it, before the learner has done anything); end: the
    working day after the last step falls due; N: N working days after the end.
    """
    first = cal.add_working_days(start, shift)
    if checkpoint == "start":
        return first
    last_due = max(
        (
            cal.add_working_days(plan.send_date(cal, start, shift, s), s.due_after)
            for s in plan.steps
        ),
        default=first,
    )
    end = cal.add_working_days(last_due, 1)
    return end if checkpoint == "end" else cal.add_working_days(end, int(checkpoint))


def checkpoint_at(plan: JourneyPlan, day: date, tz: str) -> datetime:
    """Return when a check-in for `day` goes out: the journey's send time in the rater's zone."""
    return local_instant(day, plan.send_time, tz)


def closes_at(plan: JourneyPlan, cal: WorkCalendar, day: date, tz: str) -> datetime:
    """Return when a checkpoint opened on `day` stops taking answers."""
    return local_instant(cal.add_working_days(day, CHECKPOINT_OPEN_DAYS), plan.send_time, tz)


def remind_at(plan: JourneyPlan, cal: WorkCalendar, day: date, tz: str, due_after: int) -> datetime:
    """Return when an unanswered check-in sent on `day` gets its one reminder."""
    return local_instant(cal.add_working_days(day, max(due_after, 1)), plan.send_time, tz)


__all__ = ["Measure", "checkpoint_at", "checkpoint_date", "checkpoint_order", "closes_at"]
