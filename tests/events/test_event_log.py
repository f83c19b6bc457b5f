"""The event log, as the real import, tick, done button and check-in write it."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import Session, select

from nudger import events
from nudger.journeys.spec import JourneySpec
from nudger.measure.answers import save_answers
from nudger.models import Enrolment, EnrolmentStep, Event, Person, WebhookEndpoint
from nudger.progress import complete_step
from nudger.roster import import_roster
from nudger.tick.run import tick
from tests.conftest import TEST_DATABASE_URL
from tests.factories import make_enrolment, make_journey, make_person
from tests.measure.kit import checkins, make_measured_journey

START = date(2027, 3, 1)  # a Monday
ONE_STEP = [{"key": "read", "day": 0, "kind": "read", "title": "Read the one-pager", "minutes": 15}]


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2027, 3, day, hour, tzinfo=UTC)


def logged(session: Session, type_: str | None = None) -> list[Event]:
    session.expire_all()
    query = select(Event).order_by(Event.id)
    if type_:
        query = query.where(Event.type == type_)
    return list(session.exec(query))


def test_an_import_writes_one_enrolment_created_per_enrolment(session, settings):
    journey = make_journey(session)
    now = datetime(2027, 2, 26, 12, tzinfo=UTC)
    rows = "".join(f"p{i}@example.com,P {i},,{journey.slug},,," + "\n" for i in range(30))
    csv = "email,name,manager_email,journey,start_date,timezone,country\n" + rows
    result = import_roster(session, settings, io.BytesIO(csv.encode()), now=now)
    assert result.ok

    created = logged(session, events.ENROLMENT_CREATED)
    assert len(created) == 30
    assert {e.enrolment_id for e in created} == {e.data["enrolment_id"] for e in created}
    assert {e.data["journey"] for e in created} == {journey.slug}
    assert all(e.occurred_at == now for e in created)
    # Ids, never addresses: erasing a person leaves the log as it is.
    assert all("example.com" not in str(e.data) for e in created)


@pytest.mark.parametrize("listening", [False, True])
def test_an_import_leaves_events_to_fan_out_only_when_something_listens(
    session, settings, listening
):
    """Nobody listening: written as dispatched, so no tick rewrites a million of them."""
    if listening:
        session.add(WebhookEndpoint(url="https://hr.example.com/hook", secret="whsec_x",
                                    events=[events.ENROLMENT_CREATED]))  # fmt: skip
        session.commit()
    journey = make_journey(session)
    now = datetime(2027, 2, 26, 12, tzinfo=UTC)
    rows = "".join(f"p{i}@example.com,P {i},,{journey.slug},,," + "\n" for i in range(5))
    csv = "email,name,manager_email,journey,start_date,timezone,country\n" + rows
    assert import_roster(session, settings, io.BytesIO(csv.encode()), now=now).ok

    created = logged(session, events.ENROLMENT_CREATED)
    assert len(created) == 5
    assert {e.dispatched for e in created} == {not listening}


def test_an_import_event_holds_exactly_its_enrolment(session, settings):
    """Each event names its own enrolment's person, start and batch, as the feed reads them
    (on PostgreSQL the import writes these rows by COPY, not through record_many)."""
    journey = make_journey(session)
    now = datetime(2027, 2, 26, 12, tzinfo=UTC)
    # A report before their manager, and a manager the file names only as one.
    csv = (
        "email,name,manager_email,manager_name,journey,start_date,timezone,country\n"
        f"ann@example.com,Ann,bo@example.com,,{journey.slug},2027-03-08,Europe/London,GB\n"
        f"bo@example.com,Bo,cy@example.com,Cy,{journey.slug},,,\n"
    )
    result = import_roster(session, settings, io.BytesIO(csv.encode()), now=now)
    assert result.ok and result.enrolments_created == 2 and result.people_created == 3

    enrolments = {e.id: e for e in session.exec(select(Enrolment))}
    people = {p.id: p for p in session.exec(select(Person))}
    by_email = {p.email: p for p in people.values()}
    assert by_email["ann@example.com"].manager_id == by_email["bo@example.com"].id
    assert by_email["bo@example.com"].manager_id == by_email["cy@example.com"].id
    created = logged(session, events.ENROLMENT_CREATED)
    assert sorted(e.enrolment_id for e in created) == sorted(enrolments)
    for event in created:
        enrolment = enrolments[event.enrolment_id]
        assert event.data == {
            "enrolment_id": enrolment.id,
            "person_id": enrolment.person_id,
            "journey": journey.slug,
            "start_date": enrolment.start_date.isoformat(),
            "import_batch_id": result.batch_id,
        }
        assert enrolment.import_batch_id == result.batch_id
        assert enrolment.next_action_at is not None and enrolment.created_at == now
        assert (event.txid is not None) == TEST_DATABASE_URL.startswith("postgresql")
    assert all(e.status == "active" for e in enrolments.values())
    starts = {people[e.person_id].email: e.start_date for e in enrolments.values()}
    assert starts["ann@example.com"] == date(2027, 3, 8)


def test_a_dry_run_writes_no_event(session, settings):
    journey = make_journey(session)
    header = "email,name,manager_email,journey,start_date,timezone,country"
    csv = f"{header}\na@example.com,A,,{journey.slug},,,\n"
    now = datetime(2027, 2, 26, 12, tzinfo=UTC)
    assert import_roster(session, settings, io.BytesIO(csv.encode()), now=now, dry_run=True).ok
    assert logged(session) == []


def test_a_journey_in_events_sent_overdue_escalated_completed(session, settings):
    journey = make_journey(session, steps=ONE_STEP)
    boss = make_person(session, "boss@example.com", "Boss")
    learner = make_person(session, "nia@example.com", "Nia", manager=boss)
    enrolment = make_enrolment(session, learner, journey, START)

    tick(session, settings, at(1), enqueue=False)  # sent Monday, due Wednesday 09:00
    [sent] = logged(session, events.STEP_SENT)
    es = session.exec(select(EnrolmentStep)).one()
    assert sent.data["enrolment_step_id"] == es.id
    assert sent.data["step"] == "read" and sent.enrolment_id == enrolment.id
    assert sent.data["outbox_id"] is not None

    for day in (2, 3, 4, 5, 8, 9):  # past due; reminders on the 4th, the manager on the 8th
        tick(session, settings, at(day), enqueue=False)
    [overdue] = logged(session, events.STEP_OVERDUE)  # once, however many ticks looked
    assert overdue.occurred_at == at(4) and overdue.data["step"] == "read"
    [raised] = logged(session, events.ESCALATION_RAISED)
    assert raised.data["level"] == "manager" and raised.data["enrolment_step_id"] == es.id

    complete_step(session, es.id, at(9, 10))
    [done] = logged(session, events.STEP_COMPLETED)
    assert done.data["kind"] == "read" and done.data["actor"] == "learner"
    [finished] = logged(session, events.ENROLMENT_COMPLETED)
    assert finished.enrolment_id == enrolment.id and finished.id > done.id
    complete_step(session, es.id, at(9, 11))  # a second press changes nothing
    assert len(logged(session, events.STEP_COMPLETED)) == 1


def test_a_press_that_is_rolled_back_leaves_no_event(session, settings):
    journey = make_journey(session, steps=ONE_STEP)
    enrolment = make_enrolment(session, make_person(session), journey, START)
    tick(session, settings, at(1), enqueue=False)
    es = session.exec(select(EnrolmentStep).where(EnrolmentStep.enrolment_id == enrolment.id)).one()
    complete_step(session, es.id, at(1, 10), commit=False)
    session.rollback()
    assert logged(session, events.STEP_COMPLETED) == []


def test_saved_answers_write_rating_recorded(session, settings):
    journey = make_measured_journey(session, measure={"at": ["start", "end"]})
    boss = make_person(session, "boss@example.com", "Boss")
    make_enrolment(
        session, make_person(session, "p@example.com", "P", manager=boss), journey, START
    )
    tick(session, settings, at(1), enqueue=False)
    checkin = next(c for c in checkins(session) if c.rater == "learner")
    behaviour = JourneySpec.model_validate(journey.spec).behaviours()[0].key
    save_answers(session, checkin.id, {behaviour: 3}, checkin.sent_at + timedelta(hours=1))
    session.commit()
    [rated] = logged(session, events.RATING_RECORDED)
    assert rated.data["answers"] == {behaviour: 3} and rated.data["rater"] == "learner"


def test_an_unknown_type_is_refused(session, now):
    with pytest.raises(events.UnknownEventType):
        events.record(session, "step.complete", {}, now=now)


def test_after_reads_from_a_cursor_in_order(session, now):
    for i in range(5):
        events.record(session, events.EMAIL_BOUNCED, {"n": i}, now=now)
    session.commit()
    first, cursor = events.after(session, "0", limit=2)
    assert [e.data["n"] for e in first] == [0, 1]
    assert cursor == events.cursor_of(first[-1])
    rest, cursor = events.after(session, cursor)
    assert [e.data["n"] for e in rest] == [2, 3, 4]
    assert events.after(session, cursor) == ([], cursor)
    with pytest.raises(events.BadCursor):
        events.after(session, "1; DROP TABLE event")


@pytest.mark.skipif(not TEST_DATABASE_URL.startswith("postgresql"), reason="PostgreSQL only")
def test_a_cursor_never_passes_an_event_a_slower_transaction_commits_later(engine, now):
    # On PostgreSQL the slower transaction takes the lower id, and the faster one
    # commits first: paging by id alone would read 2, then never see 1.
    slow, fast, reader = Session(engine), Session(engine), Session(engine)
    try:
        events.record(slow, events.EMAIL_BOUNCED, {"who": "slow"}, now=now)
        slow.flush()
        events.record(fast, events.EMAIL_BOUNCED, {"who": "fast"}, now=now)
        fast.commit()
        seen, cursor = events.after(reader, "0")
        reader.commit()
        assert seen == []  # held back while an older transaction is still writing
        slow.commit()
        seen, cursor = events.after(reader, cursor)
        assert [e.data["who"] for e in seen] == ["slow", "fast"]
        reader.commit()
        assert events.after(reader, cursor)[0] == []
    finally:
        for s in (slow, fast, reader):
            s.close()
