"""Load validated journey files into the database, showing what changes first.

Editing a journey that people are on follows one policy (docs/live-edits.md),
for every live (active or paused) enrolment:

- a step already sent stays as it was, and is never sent again;
- a new or moved step that is still ahead is scheduled for people who have
  not reached it; for the others (its send time has passed, or they already
  have a later step) it is skipped: closed as cancelled, never sent late;
- a removed step that has not been sent is cancelled; one that was sent stays
  in the learner's record, and its invite, if still ahead, is cancelled;
- a reworded step reaches people who have not received it yet with the new
  wording; a sent step whose invite changed (time, length or title) gets an
  invite update;
- a schedule change (send time, days, holidays) re-times every step not yet
  sent; one whose new time has already passed goes out at the next tick.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import update
from sqlmodel import Session, select

from nudger.audit import record
from nudger.calendar import local_date, local_instant
from nudger.db import upsert_ignore
from nudger.enrolments.invites import invite_changed, invites_cancelled
from nudger.journeys.spec import JourneySpec, StepSpec
from nudger.models import Enrolment, EnrolmentStep, Journey, Person, Step
from nudger.schedule import JourneyPlan, PlanStep

STEP_FIELDS = ("day", "kind", "title", "minutes", "link", "body", "due_after", "confirmed_by", "at")
INVITE_FIELDS = ("title", "minutes", "at")  # what a calendar invite shows
LIVE = ("active", "paused")
CHUNK = 2000


@dataclass
class StepEffect:
    """What one changed step means for the journey's live enrolments."""

    key: str
    change: str  # added|moved|removed|reworded
    day: int | None = None
    old_day: int | None = None
    scheduled: int = 0  # will get it at its (new) time, or with its new wording
    skipped: int = 0  # its time has passed for them, or they are past it: never sent
    kept: int = 0  # they already have it: it stays as it was
    cancelled: int = 0  # removed before it reached them
    invite_updates: int = 0
    invite_cancels: int = 0

    def describe(self) -> str:
        if self.change == "moved":
            head = f"moved {self.key} (day {self.old_day} -> {self.day})"
        elif self.change == "added":
            head = f"added {self.key} (day {self.day})"
        else:
            head = f"{self.change} {self.key}"
        scheduled = {
            "reworded": f"new wording for {self.scheduled} who have not received it",
        }.get(self.change, f"scheduled for {self.scheduled} who have not reached it")
        parts = [
            (self.kept, f"already sent to {self.kept}: stays as it was"),
            (self.scheduled, scheduled),
            (self.skipped, f"skipped for {self.skipped}: its send time has passed for them"),
            (self.cancelled, f"cancelled for {self.cancelled} who had not received it"),
            (self.invite_updates, f"invite update to {self.invite_updates}"),
            (self.invite_cancels, f"invite cancelled for {self.invite_cancels}"),
        ]
        text = "; ".join(words for count, words in parts if count)
        return f"{head}: {text or 'no live enrolment affected'}"


@dataclass
class JourneyChange:
    """What syncing one journey file does, to the journey and to the people on it."""

    slug: str
    new: bool = False
    unchanged: bool = False
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # the step's day changed
    reworded: list[str] = field(default_factory=list)  # anything else about the step changed
    schedule_changed: bool = False
    live_enrolments: int = 0
    effects: list[StepEffect] = field(default_factory=list)
    retimed: int = 0  # enrolments whose unsent steps a schedule change moves
    due_now: int = 0  # ... of which have a step whose new time has already passed
    # Decisions for apply_sync: (enrolment id, step key) to close unsent,
    # (enrolment-step id, new invite start or None, tell the learner now).
    skips: list[tuple[int, str]] = field(default_factory=list, repr=False)
    invite_moves: list[tuple[int, datetime | None, bool]] = field(default_factory=list, repr=False)
    invite_cancels: list[int] = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        return {
            "slug": self.slug,
            "new": self.new,
            "unchanged": self.unchanged,
            "added": self.added,
            "removed": self.removed,
            "moved": self.moved,
            "reworded": self.reworded,
            "schedule_changed": self.schedule_changed,
            "live_enrolments": self.live_enrolments,
            "retimed": self.retimed,
            "due_now": self.due_now,
            "effects": [e.__dict__.copy() for e in self.effects],
        }

    def describe(self) -> str:
        if self.new:
            return f"{self.slug}: new journey"
        if self.unchanged:
            return f"{self.slug}: unchanged"
        parts = [
            f"{label} {', '.join(keys)}"
            for label, keys in (
                ("added", self.added),
                ("removed", self.removed),
                ("moved", self.moved),
                ("reworded", self.reworded),
            )
            if keys
        ]
        if self.schedule_changed:
            parts.append("schedule changed")
        body = "; ".join(parts) or "settings changed"
        lines = [f"{self.slug}: {body} ({self.live_enrolments} live enrolments)"]
        if self.live_enrolments:
            lines += [f"  {effect.describe()}" for effect in self.effects]
            if self.schedule_changed:
                lines.append(
                    f"  schedule: re-times unsent steps for {self.retimed}; "
                    f"{self.due_now} have a step whose new time has passed (sent at the next tick)"
                )
        return "\n".join(lines)


def _step_values(s: StepSpec) -> dict:
    return {
        "position": s.position,
        "day": s.day,
        "kind": s.kind,
        "title": s.title,
        "minutes": s.minutes,
        "link": s.link,
        "body": s.body,
        "due_after": s.due_after,
        "confirmed_by": s.confirmed_by,
        "at": s.at.strftime("%Y-%m-%dT%H:%M") if s.at else None,
        "removed": False,
    }


def plan_sync(
    session: Session, spec: JourneySpec, now: datetime, *, default_country: str = ""
) -> JourneyChange:
    """Compare a journey file with the database and work out its effect; change nothing."""
    journey = session.exec(select(Journey).where(Journey.slug == spec.slug)).first()
    if journey is None:
        return JourneyChange(spec.slug, new=True)
    change = JourneyChange(spec.slug)
    if journey.checksum == spec.checksum():
        change.unchanged = True
        return change
    old = {s.key: s for s in session.exec(select(Step).where(Step.journey_id == journey.id))}
    live_old = {k for k, s in old.items() if not s.removed}
    new = {s.key: s for s in spec.steps}
    change.added = [k for k in new if k not in live_old]
    change.removed = sorted(live_old - set(new))
    invite_keys = set()
    for key, s in new.items():
        if key not in live_old:
            continue
        before, after = old[key], _step_values(s)
        if before.day != s.day:
            change.moved.append(key)
        elif any(after[f] != getattr(before, f) for f in STEP_FIELDS if f != "day"):
            change.reworded.append(key)
        if any(after[f] != getattr(before, f) for f in INVITE_FIELDS):
            invite_keys.add(key)
    dump = spec.model_dump(mode="json")
    change.schedule_changed = journey.spec.get("schedule") != dump["schedule"]
    for label, keys in (
        ("added", change.added),
        ("moved", change.moved),
        ("removed", change.removed),
        ("reworded", change.reworded),
    ):
        for key in keys:
            effect = StepEffect(key, label, new[key].day if key in new else None)
            effect.old_day = old[key].day if key in live_old else None
            change.effects.append(effect)
    old_plan = JourneyPlan.build(journey, list(old.values()))
    new_plan = JourneyPlan.build(_journey_as(journey, spec, dump), _steps_as(spec, old))
    _Assessor(change, old_plan, new_plan, invite_keys, now, default_country).run(
        session, journey.id, {s.id: k for k, s in old.items()}
    )
    return change


def _journey_as(journey: Journey, spec: JourneySpec, dump: dict) -> SimpleNamespace:
    """Return the journey as the file has it, detached from the session."""
    return SimpleNamespace(
        id=journey.id, slug=spec.slug, title=spec.title, owner=spec.owner, spec=dump
    )


def _steps_as(spec: JourneySpec, old: dict[str, Step]) -> list[SimpleNamespace]:
    """Return the file's steps, keeping the ids of those already in the database."""
    return [
        SimpleNamespace(id=old[s.key].id if s.key in old else None, key=s.key, **_step_values(s))
        for s in spec.steps
    ]


class _Assessor:
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


def apply_sync(
    session: Session,
    spec: JourneySpec,
    now: datetime,
    source: str = "",
    actor: str = "cli",
    *,
    default_country: str = "",
) -> JourneyChange:
    """Write a journey and its steps and apply the live-edit policy; return what changed."""
    change = plan_sync(session, spec, now, default_country=default_country)
    if change.unchanged:
        return change
    dump = spec.model_dump(mode="json")
    journey = session.exec(select(Journey).where(Journey.slug == spec.slug)).first()
    if journey is None:
        journey = Journey(slug=spec.slug, title=spec.title, spec=dump, checksum="", version=0)
        session.add(journey)
        session.flush()
    journey.title, journey.owner, journey.spec = spec.title, spec.owner, dump
    journey.checksum, journey.version = spec.checksum(), journey.version + 1
    journey.source, journey.synced_at = source, now
    steps = {s.key: s for s in session.exec(select(Step).where(Step.journey_id == journey.id))}
    for s in spec.steps:
        values = _step_values(s)
        if s.key in steps:
            for name, value in values.items():
                setattr(steps[s.key], name, value)
        else:
            steps[s.key] = Step(journey_id=journey.id, key=s.key, **values)
            session.add(steps[s.key])
    for key in change.removed:
        steps[key].removed = True
    session.flush()
    _close_skipped(session, change, {k: s.id for k, s in steps.items()})
    _send_invite_changes(session, change, now)
    # The next tick re-plans live enrolments; it sends only what is due.
    session.execute(
        update(Enrolment)
        .where(Enrolment.journey_id == journey.id, Enrolment.status == "active")
        .values(next_action_at=now)
    )
    record(session, actor, "journey.sync", now, "journey", journey.id, **change.to_json())
    return change


def _close_skipped(session: Session, change: JourneyChange, step_ids: dict[str, int]) -> None:
    """Record skipped steps as cancelled and never sent, so no tick sends them late."""
    values = [
        {
            "enrolment_id": enrolment_id,
            "step_id": step_ids[key],
            "status": "cancelled",
            "sent_at": None,
            "invite_sequence": 0,
            "reminders_sent": 0,
            "escalation_level": 0,
            "note_shared": True,
            "awaiting_confirmation": False,
        }
        for enrolment_id, key in change.skips
    ]
    stmt = upsert_ignore(session, EnrolmentStep.__table__, ["enrolment_id", "step_id"])
    for start in range(0, len(values), CHUNK):
        # A tick that sent the step meanwhile wins: its row stays, this one is dropped.
        session.execute(stmt, values[start : start + CHUNK])


def _send_invite_changes(session: Session, change: JourneyChange, now: datetime) -> None:
    """Move changed invites and tell the learners' calendars."""
    if change.invite_moves:
        moves = {es_id: (start, notify) for es_id, start, notify in change.invite_moves}
        rows = _rows(session, list(moves))
        for es in rows:
            es.invite_start = moves[es.id][0]
        invite_changed(session, [es for es in rows if moves[es.id][1]], now)
    if change.invite_cancels:
        invites_cancelled(session, _rows(session, change.invite_cancels), now)


def _rows(session: Session, ids: list[int]) -> list[EnrolmentStep]:
    found = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found += session.exec(select(EnrolmentStep).where(EnrolmentStep.id.in_(chunk))).all()
    return found
