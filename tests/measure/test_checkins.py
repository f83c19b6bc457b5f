"""The tick's check-ins: planned once, sent at the rater's local send time, reminded once."""

import re
from datetime import date, timedelta

from sqlalchemy import event
from sqlmodel import select

from nudger.enrolments.changes import pause, withdraw
from nudger.mail.compose.followups import compose_digest
from nudger.measure.answers import save_answers
from nudger.models import NO_DIGEST, Enrolment, Outbox
from nudger.privacy.erasure import erase_person
from nudger.tick.checkins import queue_checkins
from nudger.tick.state import TickContext
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


def quiet_journey(session, measure: dict):
    """A measured journey without escalations: a check-in is the only news a digest can carry."""
    journey = make_measured_journey(session, measure=measure)
    journey.spec = {**journey.spec, "escalations": []}
    session.add(journey)
    session.commit()
    return journey


def hourly(session, settings, until):
    now = utc(2027, 3, 1, 8)
    while now < until:
        run(session, settings, now)
        now += timedelta(hours=1)


def digests_to(session, email: str) -> list[Outbox]:
    query = select(Outbox).where(Outbox.kind == "digest", Outbox.to_email == email)
    return list(session.exec(query.order_by(Outbox.id)))


def test_a_managers_unanswered_checkin_comes_once_in_their_next_digest(session, settings):
    journey = quiet_journey(session, {"raters": ["learner", "manager"], "at": ["start"]})
    _, ada, _ = people(session)
    make_enrolment(session, ada, journey, START)
    hourly(session, settings, utc(2027, 3, 20))
    mail = checkin_mail(session)
    to_boss = [
        (m.created_at, m.payload.get("reminder", False)) for m in mail if "boss" in m.to_email
    ]
    to_ada = [(m.created_at, m.payload.get("reminder", False)) for m in mail if "ada" in m.to_email]
    assert to_boss == [(utc(2027, 3, 1, 9), False)]  # no reminder email for the manager
    assert to_ada == [(utc(2027, 3, 1, 9), False), (utc(2027, 3, 3, 9), True)]
    # Reminder time Wednesday 09:00; the next digest time is Thursday 08:00; never again.
    [digest] = digests_to(session, "boss@example.com")
    manager_checkin = next(c for c in checkins(session) if c.rater == "manager")
    assert digest.created_at == utc(2027, 3, 4, 8)
    assert digest.payload["checkin_ids"] == [manager_checkin.id]
    assert manager_checkin.digest_at is None and manager_checkin.reminded_at is None

    message = compose_digest(session, settings, digest, utc(2027, 3, 4, 8))
    text = message.get_body(("plain",)).get_content()
    assert message["Subject"] == "Your check-in on Ada Lovelace is waiting for your answers"
    assert "In the last two weeks, how often did you see Ada..." in text
    assert "/checkin/" in text and "Often:" in text
    assert "could use a word from you" not in text  # no one is behind: only the check-in


def test_a_checkin_answered_before_the_digest_is_not_in_it(session, settings):
    journey = quiet_journey(session, {"raters": ["manager"], "at": ["start"]})
    _, ada, _ = people(session)
    make_enrolment(session, ada, journey, START)
    hourly(session, settings, utc(2027, 3, 3, 12))  # past the reminder time
    checkin = checkins(session)[0]
    assert checkin.digest_at == utc(2027, 3, 3, 9)
    save_answers(session, checkin.id, {"asks-open-questions": 4}, utc(2027, 3, 3, 15))
    session.commit()
    hourly(session, settings, utc(2027, 3, 10))
    assert digests_to(session, "boss@example.com") == []
    assert checkins(session)[0].digest_at is None


def test_a_manager_who_stopped_the_digest_gets_the_one_reminder_by_email(session, settings):
    journey = quiet_journey(session, {"raters": ["manager"], "at": ["start"]})
    boss, ada, _ = people(session)
    boss.digest_every = NO_DIGEST
    session.add(boss)
    session.commit()
    make_enrolment(session, ada, journey, START)
    hourly(session, settings, utc(2027, 3, 20))
    mail = [(m.created_at, m.payload.get("reminder", False)) for m in checkin_mail(session)]
    assert mail == [(utc(2027, 3, 1, 9), False), (utc(2027, 3, 3, 9), True)]
    assert digests_to(session, "boss@example.com") == []


def person_reads(session, settings, managers: int) -> int:
    """Enrol one report of each of `managers` managers; count the check-in phase's
    reads of the person table when their status-quo check-ins go."""
    journey = make_measured_journey(session, f"team-of-{managers}", measure={"at": ["start"]})
    for i in range(managers):
        boss = make_person(session, f"boss{managers}-{i}@example.com", f"Boss {i}")
        report = make_person(session, f"r{managers}-{i}@example.com", f"Report {i}", manager=boss)
        make_enrolment(session, report, journey, START)
    ctx = TickContext(session=session, settings=settings, now=utc(2027, 2, 26, 12))
    queue_checkins(ctx)  # planned, nothing due yet
    session.commit()
    session.expunge_all()  # read from the database, as a tick in a fresh process does
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        queue_checkins(TickContext(session=session, settings=settings, now=utc(2027, 3, 1, 9)))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    session.rollback()
    return sum(1 for s in statements if re.search(r"\bFROM person\b", s))


def test_the_managers_of_due_checkins_are_read_together(session, settings):
    # One read for any number of managers (each read alone, four took five).
    assert person_reads(session, settings, 1) == person_reads(session, settings, 4) == 1


def test_an_erased_learner_is_asked_nothing_and_her_manager_is_not_asked_about_her(
    session, settings
):
    journey = make_measured_journey(session)
    _, ada, dan = people(session)
    make_enrolment(session, ada, journey, START)
    make_enrolment(session, dan, journey, START)
    run(session, settings, utc(2027, 2, 26, 12))  # planned the Friday before: nothing sent
    erase_person(session, ada.id, actor="cli", now=utc(2027, 2, 26, 13))
    assert {
        c.state
        for c in checkins(session)
        if session.get(Enrolment, c.enrolment_id).person_id == ada.id
    } == {"skipped"}
    run(session, settings, utc(2027, 3, 1, 9, 0))
    mail = checkin_mail(session)
    assert [m.to_email for m in mail] == ["dan@example.com", "boss@example.com"]
    assert len(mail[1].payload["checkin_ids"]) == 1  # only Dan's block
