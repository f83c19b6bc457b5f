"""Tell a learner's calendar when an invite they were sent moves or is called off.

Invites go out with their step, so only *sent* steps have one to change. Each
change raises the step's `invite_sequence` (RFC 5545: a higher SEQUENCE
supersedes the earlier copy) and writes one outbox row per enrolment, kind
`invite-update` (METHOD:REQUEST) or `invite-cancel` (METHOD:CANCEL), payload
{"enrolment_step_ids": [...]}. The dedupe key carries the new sequence, so
every change is one message and deciding it twice is harmless. The next tick
enqueues the rows (they are written with no job yet).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, select

from nudger import outbox
from nudger.mail.compose.invites import CANCEL, UPDATE
from nudger.models import Enrolment, EnrolmentStep, Outbox, Person, Step


def open_invites(session: Session, enrolment_id: int, now: datetime) -> list[EnrolmentStep]:
    """Return the enrolment's sent, not-done steps whose invite is still ahead of `now`.

    Steps removed from the journey are left out: their invites were cancelled
    when the edit was synced.
    """
    query = (
        select(EnrolmentStep)
        .join(Step, Step.id == EnrolmentStep.step_id)
        .where(
            EnrolmentStep.enrolment_id == enrolment_id,
            EnrolmentStep.status == "sent",
            EnrolmentStep.invite_start.is_not(None),
            EnrolmentStep.invite_start > now,
            Step.removed.is_(False),
        )
    )
    return list(session.exec(query.order_by(EnrolmentStep.id)))


def invite_changed(session: Session, steps: Iterable[EnrolmentStep], now: datetime) -> list[int]:
    """Send the new time (or title, or length) of these steps' invites; return outbox ids."""
    return _write(session, UPDATE, steps, now)


def invites_cancelled(session: Session, steps: Iterable[EnrolmentStep], now: datetime) -> list[int]:
    """Call off these steps' invites in the learner's calendar; return outbox ids."""
    return _write(session, CANCEL, steps, now)


def unsent_cancels_withdrawn(
    session: Session, enrolment_id: int, since: datetime, now: datetime
) -> set[int]:
    """Call off this enrolment's invite cancels written since `since` and not sent yet.

    Returns the step ids they named: those invites are still in the learner's
    calendar as they were, so nothing needs to be sent about them. A row a
    worker has already claimed is left to go (the conditional update loses).
    """
    withdrawn = session.execute(
        update(Outbox)
        .where(
            Outbox.enrolment_id == enrolment_id,
            Outbox.kind == CANCEL,
            Outbox.state == "pending",
            Outbox.created_at >= since,
        )
        .values(state="cancelled", last_error="called off: resumed before it was sent")
        .returning(Outbox.payload)
    ).all()
    return {es_id for (payload,) in withdrawn for es_id in payload["enrolment_step_ids"]}


def _write(session: Session, kind: str, steps: Iterable[EnrolmentStep], now: datetime) -> list[int]:
    by_enrolment: dict[int, list[EnrolmentStep]] = defaultdict(list)
    for es in steps:
        if es.invite_start is not None:
            by_enrolment[es.enrolment_id].append(es)
    if not by_enrolment:
        return []
    people = dict(
        session.exec(
            select(Enrolment.id, Person)
            .join(Person, Person.id == Enrolment.person_id)
            .where(Enrolment.id.in_(list(by_enrolment)))
        ).all()
    )
    ids = []
    for enrolment_id, rows in sorted(by_enrolment.items()):
        rows.sort(key=lambda es: es.id)
        for es in rows:
            es.invite_sequence += 1
        session.flush()
        person = people[enrolment_id]
        marks = ",".join(f"{es.id}.{es.invite_sequence}" for es in rows)
        key = f"{kind}:{enrolment_id}:{marks}"
        if len(key) > 200:
            # Only the first step's id and sequence: every change raises it, so still unique.
            key = f"{kind}:{enrolment_id}:{rows[0].id}.{rows[0].invite_sequence}+{len(rows)}"
        message = {
            "dedupe_key": key,
            "kind": kind,
            "to_email": person.email,
            "person_id": person.id,
            "enrolment_id": enrolment_id,
            "payload": {"enrolment_step_ids": [es.id for es in rows]},
        }
        ids += [row.id for row in outbox.add(session, [message], now)]
    return ids
