"""Decide, enrolment by enrolment, what a journey edit means for each live learner.

Every decision follows the policy in `nudger.enrolments.journey_edits`; the
counts go into the edit's summary (`JourneyChange`), and the writes it needs
are left on the summary for `apply_sync`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlmodel import Session, select

from nudger.calendar import local_date, local_instant
from nudger.enrolments.edit_summary import CHUNK, LIVE, JourneyChange
from nudger.models import Enrolment, EnrolmentStep, Person
from nudger.schedule import JourneyPlan, PlanStep


class EditAssessor:
    """Decide, enrolment by enrolment, what an edit does to the people on the journey."""

    def __init__(
        self,
        change: JourneyChange,
        old_plan: JourneyPlan,
        new_plan: JourneyPlan,
        invite_keys: set[str],
        now: datetime,
        default_country: str,
    ) -> None:
        self.change, self.old_plan, self.new_plan = change, old_plan, new_plan
        self.invite_keys, self.now, self.default_country = invite_keys, now, default_country
        self.effects = {e.key: e for e in change.effects}
        self.new_steps = {s.key: s for s in new_plan.steps}
        self.positions = {s.key: s.position for s in new_plan.steps}
        self._sends: dict[tuple, datetime] = {}
        self.old_steps = {s.key: s for s in old_plan.steps}
        self.targets = [*change.added, *change.moved]

    def run(self, session: Session, journey_id: int, key_of: dict[int, str]) -> None:
        query = (
            select(
                Enrolment.id,
                Enrolment.status,
                Enrolment.start_date,
                Enrolment.shift_days,
                Enrolment.paused_at,
                Person.timezone,
                Person.country,
            )
            .join(Person, Person.id == Enrolment.person_id)
            .where(Enrolment.journey_id == journey_id, Enrolment.status.in_(LIVE))
            .order_by(Enrolment.id)
        )
        live = session.exec(query).all()
        self.change.live_enrolments = len(live)
        # Invites matter only for sent steps whose invite is ahead and which changed
        # or went: asked for in SQL, so the other rows load as bare (enrolment, step) pairs.
        watched = [
            i for i, key in key_of.items() if key in self.invite_keys or key in self.change.removed
        ]
        invite_columns = (
            EnrolmentStep.id,
            EnrolmentStep.enrolment_id,
            EnrolmentStep.step_id,
            EnrolmentStep.sent_at,
            EnrolmentStep.invite_start,
        )
        for start in range(0, len(live), CHUNK):
            chunk = live[start : start + CHUNK]
            ids = [e.id for e in chunk]
            have: dict[int, set[str]] = defaultdict(set)
            pairs = select(EnrolmentStep.enrolment_id, EnrolmentStep.step_id).where(
                EnrolmentStep.enrolment_id.in_(ids)
            )
            for enrolment_id, step_id in session.execute(pairs):
                have[enrolment_id].add(key_of[step_id])
            invites: dict[int, dict[str, tuple]] = defaultdict(dict)
            if watched:
                ahead = select(*invite_columns).where(
                    EnrolmentStep.enrolment_id.in_(ids),
                    EnrolmentStep.step_id.in_(watched),
                    EnrolmentStep.status == "sent",
                    EnrolmentStep.invite_start > self.now,
                )
                for r in session.execute(ahead):
                    invites[r.enrolment_id][key_of[r.step_id]] = r
            for e in chunk:
                self.assess(e, have[e.id], invites[e.id])

    def assess(self, e, mine: set[str], invites: dict[str, tuple]) -> None:
        """Decide for one enrolment, given the keys of its steps with a row.

        `invites` holds its sent steps, among those changed or removed, whose
        invite is still ahead.
        """
        plan, now, tz = self.new_plan, self.now, e.timezone
        cal = plan.country_calendar(e.country or self.default_country)
        shift = e.shift_days
        if e.status == "paused" and e.paused_at is not None:
            # As if resumed now: resuming moves pending steps by the pause so far.
            shift += plan.paused_days(cal, tz, e.start_date, shift, e.paused_at, now)
        positions = self.positions
        reached = max((positions[k] for k in mine if k in positions), default=-1)
        for key in self.targets:
            effect = self.effects[key]
            if key in mine:
                effect.kept += 1
                continue
            step = self.new_steps[key]
            if step.position < reached or self._send_at(cal, tz, e.start_date, shift, step) <= now:
                effect.skipped += 1
                self.change.skips.append((e.id, key))
            else:
                effect.scheduled += 1
        for key in self.change.removed:
            effect = self.effects[key]
            if key not in mine:
                effect.cancelled += 1
                continue
            effect.kept += 1
            if key in invites and e.status == "active":
                effect.invite_cancels += 1
                self.change.invite_cancels.append(invites[key].id)
        for key in self.change.reworded:
            if key in mine:
                self.effects[key].kept += 1
            else:
                self.effects[key].scheduled += 1
        for key in self.invite_keys:
            if key in invites:
                self._move_invite(e, invites[key], self.new_steps[key], tz)
        if self.change.schedule_changed:
            self._retime(e, mine, cal, shift)

    def _send_at(self, cal, tz: str, start, shift: int, step: PlanStep) -> datetime:
        # Cohorts share start dates, zones and countries: each answer serves many people.
        key = (cal, tz, start, shift, step.key)
        at = self._sends.get(key)
        if at is None:
            at = self._sends[key] = self.new_plan.send_at(cal, tz, start, shift, step)
        return at

    def _move_invite(self, e, row, step: PlanStep, tz: str) -> None:
        """Send a sent step's changed invite; a paused learner's goes out when they resume."""
        effect, notify = self.effects[step.key], e.status == "active"
        if step.minutes is None:
            if notify:
                effect.invite_cancels += 1
                self.change.invite_cancels.append(row.id)
            else:
                # Paused: the invite was cancelled at the pause; resuming must not restore it.
                self.change.invite_moves.append((row.id, None, False))
            return
        if step.at is not None:
            start = local_instant(step.at.date(), step.at.time(), tz)
        else:
            start = local_instant(local_date(row.sent_at, tz), self.new_plan.invite_time, tz)
        effect.invite_updates += notify
        self.change.invite_moves.append((row.id, start, notify))

    def _retime(self, e, mine: set[str], cal, shift: int) -> None:
        """Count whether a schedule change moves this enrolment's unsent steps."""
        old_cal = self.old_plan.country_calendar(e.country or self.default_country)
        old_shift = e.shift_days
        if e.status == "paused" and e.paused_at is not None:
            old_shift += self.old_plan.paused_days(
                old_cal, e.timezone, e.start_date, old_shift, e.paused_at, self.now
            )
        retimed = due_now = False
        for step in self.new_plan.steps:
            before = self.old_steps.get(step.key)
            if step.key in mine or step.key in self.targets or before is None:
                continue
            old_at = self.old_plan.send_at(old_cal, e.timezone, e.start_date, old_shift, before)
            new_at = self.new_plan.send_at(cal, e.timezone, e.start_date, shift, step)
            retimed |= old_at != new_at
            due_now |= new_at <= self.now < old_at
        self.change.retimed += retimed
        self.change.due_now += due_now
