"""What the API changes: enrolling (through the CSV import's checks), completing a step,
pausing, resuming, withdrawing. Each writes its audit row with the token as the actor."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from email_validator import EmailNotValidError
from sqlmodel import Session, select

from nudger.api.access import Caller
from nudger.api.schemas import Changed, Completed, Enrolled, EnrolRequest, EnrolResult, ItemError
from nudger.config import Settings
from nudger.enrolments import changes
from nudger.models import Enrolment, EnrolmentStep, Journey, Person, Step
from nudger.progress import StepClosed, complete_step
from nudger.roster import RowError, import_records
from nudger.roster.checks import normal_email

FIRST_ROW = 2  # item 0 is checked as row 2 of a CSV (row 1 being the header)
_ROW = re.compile(r"\brow (\d+)\b")


class Rejected(Exception):
    """Some items were refused; nothing was written."""

    def __init__(self, errors: list[ItemError]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


class NotFound(LookupError):
    """No such enrolment, or no such step in its journey."""


class Conflict(Exception):
    """The change cannot be made in the enrolment's state; the message says why."""


def _item_error(e: RowError) -> ItemError:
    """Say where a problem is in the request's terms: items from 0, not spreadsheet rows."""
    message = _ROW.sub(lambda m: f"item {int(m.group(1)) - FIRST_ROW}", e.message)
    message = message.replace("in the file", "in the request")
    item = e.row - FIRST_ROW if e.row >= FIRST_ROW else None
    return ItemError(item=item, field=e.field, value=e.value, message=message)


def enrol(
    session: Session, settings: Settings, body: EnrolRequest, caller: Caller, now: datetime
) -> EnrolResult:
    """Create or update each person and enrol them, all or nothing; raise Rejected on errors."""
    records = [item.model_dump() for item in body.items]
    result = import_records(
        session, settings, records, label=f"api:{caller.name}", now=now, actor=caller.actor
    )
    if result.errors:
        session.rollback()
        raise Rejected([_item_error(e) for e in result.errors])
    return EnrolResult(
        people_created=result.people_created,
        people_updated=result.people_updated,
        enrolments_created=result.enrolments_created,
        unchanged=result.unchanged,
        enrolments=_enrolled(session, records),
        warnings=[_item_error(w) for w in result.warnings],
    )


def _enrolled(session: Session, records: list[dict]) -> list[Enrolled]:
    """Return each item's enrolment (new or already there), in the request's order."""
    wanted = {}
    for i, record in enumerate(records):
        try:
            wanted[i] = (normal_email(record["email"].strip()), record["journey"].strip().lower())
        except EmailNotValidError:  # cannot happen: the import accepted it
            continue
    rows = session.exec(
        select(Enrolment, Person.email, Journey.slug)
        .join(Person, Person.id == Enrolment.person_id)
        .join(Journey, Journey.id == Enrolment.journey_id)
        .where(Person.email.in_({email for email, _ in wanted.values()}))
    ).all()
    found = {(email, slug): e for e, email, slug in rows}
    out = []
    for i, pair in wanted.items():
        e = found.get(pair)
        if e is not None:
            out.append(Enrolled(item=i, id=e.id, email=pair[0], journey=pair[1],
                                status=e.status, start_date=e.start_date))  # fmt: skip
    return out


def complete(
    session: Session, enrolment_id: int, key: str, caller: Caller, now: datetime
) -> Completed:
    """Complete a sent step of an enrolment as the learner's button does; harmless twice."""
    row = session.exec(
        select(EnrolmentStep.id, Enrolment.status)
        .join(Step, Step.id == EnrolmentStep.step_id)
        .join(Enrolment, Enrolment.id == EnrolmentStep.enrolment_id)
        .where(EnrolmentStep.enrolment_id == enrolment_id, Step.key == key)
    ).first()
    if row is None:
        if session.get(Enrolment, enrolment_id) is None:
            raise NotFound(f"no enrolment {enrolment_id}")
        raise Conflict(
            f"step {key!r} has not been sent to enrolment {enrolment_id} (or is not in its "
            "journey): only a sent step can be completed"
        )
    try:
        done = complete_step(session, row[0], now, actor=caller.actor)
    except StepClosed:
        session.rollback()
        raise Conflict(f"step {key!r} of enrolment {enrolment_id} was cancelled") from None
    es = done.enrolment_step
    status = "done" if es.status == "done" else "awaiting_confirmation"
    return Completed(enrolment_id=enrolment_id, key=key, status=status,
                     already=done.already_done, done_at=es.done_at)  # fmt: skip


CHANGES: dict[str, Callable] = {
    "pause": changes.pause,
    "resume": changes.resume,
    "withdraw": changes.withdraw,
}


def change(
    session: Session,
    settings: Settings,
    enrolment_id: int,
    action: str,
    caller: Caller,
    now: datetime,
) -> Changed:
    """Pause, resume or withdraw an enrolment; `changed` is False if it already was."""
    enrolment = session.get(Enrolment, enrolment_id)
    if enrolment is None:
        raise NotFound(f"no enrolment {enrolment_id}")
    person = session.get(Person, enrolment.person_id)
    if person.erased_at is not None:
        raise Conflict("this person's personal data was erased: their enrolments do not change")
    changed = CHANGES[action](
        session, enrolment, now, caller.actor, default_country=settings.default_country
    )
    session.commit()
    return Changed(id=enrolment.id, status=enrolment.status, changed=changed)
