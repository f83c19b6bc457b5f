"""Load validated journey files into the database, showing what changes first.

Editing a journey that people are on follows one policy (the README's "Editing a live journey"),
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

from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import update
from sqlmodel import Session, select

from nudger.audit import record
from nudger.db import upsert_ignore
from nudger.enrolments.edit_effects import EditAssessor
from nudger.enrolments.edit_summary import (
    CHUNK,
    INVITE_FIELDS,
    STEP_FIELDS,
    JourneyChange,
    StepEffect,
)
from nudger.enrolments.invite_changes import invite_changed, invites_cancelled
from nudger.journeys.spec import JourneySpec, StepSpec
from nudger.measure.edits import measure_edit
from nudger.measure.planning import replan_journey
from nudger.models import Enrolment, EnrolmentStep, Journey, Step
from nudger.schedule import JourneyPlan


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
    steps_changed = bool(change.added or change.removed or change.moved or change.reworded)
    measuring = measure_edit(journey.spec, spec, steps_changed)
    change.measurement, change.replan_checkins = measuring.lines, measuring.replan
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
    EditAssessor(change, old_plan, new_plan, invite_keys, now, default_country).run(
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
    if change.replan_checkins:
        replan_journey(session, journey.id)
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
