"""Working days, send times, time zones and public holidays.

The one place that turns "working day N of this enrolment, at the journey's
send time" into a UTC instant for a learner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """Return the IANA zone, cached (ZoneInfo lookups show up in profiles)."""
    return ZoneInfo(name)


def is_valid_timezone(name: str) -> bool:
    """Say whether `name` is an IANA zone this machine knows."""
    if name not in _known_zones():
        return False
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def is_valid_country(code: str) -> bool:
    """Say whether `code` is a country (GB) or subdivision (GB-ENG, US-CA) with known holidays."""
    country, _, subdiv = code.upper().partition("-")
    subdivisions = _supported_countries().get(country)
    if subdivisions is None:
        return False
    return not subdiv or subdiv in subdivisions


@lru_cache(maxsize=1)
def _supported_countries() -> dict[str, frozenset[str]]:
    import holidays as holidays_lib  # imported when first needed: it is slow to import

    return {
        country: frozenset(s.upper() for s in subdivs)
        for country, subdivs in holidays_lib.list_supported_countries().items()
    }


@lru_cache(maxsize=4096)
def _holiday_dates(country: str, year: int) -> frozenset[date]:
    if not country:
        return frozenset()
    # "GB" alone has only the UK-wide days; "GB-ENG" adds England's Easter
    # Monday and August bank holiday, as "US-CA" adds California's.
    code, _, subdiv = country.partition("-")
    import holidays as holidays_lib  # imported when first needed: it is slow to import

    found = holidays_lib.country_holidays(code, subdiv=subdiv or None, years=year)
    return frozenset(found.keys())


@dataclass(frozen=True)
class WorkCalendar:
    """Which days count as working days for one learner on one journey."""

    weekdays: frozenset[int] = frozenset(range(5))  # Monday is 0
    country: str = ""
    skip_holidays: bool = True

    def __post_init__(self) -> None:
        # The fields as a plain tuple: the key of the caches below, hashed and
        # compared in C, where the dataclass's own hash and eq run Python code
        # every time (a tick asks thousands of times).
        object.__setattr__(self, "key", (self.weekdays, self.country, self.skip_holidays))

    def __hash__(self) -> int:
        return hash(self.key)

    def is_working_day(self, d: date) -> bool:
        if d.weekday() not in self.weekdays:
            return False
        return not (self.skip_holidays and d in _holiday_dates(self.country, d.year))

    def next_working_day(self, d: date) -> date:
        """Return `d` if it is a working day, else the first one after it."""
        for _ in range(400):
            if self.is_working_day(d):
                return d
            d += timedelta(days=1)
        raise ValueError("no working day within a year: check the journey's days")

    def add_working_days(self, d: date, n: int) -> date:
        """Return working day number `n` counting from `d` (day 0 is `d` or the next one)."""
        return _add_working_days(self.key, d, n)


@lru_cache(maxsize=65536)
def _add_working_days(key: tuple[frozenset[int], str, bool], d: date, n: int) -> date:
    # Cached: every tick asks the same questions about the same cohorts' start dates.
    cal = WorkCalendar(*key)
    d = cal.next_working_day(d)
    for _ in range(n):
        d = cal.next_working_day(d + timedelta(days=1))
    return d


def slots_between(cal: WorkCalendar, tz: str, t: time, after: datetime, until: datetime) -> int:
    """Count working days whose wall-clock `t` in `tz` falls in (after, until].

    This is how long a pause lasted, or how overdue a step is, in working days:
    each day counts once whatever daylight saving does to its length.
    """
    if until <= after:
        return 0
    count, d, last = 0, local_date(after, tz), local_date(until, tz)
    while d <= last:
        if cal.is_working_day(d) and after < local_instant(d, t, tz) <= until:
            count += 1
        d += timedelta(days=1)
    return count


@lru_cache(maxsize=65536)
def local_instant(d: date, t: time, tz: str) -> datetime:
    """Return the UTC instant of wall-clock `t` on `d` in `tz`.

    A time skipped by a spring-forward change moves to the next minute that
    exists; a time that happens twice in autumn is the first of the two, so a
    send is neither skipped nor doubled.
    """
    z = zone(tz)
    wall = datetime.combine(d, t).replace(tzinfo=z, fold=0)
    utc = wall.astimezone(UTC)
    if utc.astimezone(z).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return utc
    # In a gap: walk forward minute by minute to the first wall time that exists.
    probe = wall.replace(tzinfo=None)
    for _ in range(24 * 60):
        probe += timedelta(minutes=1)
        candidate = probe.replace(tzinfo=z)
        back = candidate.astimezone(UTC).astimezone(z).replace(tzinfo=None)
        if back == probe:
            return candidate.astimezone(UTC)
    raise ValueError(f"{t} on {d} does not exist in {tz}")


def local_date(instant: datetime, tz: str) -> date:
    """Return the learner-local date of a UTC instant."""
    return instant.astimezone(zone(tz)).date()


def weekday_numbers(days: list[str]) -> frozenset[int]:
    """Turn ["mon", "tue"] into {0, 1}."""
    return frozenset(WEEKDAYS.index(d.lower()[:3]) for d in days)
