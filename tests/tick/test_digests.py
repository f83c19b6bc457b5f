"""Manager digests: who gets one, when, and what it says."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

from sqlalchemy import insert, update
from sqlmodel import Session, select

from nudger import tokens
from nudger.calendar import WorkCalendar
from nudger.models import (
    AuditLog,
    CapturedMail,
    DigestQueue,
    Enrolment,
    EnrolmentStep,
    EscalationEvent,
    Outbox,
    Person,
)
from nudger.outbox.sending import send_batch
from nudger.progress import complete_step, mark_done
from nudger.tick.digests import DigestSchedule, last_digest_time, schedule_for
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person

ONE_STEP = [{"key": "read", "day": 0, "kind": "read", "title": "Read the one-pager", "minutes": 15}]
START = date(2027, 3, 1)  # a Monday; due Wednesday 3rd, the manager hears on Monday 8th 09:00
WORKWEEK = frozenset(range(5))


def at(day: int, hour: int = 9, minute: int = 0) -> datetime:
    """Return a UTC instant in March 2027."""
    return datetime(2027, 3, day, hour, minute, tzinfo=UTC)


def ticks(session: Session, settings, first: datetime, last: datetime) -> list[Outbox]:
    """Tick every hour from `first` to `last` (and at `last`); return the digest rows written."""
    before = set(session.exec(select(Outbox.id)).all())
    when = first
    while when <= last:
        tick(session, settings, when, enqueue=False)
        when += timedelta(hours=1)
    if when - timedelta(hours=1) != last:
        tick(session, settings, last, enqueue=False)
    session.expire_all()
    rows = session.exec(select(Outbox).where(Outbox.kind == "digest").order_by(Outbox.id)).all()
    return [row for row in rows if row.id not in before]


def a_team(session, manager_tz: str = "Europe/London", country: str = "GB", learners: int = 1):
    """Return a journey, the manager and their learners (all on the journey from START)."""
    journey = make_journey(session, steps=ONE_STEP)
    skip = make_person(session, "sofia@example.com", "Sofia Skip")
    manager = make_person(
        session, "max@example.com", "Max Manager", skip, timezone=manager_tz, country=country
    )
    people = [
        make_person(session, f"learner{i}@example.com", f"Learner {i}", manager=manager)
        for i in range(learners)
    ]
    for person in people:
        make_enrolment(session, person, journey, START)
    return journey, manager, people


def sent_message(session, settings, row: Outbox, when: datetime):
    """Send one outbox row through the capture transport; return the parsed email."""
    send_batch(session.get_bind(), settings, [row.id], when)
    session.expire_all()
    message_id = session.get(Outbox, row.id).message_id
    mail = session.exec(select(CapturedMail).where(CapturedMail.message_id == message_id)).one()
    return message_from_bytes(mail.raw, policy=default_policy)


def text_of(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def test_the_digest_goes_at_the_managers_local_digest_time(session, settings):
    a_team(session, manager_tz="America/New_York", country="US")

    assert ticks(session, settings, at(1, 0), at(8, 12, 59)) == []
    [digest] = ticks(session, settings, at(8, 13), at(8, 13))  # 08:00 in New York (EST)

    assert (digest.to_email, digest.dedupe_key) == (
        "max@example.com",
        "digest:max@example.com:2027-03-08",
    )


def test_events_after_the_digest_time_wait_for_the_next_one(session, settings):
    a_team(session)  # London: digest 08:00, the event comes at 09:00 on Monday 8th

    digests = ticks(session, settings, at(1, 0), at(10, 23))

    assert [(d.to_email, d.created_at) for d in digests] == [("max@example.com", at(9, 8))]


def test_one_digest_per_recipient_per_period_names_everyone(session, settings):
    _, _, people = a_team(session, learners=3)
    # One learner is in New York: their step escalates on Monday 8th at 14:00 UTC.
    session.execute(
        update(Person).where(Person.id == people[2].id).values(timezone="America/New_York")
    )
    session.commit()
    [digest] = ticks(session, settings, at(1, 0), at(9, 8))  # two events on Monday 8th

    msg = sent_message(session, settings, digest, at(9, 8))

    assert msg["Subject"] == "3 people on your team could use a nudge"
    for person in people:
        assert f"{person.name} <{person.email}>" in text_of(msg).splitlines()


def test_a_second_decision_in_the_same_period_sends_nothing(session, settings):
    a_team(session)
    [first] = ticks(session, settings, at(1, 0), at(9, 8))
    # As if a tick beside the first had read the events before the first marked them.
    session.execute(insert(DigestQueue).from_select(["event_id"], select(EscalationEvent.id)))
    session.commit()

    again = ticks(session, settings, at(9, 8, 30), at(9, 23))

    assert first.dedupe_key == "digest:max@example.com:2027-03-09"
    assert again == []


def test_nothing_to_report_means_no_digest(session, settings):
    a_team(session)
    ticks(session, settings, at(1, 0), at(1, 9))
    complete_step(session, session.exec(select(EnrolmentStep)).one().id, at(1, 12))

    assert ticks(session, settings, at(1, 13), at(20, 12)) == []


def test_a_manager_with_reports_on_two_journeys_gets_one_digest(session, settings):
    _, _, [learner] = a_team(session)
    other = make_journey(session, slug="coaching-basics", steps=ONE_STEP)
    make_enrolment(session, learner, other, START)

    digests = ticks(session, settings, at(1, 0), at(9, 8))
    msg = sent_message(session, settings, digests[0], at(9, 8))

    assert len(digests) == 1
    text = text_of(msg)
    assert "Giving Feedback · behind by 3 working days · no activity yet" in text
    assert "Coaching Basics · behind by 3 working days · no activity yet" in text


def test_a_manager_who_chose_weekly_hears_on_monday(session, settings):
    _, manager, _ = a_team(session)
    manager.digest_every = "week"
    session.commit()

    digests = ticks(session, settings, at(1, 0), at(19, 23))

    # The event came on Monday 8th at 09:00, after that Monday's 08:00 digest time.
    assert [(d.created_at, d.dedupe_key) for d in digests if d.to_email == manager.email] == [
        (at(15, 8), "digest:max@example.com:2027-W11")
    ]


def test_a_manager_who_stopped_digests_gets_none_and_their_manager_is_told_instead(
    session, settings
):
    _, manager, _ = a_team(session)
    manager.digest_every = "never"
    session.commit()

    digests = ticks(session, settings, at(1, 0), at(9, 23))

    # The manager's escalation (Monday 8th) climbs to the skip-level's next digest.
    assert [(d.to_email, d.created_at) for d in digests] == [("sofia@example.com", at(9, 8))]
    text = text_of(sent_message(session, settings, digests[0], at(9, 8)))
    assert "Their manager has already been told" not in text
    assert "Their manager has stopped the team digest, so you hear about them instead." in text


def test_the_digest_lists_who_is_behind_with_the_team_on_track(session, settings):
    _, manager, _ = a_team(session, learners=3)
    # Two of the three keep up.
    ticks(session, settings, at(1, 0), at(1, 9))
    for es in session.exec(select(EnrolmentStep).order_by(EnrolmentStep.id)).all()[1:]:
        complete_step(session, es.id, at(1, 12))
    [digest] = ticks(session, settings, at(1, 13), at(9, 8))

    msg = sent_message(session, settings, digest, at(9, 8))
    text = text_of(msg)

    assert msg["Subject"] == "Learner 0 is behind by 3 working days on Giving Feedback"
    assert "Learner 0 <learner0@example.com>" in text
    assert "- Read the one-pager (3 working days overdue)" in text.splitlines()
    assert "learner1@example.com" not in text and "learner2@example.com" not in text
    assert "2 other people are on track." in text.splitlines()
    lines = text.splitlines()
    team_url = lines[lines.index("See everyone's progress:") + 1]
    assert tokens.read_token(settings, "team", team_url.rsplit("/team/", 1)[1]) == manager.id
    prefs = str(msg["List-Unsubscribe"]).strip().strip("<>")
    assert tokens.read_token(settings, "prefs", prefs.rsplit("/prefs/", 1)[1]) == manager.id
    assert prefs in lines
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = msg.get_body(("html",)).get_content()
    assert "Learner 0" in html and "Learner 1" not in html


def test_the_digest_says_when_someone_behind_was_last_active(session, settings):
    steps = [*ONE_STEP, {"key": "discuss", "day": 1, "title": "Discuss it"}]
    journey = make_journey(session, steps=steps)
    manager = make_person(session, "max@example.com", "Max Manager")
    learner = make_person(session, manager=manager)
    make_enrolment(session, learner, journey, START)
    ticks(session, settings, at(1, 0), at(1, 9))
    complete_step(session, session.exec(select(EnrolmentStep)).one().id, at(1, 17))

    # "discuss": sent Tuesday 2nd, due Thursday 4th; the manager hears on Tuesday 9th.
    [digest] = ticks(session, settings, at(1, 18), at(10, 8))
    text = text_of(sent_message(session, settings, digest, at(10, 8)))

    line = "Giving Feedback · behind by 3 working days · last active Monday 1 March"
    assert line in text.splitlines()
    assert "- Discuss it (3 working days overdue)" in text.splitlines()
    assert "Read the one-pager" not in text


def test_the_digest_offers_to_confirm_a_step_the_learner_says_is_done(session, settings):
    journey = make_journey(session, steps=[{**ONE_STEP[0], "confirmed_by": "manager"}])
    manager = make_person(session, "max@example.com", "Max Manager")
    learner = make_person(session, manager=manager)
    make_enrolment(session, learner, journey, START)
    ticks(session, settings, at(1, 0), at(1, 9))
    complete_step(session, session.exec(select(EnrolmentStep)).one().id, at(1, 12))

    [digest] = ticks(session, settings, at(1, 13), at(2, 8))  # the next morning
    msg = sent_message(session, settings, digest, at(2, 8))
    text = text_of(msg)

    assert msg["Subject"] == "Ada Lovelace is waiting for your confirmation"
    assert "Waiting for you to confirm it. Confirm here:" in text
    confirm = text.split("Confirm here:")[1].split()[0]
    assert confirm.endswith(f"#person-{learner.id}")
    token = confirm.split("/team/")[1].split("#")[0]
    assert tokens.read_token(settings, "team", token) == manager.id
    assert "behind" not in text


def test_a_digest_whose_people_all_caught_up_before_sending_is_not_sent(session, settings):
    a_team(session)
    [digest] = ticks(session, settings, at(1, 0), at(9, 8))
    complete_step(session, session.exec(select(EnrolmentStep)).one().id, at(9, 8, 1))

    counts = send_batch(session.get_bind(), settings, [digest.id], at(9, 8, 2))

    assert counts == {"skipped": 0, "cancelled": 1}


def test_an_owner_who_is_not_a_person_hears_in_the_default_zone(session, settings):
    settings.default_timezone = "Asia/Tokyo"
    journey = make_journey(session, steps=ONE_STEP)
    learner = make_person(session)  # no manager: the owner hears at the manager threshold
    make_enrolment(session, learner, journey, START)

    [digest] = ticks(session, settings, at(1, 0), at(9, 0))  # 09:00 in Tokyo is 00:00 UTC
    msg = sent_message(session, settings, digest, at(9, 0))

    assert digest.created_at == at(8, 23)  # Tuesday 9th 08:00 in Tokyo
    assert digest.to_email == "learning@example.com"
    assert msg["List-Unsubscribe"] is None
    assert "http://nudger.test/admin/" in text_of(msg).splitlines()
    assert "Hi there," in text_of(msg)


def test_the_skip_level_hears_in_their_own_words(session, settings):
    a_team(session)

    digests = ticks(session, settings, at(1, 0), at(16, 8))
    skip = [d for d in digests if d.to_email == "sofia@example.com"]
    msg = sent_message(session, settings, skip[0], at(16, 8))

    assert skip[0].created_at == at(16, 8)  # skip-level threshold Monday 15th, 09:00
    assert msg["Subject"] == "Learner 0 is behind by 8 working days on Giving Feedback"
    assert "Their manager has already been told" in text_of(msg)


def test_the_audit_log_says_whom_each_digest_was_about(session, settings):
    _, _, people = a_team(session, learners=2)

    [digest] = ticks(session, settings, at(1, 0), at(9, 8))

    audit = session.exec(select(AuditLog).where(AuditLog.action == "digest.queued")).one()
    assert (audit.actor, audit.subject_type, audit.subject_id) == ("tick", "outbox", digest.id)
    assert audit.detail["recipient"] == "max@example.com"
    assert audit.detail["learners"] == [p.email for p in people]
    events = session.exec(select(EscalationEvent.id)).all()
    assert audit.detail["event_ids"] == sorted(events)


def test_daily_digests_skip_weekends_and_holidays_and_follow_the_clocks():
    cal = WorkCalendar(weekdays=WORKWEEK, country="GB")
    daily = DigestSchedule(every="day", at=time(8, 0))

    # Monday 29th is on BST: 08:00 in London is 07:00 UTC.
    assert last_digest_time(daily, cal, "Europe/London", at(29, 7)) == (at(29, 7), "2027-03-29")
    # Just before: the weekend and Good Friday (26th) are skipped, back to Thursday 25th.
    assert last_digest_time(daily, cal, "Europe/London", at(29, 6, 59)) == (
        at(25, 8),
        "2027-03-25",
    )


def test_a_weekly_digest_on_a_holiday_moves_to_the_next_working_day():
    cal = WorkCalendar(weekdays=WORKWEEK, country="FR")  # Easter Monday, 29th, is a holiday
    weekly = DigestSchedule(every="week", at=time(8, 0), on=0)

    assert last_digest_time(weekly, cal, "Europe/Paris", at(29, 12)) == (at(22, 7), "2027-W12")
    assert last_digest_time(weekly, cal, "Europe/Paris", at(30, 6)) == (at(30, 6), "2027-W13")


def test_the_recipients_own_choice_wins_and_otherwise_daily_and_earliest_win():
    weekly_thu = {"every": "week", "at": "09:30", "on": "thu"}
    daily_8 = {"every": "day", "at": "08:00", "on": "mon"}

    assert schedule_for(None, [weekly_thu]) == DigestSchedule("week", time(9, 30), 3)
    assert schedule_for(None, [weekly_thu, daily_8]) == DigestSchedule("day", time(8, 0), 3)
    assert schedule_for("week", [daily_8]) == DigestSchedule("week", time(8, 0), 0)
    assert schedule_for("nonsense", [daily_8]) == DigestSchedule("day", time(8, 0), 0)


def test_a_digest_takes_its_events_off_the_queue_and_names_them(session, settings):
    """An escalation waits in the queue until a digest carries it; the digest lists it."""
    a_team(session, learners=2)
    ticks(session, settings, at(1, 0), at(8, 12))  # escalated on Monday 8th, after the digest
    waiting = set(session.exec(select(DigestQueue.event_id)).all())
    events = session.exec(select(EscalationEvent).order_by(EscalationEvent.id)).all()
    assert [e.recipient_email for e in events] == ["max@example.com"] * 2  # one per learner
    assert waiting == {e.id for e in events}

    [digest] = ticks(session, settings, at(8, 13), at(9, 8))

    assert (digest.to_email, digest.payload["event_ids"]) == (
        "max@example.com", [e.id for e in events]
    )  # fmt: skip
    assert session.exec(select(DigestQueue)).all() == []
    assert ticks(session, settings, at(9, 9), at(12, 12)) == []  # carried once


def test_a_step_done_before_the_digest_leaves_the_queue(session, settings):
    """Resolved: nobody needs to hear of it, and nothing is left waiting for a digest."""
    a_team(session)
    ticks(session, settings, at(1, 0), at(8, 12))
    assert session.exec(select(DigestQueue)).all() != []

    complete_step(session, session.exec(select(EnrolmentStep)).one().id, at(8, 14))

    assert session.exec(select(DigestQueue)).all() == []
    assert ticks(session, settings, at(8, 15), at(16, 12)) == []


def test_a_step_escalated_while_it_was_being_marked_done_leaves_nothing_queued(session, settings):
    """The done press read the step before the tick escalated it: its events still go."""
    a_team(session)
    ticks(session, settings, at(1, 0), at(1, 12))  # step sent, not escalated yet
    es = session.exec(select(EnrolmentStep)).one()
    enrolment = session.get(Enrolment, es.enrolment_id)
    assert es.escalation_level == 0
    # Meanwhile the tick escalates it (Core statements: `es` in memory stays as it was read).
    connection = session.connection()
    connection.execute(
        update(EnrolmentStep.__table__)
        .where(EnrolmentStep.__table__.c.id == es.id)
        .values(escalation_level=1)
    )
    event_id = connection.execute(
        insert(EscalationEvent.__table__).values(
            enrolment_step_id=es.id, enrolment_id=es.enrolment_id, level="manager",
            recipient_email="max@example.com", created_at=at(1, 12),
        )
    ).inserted_primary_key[0]  # fmt: skip
    connection.execute(insert(DigestQueue.__table__).values(event_id=event_id))

    mark_done(session, es, enrolment, at(1, 13), "learner")
    session.commit()

    assert session.exec(select(DigestQueue)).all() == []
    assert session.get(EscalationEvent, event_id).resolved_at is not None
