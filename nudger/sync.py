"""Load validated journey files into the database, showing what changes first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, func, select

from nudger.journeys import JourneySpec, StepSpec
from nudger.models import AuditLog, Enrolment, Journey, Step

STEP_FIELDS = ("day", "kind", "title", "minutes", "link", "body", "due_after", "confirmed_by", "at")


@dataclass
class JourneyChange:
    """What syncing one journey file does."""

    slug: str
    new: bool = False
    unchanged: bool = False
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # the step's day changed
    reworded: list[str] = field(default_factory=list)  # anything else about the step changed
    live_enrolments: int = 0

    def to_json(self) -> dict:
        return self.__dict__.copy()

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
        body = "; ".join(parts) or "settings changed"
        return f"{self.slug}: {body} ({self.live_enrolments} live enrolments)"


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


def plan_sync(session: Session, spec: JourneySpec) -> JourneyChange:
    """Compare a journey file with the database, changing nothing."""
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
    for key, s in new.items():
        if key not in live_old:
            continue
        before = old[key]
        after = _step_values(s)
        if before.day != s.day:
            change.moved.append(key)
        elif any(after[f] != getattr(before, f) for f in STEP_FIELDS if f != "day"):
            change.reworded.append(key)
    change.live_enrolments = session.exec(
        select(func.count()).where(
            Enrolment.journey_id == journey.id, Enrolment.status.in_(["active", "paused"])
        )
    ).one()
    return change


def apply_sync(
    session: Session, spec: JourneySpec, now: datetime, source: str = "", actor: str = "cli"
) -> JourneyChange:
    """Write a journey and its steps; live enrolments are re-planned by the next tick."""
    change = plan_sync(session, spec)
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
            session.add(Step(journey_id=journey.id, key=s.key, **values))
    for key in change.removed:
        steps[key].removed = True
    # Re-plan live enrolments on the next tick; the tick sends only what is due.
    session.execute(
        update(Enrolment)
        .where(Enrolment.journey_id == journey.id, Enrolment.status == "active")
        .values(next_action_at=now)
    )
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="journey.sync",
            subject_type="journey",
            subject_id=journey.id,
            detail=change.to_json(),
        )
    )
    return change
