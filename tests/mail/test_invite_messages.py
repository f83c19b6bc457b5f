"""Invite updates and cancellations, from the real changes that cause them to the inbox."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest
import vobject
from icalendar import Calendar
from sqlmodel import select

from nudger.enrolments import changes as enrolments
from nudger.enrolments.journey_edits import apply_sync
from nudger.journeys.spec import JourneySpec
from nudger.models import Enrolment, EnrolmentStep, Journey, Outbox
from nudger.outbox.sending import send_batch
from nudger.progress import complete_step
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_person
from tests.smtpd import SmtpSink

READ = {"key": "read", "day": 0, "kind": "read", "title": "Read the one-pager", "minutes": 15}
WORKSHOP = {"key": "workshop", "day": 0, "kind": "workshop", "title": "Feedback workshop",
            "minutes": 90, "at": "2027-03-17T14:00"}  # fmt: skip
START = date(2027, 3, 1)  # a Monday; London is on GMT until 28 March
NINE = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
LATER = NINE + timedelta(hours=1)
MOVED = {**WORKSHOP, "at": "2027-03-18T15:30"}


def spec(steps: list[dict]) -> JourneySpec:
    return JourneySpec.model_validate(
        {
            "slug": "feedback",
            "title": "Giving feedback",
            "goal": ["Gives feedback within two days"],
            "schedule": {"send_time": "09:00"},
            "steps": steps,
        }
    )


@pytest.fixture
def sink():
    with SmtpSink() as server:
        yield server


@pytest.fixture
def ada(session, settings, engine, sink) -> Enrolment:
    """Ada, on a journey with a workshop on 17 March, has had her first email and invite."""
    apply_sync(session, spec([READ, WORKSHOP]), NINE - timedelta(days=7))
    session.commit()
    journey = session.exec(select(Journey)).one()
    person = make_person(session, "ada@example.com", "Ada Lovelace")
    enrolment = make_enrolment(session, person, journey, START)
    deliver(session, engine, settings, sink, NINE)
    assert [m.message["X-Nudger-Kind"] for m in sink.messages] == ["step"]
    return enrolment


def deliver(session, engine, settings, sink, when: datetime) -> dict:
    """Tick at `when` and send every pending row to the sink, as the worker would."""
    tick(session, settings, when, enqueue=False)
    ids = list(session.exec(select(Outbox.id).where(Outbox.state == "pending")))
    counts = send_batch(engine, dataclasses.replace(settings, smtp_url=sink.url()), ids, when)
    session.expire_all()
    return counts


def workshop_row(session, enrolment: Enrolment) -> EnrolmentStep:
    session.expire_all()
    rows = session.exec(select(EnrolmentStep).where(EnrolmentStep.enrolment_id == enrolment.id))
    return next(es for es in rows if es.invite_start and es.invite_start.day >= 17)


def events(msg) -> list:
    """Return the workshop VEVENT of the inline part and of the attachment, both parsed."""
    inline = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    attached = next(p for p in msg.walk() if p.get_content_type() == "application/ics")
    found = []
    for part in (inline, attached):
        cal = Calendar.from_ical(part.get_payload(decode=True))
        found += [ev for ev in cal.walk("VEVENT") if "workshop" in str(ev["uid"])]
    return found


def last(sink, kind: str):
    sent = [m.message for m in sink.messages if m.message["X-Nudger-Kind"] == kind]
    assert sent, f"no {kind} email"
    return sent[-1]


def the_first_invite(sink):
    step = last(sink, "step")
    cal = Calendar.from_ical(
        next(p for p in step.walk() if p.get_content_type() == "application/ics" and
             b"workshop" in p.get_payload(decode=True)).get_payload(decode=True)
    )  # fmt: skip
    return cal.walk("VEVENT")[0]


def test_moving_a_workshop_sends_a_request_with_the_same_uid_and_a_higher_sequence(
    session, settings, engine, sink, ada
):
    apply_sync(session, spec([READ, MOVED]), LATER)
    session.commit()
    counts = deliver(session, engine, settings, sink, LATER)

    msg = last(sink, "invite-update")
    inline = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    original = the_first_invite(sink)
    assert counts["sent"] == 1
    assert msg["Subject"] == "New time for step 2: Feedback workshop"
    assert inline.get_param("method") == "REQUEST"
    assert "Thursday 18 March at 15:30" in msg.get_body(("plain",)).get_content()
    for event in events(msg):
        assert event["uid"] == original["uid"]
        assert event["sequence"] == original["sequence"] + 1 == 1
        assert event["status"] == "CONFIRMED"
        start = event.decoded("dtstart")
        assert (start.day, start.hour, start.minute) == (18, 15, 30)
        assert event["dtstart"].params["TZID"] == "Europe/London"
        assert event.decoded("dtend") - event.decoded("dtstart") == timedelta(minutes=90)
    parsed = vobject.readOne(inline.get_payload(decode=True).decode())
    assert parsed.method.value == "REQUEST"
    assert parsed.vevent.sequence.value == "1"
    assert parsed.vevent.dtstart.value.hour == 15


def test_withdrawing_sends_a_cancel_with_the_same_uid_and_a_higher_sequence(
    session, settings, engine, sink, ada
):
    enrolments.withdraw(session, ada, NINE + timedelta(hours=1))
    session.commit()
    deliver(session, engine, settings, sink, NINE + timedelta(hours=1))

    msg = last(sink, "invite-cancel")
    inline = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    original = the_first_invite(sink)
    text = msg.get_body(("plain",)).get_content()
    assert msg["Subject"] == "Cancelled: Feedback workshop"
    assert inline.get_param("method") == "CANCEL"
    assert "You're no longer enrolled in Giving feedback" in text
    assert "/me/" not in text  # nothing to follow any more
    for event in events(msg):
        assert (event["uid"], event["sequence"], event["status"]) == (
            original["uid"], original["sequence"] + 1, "CANCELLED",
        )  # fmt: skip
        assert event.decoded("dtstart") == original.decoded("dtstart")
        assert "valarm" not in [c.name.lower() for c in event.subcomponents]
    parsed = vobject.readOne(inline.get_payload(decode=True).decode())
    assert parsed.method.value == "CANCEL"
    assert parsed.vevent.status.value == "CANCELLED"


def test_a_pause_cancels_the_invite_and_resuming_restores_it_with_a_higher_sequence(
    session, settings, engine, sink, ada
):
    enrolments.pause(session, ada, NINE + timedelta(hours=1))
    session.commit()
    deliver(session, engine, settings, sink, NINE + timedelta(hours=1))
    cancel = last(sink, "invite-cancel")
    enrolments.resume(session, ada, NINE + timedelta(days=1, hours=1))
    session.commit()
    deliver(session, engine, settings, sink, NINE + timedelta(days=1, hours=1))
    update = last(sink, "invite-update")

    assert "is paused, so we've freed up this time" in cancel.get_body(("plain",)).get_content()
    assert [e["sequence"] for e in events(cancel)] == [1, 1]
    assert [e["sequence"] for e in events(update)] == [2, 2]
    assert {str(e["uid"]) for e in events(cancel) + events(update)} == {
        str(the_first_invite(sink)["uid"])
    }


def test_a_cancel_for_a_pause_resumed_before_it_went_out_is_not_sent(
    session, settings, engine, sink, ada
):
    enrolments.pause(session, ada, NINE + timedelta(hours=1))
    session.commit()
    enrolments.resume(session, ada, NINE + timedelta(hours=2))
    session.commit()
    counts = deliver(session, engine, settings, sink, NINE + timedelta(hours=2))

    # Nothing moved: the calendar keeps the invites it has, and hears nothing.
    kinds = {row.kind: row.state for row in session.exec(select(Outbox))}
    assert kinds == {"step": "sent", "invite-cancel": "cancelled"}
    assert counts == {"skipped": 0}
    assert [m.message["X-Nudger-Kind"] for m in sink.messages] == ["step"]


def test_removing_a_step_cancels_its_invite_and_says_why(session, settings, engine, sink, ada):
    apply_sync(session, spec([READ]), NINE + timedelta(hours=1))
    session.commit()
    deliver(session, engine, settings, sink, NINE + timedelta(hours=1))

    msg = last(sink, "invite-cancel")
    text = msg.get_body(("plain",)).get_content()
    assert "This step has been taken out of Giving feedback" in text
    assert {e["status"] for e in events(msg)} == {"CANCELLED"}


def test_a_step_that_stops_blocking_time_has_its_hold_cancelled_but_stays(
    session, settings, engine, sink, ada
):
    untimed = {k: v for k, v in WORKSHOP.items() if k not in ("minutes", "at")}
    apply_sync(session, spec([READ, untimed]), NINE + timedelta(hours=1))
    session.commit()
    deliver(session, engine, settings, sink, NINE + timedelta(hours=1))

    text = last(sink, "invite-cancel").get_body(("plain",)).get_content()
    assert "This step no longer needs time set aside" in text
    assert "It's still part of Giving feedback" in text


def test_an_update_for_a_step_done_since_is_not_sent(session, settings, engine, sink, ada):
    apply_sync(session, spec([READ, MOVED]), LATER)
    session.commit()
    complete_step(session, workshop_row(session, ada).id, NINE + timedelta(hours=2))
    session.commit()
    counts = deliver(session, engine, settings, sink, NINE + timedelta(hours=2))

    assert counts == {"cancelled": 1, "skipped": 0}
    assert [m.message["X-Nudger-Kind"] for m in sink.messages] == ["step"]
