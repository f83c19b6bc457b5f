"""Reminders to learners and escalation events, as the real tick decides them."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlmodel import Session, select

from nudger import tokens
from nudger.admins import create_or_update_admin
from nudger.enrolments.changes import pause, withdraw
from nudger.models import (
    AuditLog,
    CapturedMail,
    Enrolment,
    EnrolmentStep,
    EscalationEvent,
    Outbox,
)
from nudger.outbox.sending import send_batch
from nudger.progress import complete_step, snooze
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person

ONE_STEP = [{"key": "read", "day": 0, "kind": "read", "title": "Read the one-pager", "minutes": 15}]
START = date(2027, 3, 1)  # a Monday; London is on GMT (UTC) until 28 March


def at(day: int, hour: int = 9, month: int = 3) -> datetime:
    """Return a UTC instant in 2027."""
    return datetime(2027, month, day, hour, 0, tzinfo=UTC)


def run(session: Session, settings, when: datetime) -> list[Outbox]:
    """Tick at `when`; return the outbox rows it wrote."""
    before = session.exec(select(Outbox.id)).all()
    tick(session, settings, when, enqueue=False)
    session.expire_all()
    return session.exec(select(Outbox).where(Outbox.id.not_in(before or [0]))).all()


def daily(session: Session, settings, first: datetime, days: int) -> list[tuple[date, Outbox]]:
    """Tick hourly for `days` days; return (UTC date, row) for every row written."""
    written = []
    for hour in range(days * 24):
        when = first + timedelta(hours=hour)
        written += [(when.date(), row) for row in run(session, settings, when)]
    return written


def team(session):
    """Return a journey and a learner whose manager has a manager."""
    journey = make_journey(session, steps=ONE_STEP)
    skip = make_person(session, "sofia@example.com", "Sofia Skip")
    manager = make_person(session, "max@example.com", "Max Manager", manager=skip)
    learner = make_person(session, "nia@example.com", "Nia Never", manager=manager)
    return journey, learner


def reminders(rows) -> list:
    return [(d, row) for d, row in rows if row.kind == "reminder"]


def events(session) -> list[EscalationEvent]:
    session.expire_all()
    return list(session.exec(select(EscalationEvent).order_by(EscalationEvent.id)))


def test_the_first_reminder_comes_one_working_day_after_the_due_date(session, settings):
    journey, learner = team(session)
    enrolment = make_enrolment(session, learner, journey, START)

    run(session, settings, at(1))  # sent Monday 09:00, due Wednesday 09:00
    session.refresh(enrolment)

    assert enrolment.next_action_at == at(4)  # Thursday: the tick looks at nothing before
    assert run(session, settings, at(4) - timedelta(minutes=1)) == []
    [reminder] = run(session, settings, at(4))
    assert (reminder.kind, reminder.to_email) == ("reminder", "nia@example.com")


def test_each_reminder_threshold_sends_once_and_then_they_stop(session, settings):
    journey, learner = team(session)
    make_enrolment(session, learner, journey, START)

    sent = reminders(daily(session, settings, at(1, 0), 30))

    # reminders: after 1 and 4 working days overdue (due Wednesday 3rd)
    assert [d for d, _ in sent] == [date(2027, 3, 4), date(2027, 3, 9)]


def test_one_reminder_names_every_step_overdue(session, settings):
    steps = [
        {"key": "read", "day": 0, "title": "Read the one-pager"},
        {"key": "discuss", "day": 1, "title": "Discuss it"},
    ]
    journey = make_journey(session, steps=steps)
    learner = make_person(session)
    make_enrolment(session, learner, journey, START)
    daily(session, settings, at(1, 0), 4)  # through Thursday: "read" reminded once

    [reminder] = run(session, settings, at(5))  # Friday: "discuss" is one day overdue
    send_batch(session.get_bind(), settings, [reminder.id], at(5))
    text = _text(session, reminder)

    assert "these 2 steps in Giving Feedback are still open" in text
    assert "Read the one-pager" in text and "2 working days overdue" in text
    assert "Discuss it" in text and "1 working day overdue" in text


@pytest.mark.parametrize("state", ["done", "paused", "withdrawn", "muted", "awaiting"])
def test_no_reminder_for_a_step_that_is_closed_paused_muted_or_with_the_manager(
    session, settings, state
):
    steps = [{**ONE_STEP[0], "confirmed_by": "manager"}] if state == "awaiting" else ONE_STEP
    journey = make_journey(session, steps=steps)
    learner = make_person(session)
    enrolment = make_enrolment(session, learner, journey, START)
    run(session, settings, at(1))
    es = session.exec(select(EnrolmentStep)).one()
    if state in ("done", "awaiting"):
        complete_step(session, es.id, at(1, 12))
    elif state == "paused":
        pause(session, enrolment, at(1, 12))
    elif state == "withdrawn":
        withdraw(session, enrolment, at(1, 12))
    else:
        enrolment.reminders_muted = True
    session.commit()

    assert reminders(daily(session, settings, at(1, 13), 20)) == []


def test_unmuting_brings_the_next_reminder_not_the_ones_missed(session, settings):
    journey, learner = team(session)
    enrolment = make_enrolment(session, learner, journey, START, reminders_muted=True)
    daily(session, settings, at(1, 0), 5)  # the first threshold (Thursday) passes muted
    enrolment = session.get(Enrolment, enrolment.id)
    enrolment.reminders_muted = False
    session.commit()

    sent = reminders(daily(session, settings, at(6, 0), 10))

    assert [d for d, _ in sent] == [date(2027, 3, 9)]


def test_a_snooze_delays_reminders_but_not_escalation(session, settings):
    journey, learner = team(session)
    make_enrolment(session, learner, journey, START)
    run(session, settings, at(1))
    es = session.exec(select(EnrolmentStep)).one()
    until = snooze(session, settings, es, at(4, 8))  # Thursday, before its first reminder

    written = daily(session, settings, at(4, 8), 6)

    assert until == at(5)  # the learner's next working day, at the send time
    assert [d for d, _ in reminders(written)] == [date(2027, 3, 5), date(2027, 3, 9)]
    [event] = events(session)
    assert (event.level, event.created_at) == ("manager", at(8))  # 3 working days overdue


def test_escalations_climb_from_manager_to_skip_level_to_owner(session, settings):
    journey, learner = team(session)
    make_enrolment(session, learner, journey, START)

    daily(session, settings, at(1, 0), 24)

    assert [(e.level, e.recipient_email, e.created_at) for e in events(session)] == [
        ("manager", "max@example.com", at(8)),  # due Wed 3rd + 3 working days
        ("skip_level", "sofia@example.com", at(15)),  # + 8
        ("admin", "learning@example.com", at(19)),  # + 12
    ]


def test_a_learner_without_a_manager_escalates_to_the_owner_once(session, settings):
    journey = make_journey(session, steps=ONE_STEP)
    learner = make_person(session)
    make_enrolment(session, learner, journey, START)

    daily(session, settings, at(1, 0), 24)

    assert [(e.level, e.recipient_email, e.created_at) for e in events(session)] == [
        ("admin", "learning@example.com", at(8)),  # at the manager threshold, once
    ]
    audit = session.exec(select(AuditLog).where(AuditLog.action == "escalation.created")).one()
    assert audit.detail["why"] == "no manager for this learner; next level up"


def test_without_a_journey_owner_every_admin_user_hears(session, settings):
    journey = make_journey(session, steps=ONE_STEP, owner=None)
    for email in ("ops@example.com", "lnd@example.com"):
        create_or_update_admin(session, email, "correct horse battery", at(1))
    session.commit()
    manager = make_person(session, "max@example.com", "Max Manager")
    learner = make_person(session, manager=manager)
    make_enrolment(session, learner, journey, START)

    daily(session, settings, at(1, 0), 24)

    admin = [(e.recipient_email, e.created_at) for e in events(session) if e.level == "admin"]
    # No skip-level either: the skip_level threshold (day 8) already reaches the admins.
    assert sorted(admin) == [("lnd@example.com", at(15)), ("ops@example.com", at(15))]


def test_completing_the_step_resolves_its_events_and_stops_everything(session, settings):
    journey, learner = team(session)
    make_enrolment(session, learner, journey, START)
    daily(session, settings, at(1, 0), 10)  # through Wednesday 10th: manager told
    es = session.exec(select(EnrolmentStep)).one()

    complete_step(session, es.id, at(11, 10))
    after = daily(session, settings, at(11, 11), 20)

    assert after == []
    assert [e.resolved_at for e in events(session)] == [at(11, 10)]


def test_a_second_tick_at_the_same_moment_writes_nothing_more(session, settings):
    journey, learner = team(session)
    enrolment = make_enrolment(session, learner, journey, START)
    run(session, settings, at(1))
    first = run(session, settings, at(8))  # a reminder, an escalation
    enrolment = session.get(Enrolment, enrolment.id)
    enrolment.next_action_at = at(8)
    es = session.exec(select(EnrolmentStep)).one()
    es.reminders_sent, es.escalation_level = 0, 0  # as a tick that read before the first wrote
    session.commit()
    audits = len(session.exec(select(AuditLog)).all())

    second = run(session, settings, at(8))

    assert [row.kind for row in first] == ["reminder"]
    assert second == []
    assert len(events(session)) == 1
    assert len(session.exec(select(AuditLog)).all()) == audits


def test_two_ticks_running_at_once_send_one_reminder(session, settings, engine):
    journey, learner = team(session)
    make_enrolment(session, learner, journey, START)
    run(session, settings, at(1))
    barrier, errors = threading.Barrier(2), []

    def one_tick() -> None:
        with Session(engine, expire_on_commit=False) as own:
            barrier.wait()
            try:
                tick(own, settings, at(4), enqueue=False)
            except Exception as exc:  # reported below: a thread cannot fail the test
                errors.append(exc)

    threads = [threading.Thread(target=one_tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(session.exec(select(Outbox).where(Outbox.kind == "reminder")).all()) == 1


def test_thresholds_count_working_days_across_a_weekend_and_holidays(session, settings):
    journey = make_journey(session, steps=ONE_STEP)
    gb = make_person(session, "gb@example.com", "In London")
    us = make_person(
        session, "us@example.com", "In New York", timezone="America/New_York", country="US"
    )
    for person in (gb, us):
        make_enrolment(session, person, journey, date(2027, 3, 24))  # Wednesday
    written = daily(session, settings, at(24, 0), 14)

    def first(email: str, kind: str) -> datetime:
        return min(r.created_at for _, r in written if r.to_email == email and r.kind == kind)

    # GB: Good Friday (26th) is a holiday (Easter Monday is not, UK-wide), the weekend
    # follows and the clocks go forward on the 28th: due Monday 29th, reminded Tuesday
    # 30th at 09:00 BST (08:00 UTC).
    assert first("gb@example.com", "reminder") == at(30, 8)
    # New York has neither holiday: due Fri 26th, reminded Mon 29th at 09:00 EDT.
    assert first("us@example.com", "reminder") == at(29, 13)
    gb_event, us_event = sorted(events(session), key=lambda e: e.created_at, reverse=True)
    assert gb_event.created_at == at(1, 8, month=4)  # Thursday: Tue, Wed, Thu after Mon 29th
    assert us_event.created_at == at(31, 13)  # Wednesday: Mon, Tue, Wed


def test_the_reminder_email_has_done_links_and_one_click_unsubscribe(session, settings):
    journey, learner = team(session)
    enrolment = make_enrolment(session, learner, journey, START)
    run(session, settings, at(1))
    [reminder] = run(session, settings, at(4))

    send_batch(session.get_bind(), settings, [reminder.id], at(4))
    msg = _message(session, reminder)

    mute = str(msg["List-Unsubscribe"]).strip().strip("<>")
    assert mute.startswith("http://nudger.test/mute/")
    assert tokens.read_token(settings, "mute", mute.rsplit("/", 1)[1]) == enrolment.id
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Nudger-Kind"] == "reminder"
    assert msg["Subject"] == "Still to do: Read the one-pager"
    text = msg.get_body(("plain",)).get_content()
    es = session.exec(select(EnrolmentStep)).one()
    done = next(line for line in text.splitlines() if "/done/" in line)
    assert tokens.read_token(settings, "done", done.rsplit("/", 1)[1]) == es.id
    assert "1 working day overdue" in text


def test_a_reminder_for_a_step_done_before_sending_is_not_sent(session, settings):
    journey, learner = team(session)
    make_enrolment(session, learner, journey, START)
    run(session, settings, at(1))
    [reminder] = run(session, settings, at(4))
    es = session.exec(select(EnrolmentStep)).one()
    complete_step(session, es.id, at(4, 9) + timedelta(seconds=5))

    counts = send_batch(session.get_bind(), settings, [reminder.id], at(4, 10))

    assert counts == {"skipped": 0, "cancelled": 1}
    assert session.exec(select(CapturedMail)).all() == []


def test_every_reminder_and_escalation_is_in_the_audit_log(session, settings):
    journey, learner = team(session)
    enrolment = make_enrolment(session, learner, journey, START)

    daily(session, settings, at(1, 0), 10)

    audits = session.exec(
        select(AuditLog).where(AuditLog.actor == "tick", AuditLog.subject_type == "enrolment")
    ).all()
    assert [(a.action, a.subject_id, a.at) for a in audits] == [
        ("reminder.queued", enrolment.id, at(4)),
        ("escalation.created", enrolment.id, at(8)),
        ("reminder.queued", enrolment.id, at(9)),
    ]
    assert audits[1].detail["recipient"] == "max@example.com"
    assert audits[1].detail["learner"] == "nia@example.com"


def test_the_manager_is_asked_to_confirm_a_step_once_it_is_sent(session, settings):
    journey = make_journey(session, steps=[{**ONE_STEP[0], "confirmed_by": "manager"}])
    manager = make_person(session, "max@example.com", "Max Manager")
    learner = make_person(session, manager=manager)
    enrolment = make_enrolment(session, learner, journey, START)

    run(session, settings, at(1))
    session.refresh(enrolment)
    assert enrolment.next_action_at == at(1)  # look again at the next tick
    assert events(session) == []
    run(session, settings, at(1, 9) + timedelta(minutes=1))

    [event] = events(session)
    assert (event.level, event.recipient_email, event.created_at) == (
        "confirm",
        "max@example.com",
        at(1, 9) + timedelta(minutes=1),
    )


def test_the_manager_is_asked_to_confirm_a_step_the_learner_says_is_done(session, settings):
    journey = make_journey(session, steps=[{**ONE_STEP[0], "confirmed_by": "manager"}])
    manager = make_person(session, "max@example.com", "Max Manager")
    learner = make_person(session, manager=manager)
    make_enrolment(session, learner, journey, START)
    run(session, settings, at(1))
    complete_step(session, session.exec(select(EnrolmentStep)).one().id, at(1, 12))

    run(session, settings, at(1, 12) + timedelta(minutes=1))  # the very next tick

    [event] = events(session)
    assert (event.level, event.recipient_email) == ("confirm", "max@example.com")


def test_next_action_is_the_sooner_of_the_next_step_and_the_next_threshold(session, settings):
    steps = [*ONE_STEP, {"key": "later", "day": 12, "title": "Later"}]
    journey = make_journey(session, steps=steps)
    learner = make_person(session)
    enrolment = make_enrolment(session, learner, journey, START)

    run(session, settings, at(1))
    session.refresh(enrolment)
    assert enrolment.next_action_at == at(4)  # the reminder comes before the step on the 17th

    daily(session, settings, at(1, 10), 15)  # through the 16th: every threshold but admin
    session.refresh(enrolment)
    assert enrolment.next_action_at == at(17)  # the next step; the admin threshold is the 19th


def _message(session, row: Outbox):
    session.expire_all()
    message_id = session.get(Outbox, row.id).message_id
    mail = session.exec(select(CapturedMail).where(CapturedMail.message_id == message_id)).one()
    return message_from_bytes(mail.raw, policy=default_policy)


def _text(session, row: Outbox) -> str:
    return _message(session, row).get_body(("plain",)).get_content()
