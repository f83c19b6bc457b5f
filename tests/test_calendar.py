"""Working days, holidays, time zones and daylight saving."""

from datetime import UTC, date, datetime, time

import holidays

from nudger.calendar import (
    WorkCalendar,
    is_valid_country,
    local_date,
    local_instant,
    slots_between,
)

WEEKDAYS = frozenset(range(5))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_weekend_is_skipped():
    cal = WorkCalendar(WEEKDAYS, "GB")
    friday = date(2027, 3, 5)
    assert cal.add_working_days(friday, 1) == date(2027, 3, 8)
    assert cal.next_working_day(date(2027, 3, 6)) == date(2027, 3, 8)


def test_day_zero_on_a_weekend_is_the_next_monday():
    cal = WorkCalendar(WEEKDAYS, "GB")
    assert cal.add_working_days(date(2027, 3, 7), 0) == date(2027, 3, 8)


def test_christmas_and_its_substitute_days_are_skipped_in_gb():
    # 2027: Christmas is a Saturday and Boxing Day a Sunday, so England takes
    # Monday 27 and Tuesday 28 off instead.
    gb = holidays.country_holidays("GB", years=2027)
    assert date(2027, 12, 27) in gb and date(2027, 12, 28) in gb
    cal = WorkCalendar(WEEKDAYS, "GB")
    assert cal.add_working_days(date(2027, 12, 24), 1) == date(2027, 12, 29)
    assert not cal.is_working_day(date(2027, 12, 27))
    assert not cal.is_working_day(date(2027, 12, 28))


def test_substitute_day_is_a_working_day_where_it_is_not_a_holiday():
    # The US observes Christmas 2027 on Friday 24, not on the 27th or 28th.
    cal = WorkCalendar(WEEKDAYS, "US")
    assert not cal.is_working_day(date(2027, 12, 24))
    assert cal.add_working_days(date(2027, 12, 23), 1) == date(2027, 12, 27)


def test_a_learners_own_national_holiday_is_skipped():
    republic_day = date(2027, 1, 26)  # a Tuesday: a holiday in India, not in Britain
    assert WorkCalendar(WEEKDAYS, "GB").is_working_day(republic_day)
    assert not WorkCalendar(WEEKDAYS, "IN").is_working_day(republic_day)
    assert WorkCalendar(WEEKDAYS, "IN").add_working_days(date(2027, 1, 25), 1) == date(2027, 1, 27)


def test_japanese_substitute_holiday_is_skipped():
    # Vernal Equinox Day 2027 is a Sunday; Japan takes Monday 22 March off.
    cal = WorkCalendar(WEEKDAYS, "JP")
    assert cal.add_working_days(date(2027, 3, 19), 1) == date(2027, 3, 23)


def test_holidays_can_be_switched_off():
    cal = WorkCalendar(WEEKDAYS, "GB", skip_holidays=False)
    assert cal.is_working_day(date(2027, 12, 27))


def test_working_days_follow_the_journeys_days():
    cal = WorkCalendar(frozenset({0, 2, 4}), "")  # mon, wed, fri
    assert cal.add_working_days(date(2027, 3, 1), 1) == date(2027, 3, 3)
    assert cal.add_working_days(date(2027, 3, 1), 3) == date(2027, 3, 8)


def test_nine_in_the_morning_in_four_zones():
    day = date(2027, 3, 1)  # before any daylight-saving change of the year
    assert local_instant(day, time(9), "America/Los_Angeles") == utc(2027, 3, 1, 17)
    assert local_instant(day, time(9), "Europe/London") == utc(2027, 3, 1, 9)
    assert local_instant(day, time(9), "Asia/Kolkata") == utc(2027, 3, 1, 3, 30)
    assert local_instant(day, time(9), "Asia/Tokyo") == utc(2027, 3, 1, 0)


def test_us_spring_forward_gap_moves_to_the_next_valid_minute():
    # 2027-03-14: Los Angeles clocks jump from 02:00 PST to 03:00 PDT.
    at = local_instant(date(2027, 3, 14), time(2, 30), "America/Los_Angeles")
    assert at == utc(2027, 3, 14, 10, 0)  # 03:00 PDT
    assert at.astimezone(local_zone("America/Los_Angeles")).time() == time(3, 0)


def test_europe_spring_forward_gap_moves_to_the_next_valid_minute():
    # 2027-03-28: London clocks jump from 01:00 GMT to 02:00 BST.
    at = local_instant(date(2027, 3, 28), time(1, 30), "Europe/London")
    assert at == utc(2027, 3, 28, 1, 0)  # 02:00 BST


def test_us_autumn_repeated_hour_is_the_first_one():
    # 2027-11-07: 01:00-02:00 happens twice in Los Angeles (PDT, then PST).
    at = local_instant(date(2027, 11, 7), time(1, 30), "America/Los_Angeles")
    assert at == utc(2027, 11, 7, 8, 30)  # 01:30 PDT, the first of the two


def test_europe_autumn_repeated_hour_is_the_first_one():
    at = local_instant(date(2027, 10, 31), time(1, 30), "Europe/London")
    assert at == utc(2027, 10, 31, 0, 30)  # 01:30 BST


def test_send_time_keeps_its_wall_clock_across_a_change():
    friday = local_instant(date(2027, 3, 12), time(9), "America/Los_Angeles")
    monday = local_instant(date(2027, 3, 15), time(9), "America/Los_Angeles")
    assert (friday.hour, monday.hour) == (17, 16)  # 09:00 PST, then 09:00 PDT


def test_local_date_of_an_instant():
    instant = utc(2027, 3, 1, 23, 30)
    assert local_date(instant, "Asia/Tokyo") == date(2027, 3, 2)
    assert local_date(instant, "America/Los_Angeles") == date(2027, 3, 1)


def test_slots_between_counts_each_working_day_once_across_a_dst_change():
    cal = WorkCalendar(WEEKDAYS, "GB")
    tz = "Europe/London"
    # From Friday 26 March (Good Friday) to Friday 2 April 2027, across the
    # clocks going forward on Sunday 28: working days are 29, 30, 31 March
    # and 1 and 2 April (Easter Monday is not a UK-wide holiday).
    after = local_instant(date(2027, 3, 26), time(10), tz)
    until = local_instant(date(2027, 4, 2), time(9), tz)
    assert slots_between(cal, tz, time(9), after, until) == 5


def test_slots_between_counts_nothing_before_the_send_time():
    cal = WorkCalendar(WEEKDAYS, "GB")
    tz = "Europe/London"
    monday_8 = utc(2027, 3, 1, 8)
    assert slots_between(cal, tz, time(9), monday_8, utc(2027, 3, 1, 8, 59)) == 0
    assert slots_between(cal, tz, time(9), monday_8, utc(2027, 3, 1, 9)) == 1
    assert slots_between(cal, tz, time(9), utc(2027, 3, 1, 9), utc(2027, 3, 2, 8)) == 0


def local_zone(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def test_a_subdivision_adds_its_own_holidays():
    easter_monday = date(2027, 3, 29)  # a bank holiday in England, not UK-wide
    assert WorkCalendar(WEEKDAYS, "GB").is_working_day(easter_monday)
    assert not WorkCalendar(WEEKDAYS, "GB-ENG").is_working_day(easter_monday)
    assert not WorkCalendar(WEEKDAYS, "GB-ENG").is_working_day(date(2027, 12, 27))


def test_country_codes_and_subdivisions_are_validated():
    assert is_valid_country("gb") and is_valid_country("GB-ENG") and is_valid_country("US-CA")
    assert not is_valid_country("GB-XX") and not is_valid_country("ZZ")
