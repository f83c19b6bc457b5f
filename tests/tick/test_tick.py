"""The tick: what is due at `now`, sent once, in one email per learner."""

import json
import os
import threading
from datetime import UTC, date, datetime, timedelta

from click.testing import CliRunner
from sqlmodel import Session, func, select

from nudger.cli import main
from nudger.models import EnrolmentStep, Outbox, Step
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person

EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
THREE_DAILY = [
    {"key": "one", "day": 0, "kind": "read", "title": "One"},
    {"key": "two", "day": 1, "kind": "read", "title": "Two"},
    {"key": "three", "day": 2, "kind": "read", "title": "Three"},
]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def run(session, settings, now):
    return tick(session, settings, now, enqueue=False)


def tick_through(session, settings, start: datetime, end: datetime, every: timedelta) -> None:
    now = start
    while now <= end:
        run(session, settings, now)
        now += every


def emails(session, enrolment=None) -> list[tuple[datetime, list[str]]]:
    """Return (decided at, step keys) of every step email, oldest first."""
    query = select(Outbox).where(Outbox.kind == "step").order_by(Outbox.id)
    if enrolment is not None:
        query = query.where(Outbox.enrolment_id == enrolment.id)
    out = []
    for row in session.exec(query):
        ids = row.payload["enrolment_step_ids"]
        keys = dict(
            session.exec(
                select(EnrolmentStep.id, Step.key)
                .join(Step, Step.id == EnrolmentStep.step_id)
                .where(EnrolmentStep.id.in_(ids))
            ).all()
        )
        out.append((row.created_at, [keys[i] for i in ids]))
    return out


def test_step_goes_out_at_the_send_time_and_not_before(session, settings):
    journey = make_journey(session)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    assert run(session, settings, utc(2027, 3, 1, 8, 59)).get("step", 0) == 0
    counts = run(session, settings, utc(2027, 3, 1, 9))
    assert counts["step"] == 1
    assert emails(session) == [(utc(2027, 3, 1, 9), ["read"])]
    session.refresh(enrolment)
    assert enrolment.next_action_at <= utc(2027, 3, 3, 9)  # back for "discuss" (day 2), or sooner
    assert run(session, settings, utc(2027, 3, 3, 8, 59)).get("step", 0) == 0
    assert run(session, settings, utc(2027, 3, 3, 9))["step"] == 1


def test_learners_in_four_zones_each_get_it_at_nine_local(session, settings):
    journey = make_journey(session)
    zones = ["America/Los_Angeles", "Europe/London", "Asia/Kolkata", "Asia/Tokyo"]
    enrolments = {
        tz: make_enrolment(
            session, make_person(session, f"p{i}@example.com", timezone=tz, country=""),
            journey, date(2027, 3, 1),
        )
        for i, tz in enumerate(zones)
    }  # fmt: skip
    tick_through(session, settings, utc(2027, 2, 28, 12), utc(2027, 3, 2), timedelta(minutes=30))
    sent = {tz: emails(session, e)[0][0] for tz, e in enrolments.items()}
    assert sent == {
        "America/Los_Angeles": utc(2027, 3, 1, 17),
        "Europe/London": utc(2027, 3, 1, 9),
        "Asia/Kolkata": utc(2027, 3, 1, 3, 30),
        "Asia/Tokyo": utc(2027, 3, 1, 0),
    }


def test_us_spring_forward_send_time_in_the_gap_goes_at_the_next_valid_minute(session, settings):
    journey = make_journey(session, steps=THREE_DAILY, send_time="02:30", days=EVERY_DAY)
    person = make_person(session, timezone="America/Los_Angeles", country="US")
    make_enrolment(session, person, journey, date(2027, 3, 13))
    tick_through(session, settings, utc(2027, 3, 13), utc(2027, 3, 16), timedelta(minutes=15))
    assert emails(session) == [
        (utc(2027, 3, 13, 10, 30), ["one"]),  # 02:30 PST
        (utc(2027, 3, 14, 10, 0), ["two"]),  # 02:30 does not exist: 03:00 PDT
        (utc(2027, 3, 15, 9, 30), ["three"]),  # 02:30 PDT
    ]


def test_us_autumn_repeated_hour_sends_once(session, settings):
    journey = make_journey(session, steps=THREE_DAILY, send_time="01:30", days=EVERY_DAY)
    person = make_person(session, timezone="America/Los_Angeles", country="US")
    make_enrolment(session, person, journey, date(2027, 11, 6))
    tick_through(session, settings, utc(2027, 11, 6), utc(2027, 11, 9), timedelta(minutes=15))
    assert emails(session) == [
        (utc(2027, 11, 6, 8, 30), ["one"]),  # 01:30 PDT
        (utc(2027, 11, 7, 8, 30), ["two"]),  # the first 01:30; the second passes quietly
        (utc(2027, 11, 8, 9, 30), ["three"]),  # 01:30 PST
    ]


def test_europe_spring_forward_send_time_in_the_gap_goes_at_the_next_valid_minute(
    session, settings
):
    journey = make_journey(session, steps=THREE_DAILY, send_time="01:30", days=EVERY_DAY)
    person = make_person(session, timezone="Europe/London", country="GB")
    make_enrolment(session, person, journey, date(2027, 3, 27))
    tick_through(session, settings, utc(2027, 3, 27), utc(2027, 3, 30), timedelta(minutes=15))
    assert emails(session) == [
        (utc(2027, 3, 27, 1, 30), ["one"]),  # 01:30 GMT
        (utc(2027, 3, 28, 1, 0), ["two"]),  # 01:30 does not exist: 02:00 BST
        (utc(2027, 3, 29, 0, 30), ["three"]),  # 01:30 BST
    ]


def test_europe_autumn_repeated_hour_sends_once(session, settings):
    journey = make_journey(session, steps=THREE_DAILY, send_time="01:30", days=EVERY_DAY)
    person = make_person(session, timezone="Europe/London", country="GB")
    make_enrolment(session, person, journey, date(2027, 10, 30))
    tick_through(session, settings, utc(2027, 10, 30), utc(2027, 11, 2), timedelta(minutes=15))
    assert emails(session) == [
        (utc(2027, 10, 30, 0, 30), ["one"]),  # 01:30 BST
        (utc(2027, 10, 31, 0, 30), ["two"]),  # the first 01:30 of the day
        (utc(2027, 11, 1, 1, 30), ["three"]),  # 01:30 GMT
    ]


def test_weekdays_journey_keeps_nine_local_across_the_us_change(session, settings):
    journey = make_journey(session, steps=THREE_DAILY)
    person = make_person(session, timezone="America/Los_Angeles", country="US")
    make_enrolment(session, person, journey, date(2027, 3, 12))  # a Friday
    tick_through(session, settings, utc(2027, 3, 12), utc(2027, 3, 17), timedelta(minutes=30))
    assert [at for at, _ in emails(session)] == [
        utc(2027, 3, 12, 17),  # Friday 09:00 PST
        utc(2027, 3, 15, 16),  # Monday 09:00 PDT; nothing at the weekend
        utc(2027, 3, 16, 16),
    ]


def test_nothing_is_sent_at_the_weekend(session, settings):
    journey = make_journey(session, steps=THREE_DAILY)
    make_enrolment(session, make_person(session), journey, date(2027, 3, 5))  # a Friday
    tick_through(session, settings, utc(2027, 3, 5), utc(2027, 3, 9, 12), timedelta(hours=1))
    assert [at for at, _ in emails(session)] == [
        utc(2027, 3, 5, 9),
        utc(2027, 3, 8, 9),
        utc(2027, 3, 9, 9),
    ]


def test_christmas_and_the_substitute_days_are_skipped_in_gb(session, settings):
    journey = make_journey(session, steps=THREE_DAILY)
    make_enrolment(session, make_person(session, country="GB"), journey, date(2027, 12, 23))
    tick_through(session, settings, utc(2027, 12, 23), utc(2027, 12, 30), timedelta(hours=1))
    assert [at for at, _ in emails(session)] == [
        utc(2027, 12, 23, 9),
        utc(2027, 12, 24, 9),
        utc(2027, 12, 29, 9),  # not Monday 27 or Tuesday 28: Christmas and Boxing Day (observed)
    ]


def test_learners_country_holiday_is_skipped_when_the_default_country_has_none(session, settings):
    settings.default_country = "GB"
    journey = make_journey(session, steps=THREE_DAILY)
    kolkata = make_person(session, "priya@example.com", timezone="Asia/Kolkata", country="IN")
    london = make_person(session, "ada@example.com", timezone="Europe/London", country="")
    in_enrolment = make_enrolment(session, kolkata, journey, date(2027, 1, 25))
    gb_enrolment = make_enrolment(session, london, journey, date(2027, 1, 25))
    tick_through(session, settings, utc(2027, 1, 25), utc(2027, 1, 28, 12), timedelta(minutes=30))
    # Tuesday 26 January is Republic Day in India, a working day in Britain.
    assert [at for at, _ in emails(session, in_enrolment)] == [
        utc(2027, 1, 25, 3, 30),
        utc(2027, 1, 27, 3, 30),
        utc(2027, 1, 28, 3, 30),
    ]
    assert [at for at, _ in emails(session, gb_enrolment)] == [
        utc(2027, 1, 25, 9),
        utc(2027, 1, 26, 9),
        utc(2027, 1, 27, 9),
    ]


def test_learner_without_a_country_gets_the_default_countrys_holidays(session, settings):
    settings.default_country = "GB"
    journey = make_journey(session, steps=THREE_DAILY)
    make_enrolment(session, make_person(session, country=""), journey, date(2027, 12, 24))
    tick_through(session, settings, utc(2027, 12, 24), utc(2027, 12, 31), timedelta(hours=1))
    assert [at for at, _ in emails(session)] == [
        utc(2027, 12, 24, 9),
        utc(2027, 12, 29, 9),
        utc(2027, 12, 30, 9),
    ]


def test_catch_up_after_a_week_without_ticks_is_one_email(session, settings):
    steps = [
        {"key": f"s{day}", "day": day, "kind": "read", "title": f"Step {day}", "minutes": 10}
        for day in (0, 1, 2, 3, 4, 5, 8)
    ]
    journey = make_journey(session, steps=steps)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    counts = run(session, settings, utc(2027, 3, 8, 9, 30))  # no tick since a week ago
    assert (counts["step"], counts["steps"]) == (1, 6)
    assert emails(session) == [(utc(2027, 3, 8, 9, 30), ["s0", "s1", "s2", "s3", "s4", "s5"])]
    assert run(session, settings, utc(2027, 3, 8, 9, 30)).get("step", 0) == 0
    assert run(session, settings, utc(2027, 3, 11, 8, 59)).get("step", 0) == 0
    assert run(session, settings, utc(2027, 3, 11, 9)).get("step", 0) == 1  # day 8: Thursday
    session.refresh(enrolment)
    assert [keys for _, keys in emails(session)][1:] == [["s8"]]


def test_catch_up_sends_only_what_is_due_and_comes_back_for_the_rest(session, settings):
    steps = [
        {"key": f"s{day}", "day": day, "kind": "read", "title": f"Step {day}"}
        for day in (0, 1, 2, 3, 4, 8)
    ]
    journey = make_journey(session, steps=steps)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    run(session, settings, utc(2027, 3, 5, 10))  # Friday: days 0-4 are due, day 8 is not
    session.refresh(enrolment)
    assert emails(session) == [(utc(2027, 3, 5, 10), ["s0", "s1", "s2", "s3", "s4"])]
    assert enrolment.next_action_at <= utc(2027, 3, 11, 9)  # back for day 8, or sooner
    due_dates = session.exec(select(EnrolmentStep.due_at)).all()
    assert set(due_dates) == {utc(2027, 3, 9, 9)}  # two working days after Friday's send


def test_tick_looks_only_at_enrolments_whose_next_action_has_come(session, settings, now):
    journey = make_journey(session)
    due = make_enrolment(session, make_person(session, "a@example.com"), journey, date(2027, 3, 1))
    later = now + timedelta(days=3)
    for i in range(3):
        person = make_person(session, f"later{i}@example.com")
        make_enrolment(session, person, journey, date(2027, 3, 4), next_action_at=later)
    counts = run(session, settings, utc(2027, 3, 1, 9))
    assert counts["enrolments"] == 1
    assert [row.enrolment_id for row in session.exec(select(Outbox))] == [due.id]


def test_steps_are_never_sent_twice(session, settings):
    journey = make_journey(session)
    make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    for hours in range(0, 24 * 10):
        run(session, settings, utc(2027, 3, 1) + timedelta(hours=hours))
    keys = [key for _, keys in emails(session) for key in keys]
    assert keys == ["read", "discuss", "reflect"]


def test_a_closed_unsent_step_is_never_sent(session, settings):
    journey = make_journey(session)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    discuss = session.exec(select(Step).where(Step.key == "discuss")).one()
    session.add(EnrolmentStep(enrolment_id=enrolment.id, step_id=discuss.id, status="cancelled"))
    session.commit()
    run(session, settings, utc(2027, 3, 10, 9))
    assert [keys for _, keys in emails(session)] == [["read", "reflect"]]


def test_learners_on_one_schedule_each_get_the_steps_they_have_not_had(session, settings):
    # Same journey, zone, country and start: the tick works a schedule out once
    # and hands it to every learner on it, but not to one with a step closed or a shift.
    journey = make_journey(session)  # days 0, 2 and 5: Monday 1st, Wednesday 3rd, Monday 8th
    a, b, c, d = (
        make_enrolment(session, make_person(session, f"{n}@example.com"), journey, date(2027, 3, 1),
                       shift_days=2 if n == "c" else 0)
        for n in "abcd"
    )  # fmt: skip
    discuss = session.exec(select(Step).where(Step.key == "discuss")).one()
    session.add(EnrolmentStep(enrolment_id=b.id, step_id=discuss.id, status="cancelled"))
    session.commit()
    run(session, settings, utc(2027, 3, 9, 9))
    assert [keys for _, keys in emails(session, a)] == [["read", "discuss", "reflect"]]
    assert [keys for _, keys in emails(session, b)] == [["read", "reflect"]]
    assert [keys for _, keys in emails(session, c)] == [["read", "discuss"]]  # reflect: the 10th
    assert emails(session, d) == emails(session, a)
    for enrolment in (a, c):
        session.refresh(enrolment)
    assert c.next_action_at == utc(2027, 3, 10, 9)  # its last step
    assert a.next_action_at == utc(2027, 3, 12, 9)  # the first reminder: a day after due


def test_paused_enrolment_is_not_sent_anything(session, settings):
    journey = make_journey(session)
    person = make_person(session)
    enrolment = make_enrolment(session, person, journey, date(2027, 3, 1), status="paused")
    counts = run(session, settings, utc(2027, 3, 1, 9))
    assert counts.get("step", 0) == 0
    session.refresh(enrolment)
    assert enrolment.next_action_at is None


def test_cli_tick_twice_at_one_instant_does_nothing_the_second_time(session, settings, tmp_path):
    journey = make_journey(session)
    for i in range(3):
        person = make_person(session, f"p{i}@example.com")
        make_enrolment(session, person, journey, date(2027, 3, 1))
    env = {
        "NUDGER_DATABASE_URL": settings.database_url,
        "NUDGER_REDIS_URL": settings.redis_url,
        "NUDGER_INSTANCE_PATH": str(tmp_path),
        "NUDGER_SECRET_KEY": settings.secret_key,
    }
    runner = CliRunner()
    args = ["tick", "--now", "2027-03-01T09:00:00Z", "--json"]
    first = runner.invoke(main, args, env=env)
    assert first.exit_code == 0, first.output
    second = runner.invoke(main, args, env=env)
    assert second.exit_code == 0, second.output
    one, two = json.loads(first.output), json.loads(second.output)
    assert (one["step"], one["steps"], one["enrolments"], one["enqueued"]) == (3, 3, 3, 3)
    assert {k: v for k, v in two.items() if k != "now"} == {
        "enqueued": 0,
        "reenqueued": 0,
        "requeued": 0,
    }
    assert session.exec(select(func.count()).select_from(Outbox)).one() == 3
    _empty_queue(settings)


def concurrent_ticks(engine, settings, now: datetime, ticks: int = 2) -> list[dict]:
    """Run `ticks` ticks at the same instant, each in its own thread and session."""
    barrier = threading.Barrier(ticks)
    results, errors = [], []

    def worker() -> None:
        try:
            with Session(engine, expire_on_commit=False) as own:
                barrier.wait()
                results.append(tick(own, settings, now, enqueue=False))
        except Exception as exc:  # reported below, with the other threads' results
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(ticks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_two_ticks_at_once_produce_each_message_once(engine, session, settings):
    journey = make_journey(session, steps=THREE_DAILY)
    learners = 120
    for i in range(learners):
        person = make_person(session, f"p{i}@example.com")
        make_enrolment(session, person, journey, date(2027, 3, 1))
    now = utc(2027, 3, 3, 9, 30)  # all three steps due: one email each
    results = concurrent_ticks(engine, settings, now)
    assert sum(r.get("step", 0) for r in results) == learners
    assert session.exec(select(func.count()).select_from(Outbox)).one() == learners
    assert session.exec(select(func.count()).select_from(EnrolmentStep)).one() == 3 * learners
    per_enrolment = session.exec(
        select(Outbox.enrolment_id, func.count()).group_by(Outbox.enrolment_id)
    ).all()
    assert {n for _, n in per_enrolment} == {1}
    assert all(len(row.payload["enrolment_step_ids"]) == 3 for row in session.exec(select(Outbox)))


def test_three_ticks_at_once_with_reminders_due_write_each_message_once(engine, session, settings):
    journey = make_journey(session, steps=THREE_DAILY, due_after=1)
    learners = 80
    for i in range(learners):
        person = make_person(session, f"p{i}@example.com")
        make_enrolment(session, person, journey, date(2027, 3, 1))
    run(session, settings, utc(2027, 3, 1, 9))  # "one" goes out, alone
    now = utc(2027, 3, 4, 9, 30)  # "two" and "three" due; "one" overdue since Tuesday
    results = concurrent_ticks(engine, settings, now, ticks=3)
    assert sum(r.get("step", 0) for r in results) == learners
    decided = session.exec(
        select(Outbox.enrolment_id, Outbox.kind, func.count())
        .where(Outbox.created_at == now)
        .group_by(Outbox.enrolment_id, Outbox.kind)
    ).all()
    assert {n for _, _, n in decided} == {1}  # per enrolment: one step email, one reminder
    assert {kind for _, kind, _ in decided} >= {"step", "reminder"}
    assert session.exec(select(func.count()).select_from(EnrolmentStep)).one() == 3 * learners


def _empty_queue(settings) -> None:
    """Drop the jobs this test enqueued (the test Redis may be shared by runs)."""
    if os.environ.get("NUDGER_TEST_REDIS_URL"):
        from nudger.queue import queue

        queue(settings).empty()
