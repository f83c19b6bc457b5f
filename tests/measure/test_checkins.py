"""The tick's check-ins: planned once, sent at the rater's local send time, reminded once."""

from datetime import date, timedelta

from sqlmodel import select

from nudger.enrolments.changes import pause, withdraw
from nudger.models import Enrolment, Outbox
from tests.factories import make_enrolment, make_journey, make_person
from tests.measure.kit import checkin_mail, checkins, make_measured_journey, run, utc

START = date(2027, 3, 1)  # a Monday; Europe/London is on GMT until 28 March


def people(session):
    boss = make_person(session, "boss@example.com", "Grace Hopper")
    ada = make_person(session, "ada@example.com", "Ada Lovelace", manager=boss)
    dan = make_person(session, "dan@example.com", "Dan Brown", manager=boss)
    return boss, ada, dan


def test_status_quo_checkins_go_to_both_raters_on_the_start_day_before_step_one(session, settings):
    journey = make_measured_journey(session)
    _, ada, _ = people(session)
    make_enrolment(session, ada, journey, START)
    run(session, settings, utc(2027, 2, 26, 12))  # planned the Friday before: nothing sent
    assert checkin_mail(session) == []
    assert {(c.rater, c.checkpoint) for c in checkins(session)} == {
        (r, p) for r in ("learner", "manager") for p in ("start", "end", "20")
    }
    run(session, settings, utc(2027, 3, 1, 8, 59))
    assert checkin_mail(session) == []
    run(session, settings, utc(2027, 3, 1, 9, 0))
    mail = checkin_mail(session)
    assert [m.to_email for m in mail] == ["ada@example.com", "boss@example.com"]
    step = session.exec(select(Outbox).where(Outbox.kind == "step")).one()
    assert all(m.id < step.id for m in mail)  # the status quo is asked before step 1 goes


def test_a_manager_gets_one_checkin_email_for_all_reports_due(session, settings):
    journey = make_measured_journey(session)
    _, ada, dan = people(session)
    make_enrolment(session, ada, journey, START)
    make_enrolment(session, dan, journey, START)
    run(session, settings, utc(2027, 3, 1, 9))
    to_boss = [m for m in checkin_mail(session) if m.to_email == "boss@example.com"]
    assert len(to_boss) == 1
    assert len(to_boss[0].payload["checkin_ids"]) == 2


def test_a_second_journey_due_the_same_day_waits_for_the_managers_next_email(session, settings):
    early = make_measured_journey(session, "early")
    late = make_measured_journey(session, "late")
    late.spec = {**late.spec, "schedule": {**late.spec["schedule"], "send_time": "14:00"}}
    session.add(late)
    session.commit()
    _, ada, dan = people(session)
    make_enrolment(session, ada, early, START)
    make_enrolment(session, dan, late, START)
    for hour in range(8, 24):
        run(session, settings, utc(2027, 3, 1, hour))
    assert [m.to_email for m in checkin_mail(session)].count("boss@example.com") == 1
    run(session, settings, utc(2027, 3, 2, 14))  # the late journey's send time, next day
    to_boss = [m for m in checkin_mail(session) if m.to_email == "boss@example.com"]
    assert len(to_boss) == 2
    assert len(to_boss[1].payload["checkin_ids"]) == 1


def test_end_and_follow_up_checkins_come_at_the_local_send_time(session, settings):
    journey = make_measured_journey(session)
    _, ada, _ = people(session)
    make_enrolment(session, ada, journey, START)
    run(session, settings, utc(2027, 3, 1, 9))
    sent = {(c.rater, c.checkpoint): c.send_at for c in checkins(session)}
    # Last step: day 5, Monday 8 March, due 2 working days later (Wed 10): end is Thu 11.
    assert sent[("learner", "end")] == utc(2027, 3, 11, 9)
    # 20 working days after, skipping Good Friday (26 March), on British Summer Time.
    assert sent[("learner", "20")] == utc(2027, 4, 9, 8)


def test_a_journey_without_measure_sends_no_checkins(session, settings):
    journey = make_journey(session)
    _, ada, _ = people(session)
    make_enrolment(session, ada, journey, START)
    run(session, settings, utc(2027, 3, 1, 9))
    assert checkin_mail(session) == []
    assert checkins(session) == []
    assert session.exec(select(Enrolment.checkins_planned)).one() is True


def test_a_learner_without_a_manager_gets_no_manager_checkin(session, settings):
    journey = make_measured_journey(session)
    solo = make_person(session, "solo@example.com", "Solo")
    make_enrolment(session, solo, journey, START)
    run(session, settings, utc(2027, 3, 1, 9))
    assert [m.to_email for m in checkin_mail(session)] == ["solo@example.com"]
    manager_start = [
        c for c in checkins(session) if c.rater == "manager" and c.checkpoint == "start"
    ]
    assert manager_start[0].state == "no-manager"


def test_no_checkins_while_paused_or_after_withdrawal(session, settings):
    journey = make_measured_journey(session, measure={"raters": ["learner"], "at": ["end"]})
    _, ada, dan = people(session)
    paused = make_enrolment(session, ada, journey, START)
    gone = make_enrolment(session, dan, journey, START)
    run(session, settings, utc(2027, 3, 1, 9))
    pause(session, paused, utc(2027, 3, 9, 12))
    withdraw(session, gone, utc(2027, 3, 9, 12))
    session.commit()
    for day in range(11, 20):
        run(session, settings, utc(2027, 3, day, 9))
    assert checkin_mail(session) == []
    states = {c.enrolment_id: c.state for c in checkins(session)}
    assert states == {paused.id: "planned", gone.id: "skipped"}


def test_an_unanswered_checkin_is_reminded_once_after_due_after_working_days(session, settings):
    journey = make_measured_journey(session, measure={"raters": ["learner"], "at": ["start"]})
    _, ada, _ = people(session)
    make_enrolment(session, ada, journey, START)
    now = utc(2027, 3, 1, 9)
    while now < utc(2027, 3, 20):
        run(session, settings, now)
        now += timedelta(hours=1)
    mail = checkin_mail(session)
    assert [(m.created_at, m.payload.get("reminder", False)) for m in mail] == [
        (utc(2027, 3, 1, 9), False),
        (utc(2027, 3, 3, 9), True),  # due_after: 2 working days
    ]


def test_an_answered_checkin_is_not_reminded(session, settings):
    journey = make_measured_journey(session, measure={"raters": ["learner"], "at": ["start"]})
    _, ada, _ = people(session)
    make_enrolment(session, ada, journey, START)
    run(session, settings, utc(2027, 3, 1, 9))
    checkin = checkins(session)[0]
    checkin.answered_at = utc(2027, 3, 1, 10)
    session.add(checkin)
    session.commit()
    run(session, settings, utc(2027, 3, 3, 9))
    assert len(checkin_mail(session)) == 1
