"""Act on a stored inbound message, once: what a reply asks for, what a bounce says.

Trust: a reply acts only when it came to a signed address, its From is the
person the email went to, and the receiving server recorded no failed DKIM or
SPF check. Anything else is stored and shown to admins, and changes nothing.
Nothing here ever sends an answer, so no mail loop can start.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, select

from nudger.audit import record
from nudger.bulk import among
from nudger.config import Settings
from nudger.inbound import bounces, reading
from nudger.inbound.receiving import parse
from nudger.journeys.spec import CONFIRM
from nudger.measure.answers import BadAnswers, CheckinClosed, load_checkin, save_answers
from nudger.models import EnrolmentStep, EscalationEvent, InboundMessage, Outbox, Person, Step
from nudger.progress import NotConfirmable, StepClosed, complete_step, confirm_step
from nudger.tokens import read_mailbox
from nudger.wording import count

NOTE_LIMIT = 2000


def process(session: Session, settings: Settings, inbound_id: int, now: datetime) -> str | None:
    """Act on one stored message and mark it done, in one transaction; return what was done.

    Returns None when it was processed already (a second delivery, a second
    job): the conditional update at the end lets one transaction through.
    """
    inbound = session.exec(
        select(InboundMessage).where(InboundMessage.id == inbound_id).with_for_update()
    ).first()
    if inbound is None or inbound.state == "done":
        session.rollback()
        return None
    outcome = _act(session, settings, inbound, now)
    done = session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == inbound_id, InboundMessage.state == "received")
        .values(
            state="done",
            processed_at=now,
            outcome=outcome,
            kind=inbound.kind,
            trusted=inbound.trusted,
            status=inbound.status,
            outbox_id=inbound.outbox_id,
            person_id=inbound.person_id,
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        session.rollback()
        return None
    session.commit()
    return outcome


def pending(session: Session, before: datetime) -> list[int]:
    """Return the ids of messages received before `before` and not yet acted on."""
    return list(
        session.exec(
            select(InboundMessage.id)
            .where(InboundMessage.state == "received", InboundMessage.received_at < before)
            .order_by(InboundMessage.id)
            .limit(1000)
        )
    )


def _act(session: Session, settings: Settings, inbound: InboundMessage, now: datetime) -> str:
    msg = parse(inbound.raw)
    address = read_mailbox(settings, inbound.recipient) if inbound.recipient else None
    row = session.get(Outbox, address[1]) if address else None
    inbound.outbox_id = row.id if row else None
    if row is not None and row.person_id is not None:
        inbound.person_id = row.person_id
    if address is None or row is None:
        inbound.kind = "unknown"
        return "not sent to an address Nudger gave out: stored, nothing done"
    purpose = address[0]
    if purpose == "bounce" or bounces.looks_like_bounce(msg):
        inbound.kind = "bounce"
        bounce = bounces.read_bounce(msg)
        if bounce is None:
            return "a delivery report with no failure in it: nothing done"
        inbound.trusted = True  # the signed envelope address says which email it was
        return bounces.record_bounce(session, inbound, row, bounce, now)
    person = _recipient(session, row)
    if person is not None:
        inbound.person_id = person.id
    if reading.is_auto_reply(msg):
        inbound.kind = "auto-reply"
        if person is not None and inbound.from_email == person.email:
            person.out_of_office_at = now
            session.add(person)
            return "an automatic reply: recorded them as out of office; nothing else done"
        return "an automatic reply: nothing done"
    inbound.kind = "reply"
    if person is None or inbound.from_email != row.to_email.lower():
        return f"sent from {inbound.from_email or 'no address'}, not {row.to_email}: nothing done"
    if reading.authentication_failed(msg):
        return "the receiving server recorded a failed DKIM or SPF check: nothing done"
    inbound.trusted = True
    text = reading.reply_text(msg)
    if not text:
        return "an empty reply: nothing done"
    if person.out_of_office_at is not None:
        person.out_of_office_at = None  # they are back: they answered themselves
        session.add(person)
    if row.kind == "step":
        return _step_reply(session, row, person, text, now)
    if row.kind == "checkin":
        return _checkin_reply(session, row, text, now)
    if row.kind == "digest":
        return _digest_reply(session, row, person, text, now)
    return f"a reply to a {row.kind} email: stored, nothing done"


def _recipient(session: Session, row: Outbox) -> Person | None:
    if row.person_id is not None:
        return session.get(Person, row.person_id)
    return session.exec(select(Person).where(Person.email == row.to_email.lower())).first()


def _step_reply(session: Session, row: Outbox, person: Person, text: str, now: datetime) -> str:
    """Complete the steps the email carried (all open ones, or the one named), or keep a note."""
    ids = row.payload.get("enrolment_step_ids", [])
    carried = session.exec(
        select(EnrolmentStep, Step)
        .join(Step, Step.id == EnrolmentStep.step_id)
        .where(EnrolmentStep.id.in_(ids))
        .order_by(Step.position)
    ).all()
    if not carried:
        return "the steps of that email are gone: nothing done"
    command = reading.read_command(text)
    actor = f"learner:{person.id}"
    if command.word == "done":
        if command.which is not None:
            if not 1 <= command.which <= len(carried):
                return f"asked for step {command.which}, the email carried {len(carried)}"
            chosen = [carried[command.which - 1]]
        else:
            chosen = [(es, step) for es, step in carried if _open(es)]
        note = command.rest or None
        titles = []
        for es, step in chosen:
            if not _open(es):
                continue
            try:
                complete_step(session, es.id, now, note=note, actor=actor, commit=False)
            except (StepClosed, LookupError):
                continue
            titles.append(step.title)
        if not titles:
            return "said done, but no step of that email was still open: nothing done"
        with_note = " with their note" if note else ""
        return f"completed {', '.join(repr(t) for t in titles)}{with_note}"
    es, step = next(((es, s) for es, s in carried if _open(es)), carried[0])
    note = text[:NOTE_LIMIT]
    es.note = f"{es.note}\n\n{note}"[:NOTE_LIMIT] if es.note else note
    es.note_shared = True
    session.add(es)
    record(session, actor, "step.note", now, "enrolment_step", es.id, via="reply")
    return f"saved as the note on {step.title!r} (not completed)"


def _open(es: EnrolmentStep) -> bool:
    return es.status == "sent" and not es.awaiting_confirmation


def _checkin_reply(session: Session, row: Outbox, text: str, now: datetime) -> str:
    """Record one rating per behaviour, in order, from digits 1-5."""
    ids = row.payload.get("checkin_ids", [])
    if len(ids) != 1:
        return "a reply to a check-in about several people: answer on the page; nothing done"
    page = load_checkin(session, ids[0])
    if page is None:
        return "that check-in is closed: nothing done"
    values = reading.read_ratings(text, len(page.behaviours))
    if values is None:
        return f"not {len(page.behaviours)} digits from 1 to 5: stored, nothing done"
    answers = {b.key: v for b, v in zip(page.behaviours, values, strict=True)}
    try:
        save_answers(session, ids[0], answers, now)
    except (CheckinClosed, BadAnswers, LookupError):
        return "that check-in no longer takes answers: nothing done"
    return "recorded the ratings " + " ".join(str(v) for v in values)


def _digest_reply(session: Session, row: Outbox, manager: Person, text: str, now: datetime) -> str:
    """Confirm the steps waiting for this manager that the digest listed."""
    command = reading.read_command(text)
    if command.word != "confirm":
        return "a reply to a digest that is not a confirmation: stored, nothing done"
    # The digest lists the events it carried; one written before it did was named by them.
    carried = row.payload.get("event_ids")
    listed = (
        among(session, EscalationEvent.id, carried)  # one parameter, however many
        if carried is not None
        else EscalationEvent.digest_outbox_id == row.id
    )
    es_ids = list(
        session.exec(
            select(EscalationEvent.enrolment_step_id)
            .join(EnrolmentStep, EnrolmentStep.id == EscalationEvent.enrolment_step_id)
            .where(
                listed,
                EscalationEvent.level == CONFIRM,
                EnrolmentStep.awaiting_confirmation.is_(True),
                EnrolmentStep.status == "sent",
            )
            .order_by(EscalationEvent.id)
        )
    )
    if command.which is not None:
        es_ids = es_ids[command.which - 1 : command.which]
    confirmed = 0
    for es_id in es_ids:
        try:
            confirm_step(session, es_id, manager.id, now, commit=False)
        except (NotConfirmable, StepClosed):
            continue
        confirmed += 1
    if not confirmed:
        return "said confirm, but nothing in that digest was waiting for them: nothing done"
    return "confirmed " + count(confirmed, "%(num)d step", "%(num)d steps")
