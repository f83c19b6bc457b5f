"""When each step of an enrolment is sent, due, and overdue."""

from datetime import UTC, date, datetime, timedelta

from sqlmodel import select

from nudger.models import Step
from nudger.schedule import JourneyPlan, default_start, next_slot
from tests.factories import make_journey, make_person


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def plan_of(session, journey) -> JourneyPlan:
    steps = session.exec(select(Step).where(Step.journey_id == journey.id)).all()
    return JourneyPlan.build(journey, list(steps))


def test_each_learner_gets_the_step_at_nine_in_their_own_zone(session):
    journey = make_journey(session)
    plan = plan_of(session, journey)
    first = plan.steps[0]
    expected = {
        "America/Los_Angeles": utc(2027, 3, 1, 17),
        "Europe/London": utc(2027, 3, 1, 9),
        "Asia/Kolkata": utc(2027, 3, 1, 3, 30),
        "Asia/Tokyo": utc(2027, 3, 1, 0),
    }
    for i, (tz, instant) in enumerate(expected.items()):
        person = make_person(session, f"p{i}@example.com", timezone=tz, country="")
        cal = plan.calendar(person)
        assert plan.send_at(cal, tz, date(2027, 3, 1), 0, first) == instant


def test_step_day_counts_working_days_and_skips_the_weekend(session):
    journey = make_journey(session)  # days 0, 2 and 5
    plan = plan_of(session, journey)
    person = make_person(session)
    cal = plan.calendar(person)
    thursday = date(2027, 3, 4)
    sends = [plan.send_date(cal, thursday, 0, s) for s in plan.steps]
    assert sends == [date(2027, 3, 4), date(2027, 3, 8), date(2027, 3, 11)]


def test_shift_days_move_a_step_by_working_days(session):
    plan = plan_of(session, make_journey(session))
    cal = plan.calendar(make_person(session))
    step = plan.steps[1]  # day 2
    assert plan.send_date(cal, date(2027, 3, 1), 3, step) == date(2027, 3, 8)


def test_due_date_counts_working_days_from_sending(session):
    plan = plan_of(session, make_journey(session, due_after=2))
    cal = plan.calendar(make_person(session))
    sent = utc(2027, 3, 4, 9)  # Thursday 09:00 London
    assert plan.due_at(cal, "Europe/London", sent, plan.steps[0]) == utc(2027, 3, 8, 9)


def test_due_date_skips_the_christmas_substitute_days(session):
    plan = plan_of(session, make_journey(session, due_after=1))
    cal = plan.calendar(make_person(session, country="GB"))
    sent = utc(2027, 12, 24, 9)
    assert plan.due_at(cal, "Europe/London", sent, plan.steps[0]) == utc(2027, 12, 29, 9)


def test_step_due_after_overrides_the_journeys(session):
    steps = [{"key": "ask", "day": 0, "kind": "feedback", "title": "Ask", "due_after": 5}]
    plan = plan_of(session, make_journey(session, steps=steps, due_after=2))
    cal = plan.calendar(make_person(session))
    due = plan.due_at(cal, "Europe/London", utc(2027, 3, 1, 9), plan.steps[0])
    assert due == utc(2027, 3, 8, 9)


def test_overdue_days_are_working_days_in_the_same_calendar(session):
    plan = plan_of(session, make_journey(session))
    cal = plan.calendar(make_person(session))
    tz = "Europe/London"
    due = utc(2027, 3, 5, 9)  # a Friday
    assert plan.overdue_days(cal, tz, due, utc(2027, 3, 5, 17)) == 0
    assert plan.overdue_days(cal, tz, due, utc(2027, 3, 7, 12)) == 0  # the weekend
    assert plan.overdue_days(cal, tz, due, utc(2027, 3, 8, 8, 59)) == 0
    assert plan.overdue_days(cal, tz, due, utc(2027, 3, 8, 9)) == 1
    assert plan.overdue_days(cal, tz, due, utc(2027, 3, 10, 9)) == 3


def test_overdue_days_agree_with_after_due_across_a_dst_change(session):
    plan = plan_of(session, make_journey(session))
    tz = "America/Los_Angeles"
    cal = plan.calendar(make_person(session, timezone=tz, country="US"))
    due = utc(2027, 3, 11, 17)  # Thursday 09:00 PST; clocks go forward on Sunday 14
    for n in range(1, 6):
        threshold = plan.after_due(cal, tz, due, n)
        assert threshold.astimezone(cal_zone(tz)).hour == 9
        assert plan.overdue_days(cal, tz, due, threshold) == n
        assert plan.overdue_days(cal, tz, due, threshold - timedelta(minutes=1)) == n - 1


def test_fixed_event_invite_is_at_its_local_time(session):
    steps = [
        {"key": "workshop", "day": 3, "kind": "workshop", "title": "Workshop", "minutes": 90,
         "at": "2027-03-10T14:00"},
    ]  # fmt: skip
    plan = plan_of(session, make_journey(session, steps=steps))
    tz = "Asia/Tokyo"
    cal = plan.calendar(make_person(session, timezone=tz, country="JP"))
    start = plan.invite_start(cal, tz, date(2027, 3, 1), 0, plan.steps[0])
    assert start == utc(2027, 3, 10, 5)


def test_invite_is_on_the_send_day_at_the_invite_time(session):
    plan = plan_of(session, make_journey(session))
    cal = plan.calendar(make_person(session))
    start = plan.invite_start(cal, "Europe/London", date(2027, 3, 1), 0, plan.steps[1])
    assert start == utc(2027, 3, 3, 10)


def test_a_past_start_begins_at_the_next_send_slot(session):
    plan = plan_of(session, make_journey(session))
    cal = plan.calendar(make_person(session))
    tz = "Europe/London"
    assert next_slot(cal, tz, plan.send_time, utc(2027, 3, 1, 8)) == date(2027, 3, 1)
    assert next_slot(cal, tz, plan.send_time, utc(2027, 3, 5, 10)) == date(2027, 3, 8)
    assert default_start(cal, tz, utc(2027, 12, 24, 8)) == date(2027, 12, 29)


def cal_zone(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def test_plan_defaults_come_from_the_journey_model(session):
    from nudger.journeys.spec import DigestSpec, ScheduleSpec

    journey = make_journey(session)
    journey.spec = {k: v for k, v in journey.spec.items() if k not in ("schedule", "digest")}
    plan = JourneyPlan.build(journey, [])
    defaults = ScheduleSpec()
    assert (plan.send_time, plan.invite_time) == (defaults.send_time, defaults.invite_time)
    assert plan.weekdays == frozenset(range(5))
    assert plan.skip_holidays is defaults.holidays
    assert plan.digest == DigestSpec().model_dump(mode="json")
