"""Check each row (email, name, journey, date, zone, country) and merge rows per person.

Rows about the same person or enrolment must agree; manager loops are found
once the people already in the database are known.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email

from nudger.calendar import is_valid_country, is_valid_timezone
from nudger.models import Person
from nudger.roster.result import RowError
from nudger.schedule import JourneyPlan
from nudger.text import CONTROL, control_character, escape_controls

if TYPE_CHECKING:
    from nudger.roster.known import KnownPeople

NAME_MAX = Person.__table__.c.name.type.length  # PostgreSQL refuses longer; SQLite would not
COUNTRY_MAX = Person.__table__.c.country.type.length
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")  # an RFC 5322 dot-atom, ASCII only
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(slots=True)
class PersonRow:
    """A learner as the file describes them; "" means not given.

    It is also the person's first enrolment (the fields of an EnrolmentRow): most
    people are in one journey, and a record and a dict entry more per person cost
    over 100 bytes a row, 100 MB at a million rows. A value taken from a later row
    about them is rare: where it came from is kept aside (`RowChecker.later`), not
    in three more fields of every record. Once they are written, `id` is theirs.
    """

    row: int
    name: str
    timezone: str
    country: str
    manager: str
    email: str
    journey: JourneyPlan
    start: date | None
    looked_up: bool = False  # check_loops has walked their reporting line
    id: int | None = None


@dataclass(slots=True)
class EnrolmentRow:
    """One (learner, journey) enrolment, asked for by one or more agreeing rows."""

    row: int
    email: str
    journey: JourneyPlan
    start: date | None


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    """Map lower-cased IANA names to their spelling, so `europe/london` works too."""
    return {name.lower(): name for name in available_timezones()}


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str | None:
    """Return the domain as email-validator normalises it, or None if it rejects it."""
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def normal_email(value: str) -> str:
    """Return the address as stored (lower-case), or raise EmailNotValidError."""
    local, _, domain = value.rpartition("@")
    # Rosters are plain ASCII addresses at a few domains, and email-validator's verdict on a
    # dot-atom local part depends on the domain alone: checking each domain once is ten times
    # faster. Anything else (quoting, Unicode, odd lengths) goes through email-validator whole.
    if len(local) <= 64 and len(value) <= 254 and domain.isascii() and _LOCAL.fullmatch(local):
        normal = _domain(domain)
        if normal is not None:
            return f"{local}@{normal}".lower()
    return validate_email(value, check_deliverability=False).normalized.lower()


def unknown_journey(slug: str, journeys: dict[str, JourneyPlan]) -> str:
    known = ", ".join(sorted(journeys)) or "none yet: run `nudger journeys sync`"
    return f"unknown journey {slug!r}; known journeys: {known}"


class RowChecker:
    """Check rows one at a time and merge them into per-person and per-enrolment records."""

    def __init__(self, journeys: dict[str, JourneyPlan], default_slug: str) -> None:
        self.journeys, self.default_slug = journeys, default_slug
        self.rows = 0
        self.people: dict[str, PersonRow] = {}
        # Enrolments after a person's first (which is their PersonRow), by (email, journey id).
        self.pairs: dict[tuple[str, int], EnrolmentRow] = {}
        self.managers: dict[str, tuple[int, str]] = {}  # email -> (first row, manager_name)
        # People whose row had an error, by email: (row, manager_email or ""). They are still
        # in the file, and the manager they name may close a loop worth reporting too.
        self.rejected: dict[str, tuple[int, str]] = {}
        self.errors: list[RowError] = []
        self.warnings: list[RowError] = []
        # (email, column) -> the row that gave a person's value, where not their first row.
        self.later: dict[tuple[str, str], int] = {}
        # (email, journey id) -> rows repeating an enrolment's first: few, so not in each record.
        self.repeats: dict[tuple[str, int], int] = {}
        # Managers, countries and dates repeat down a roster: check each value once.
        self._manager_emails: dict[str, str | EmailNotValidError] = {}
        self._countries: dict[str, str] = {}
        self._dates: dict[str, date] = {}

    def enrolment_rows(self) -> Iterator[PersonRow | EnrolmentRow]:
        """Every enrolment the file asks for: each person's first, then the others."""
        yield from self.people.values()
        yield from self.pairs.values()

    def error(self, row: int, column: str, value: str, message: str) -> None:
        self.errors.append(RowError(row, column, value, message))

    def add(self, row: int, given: dict[str, str]) -> None:
        """Check one data row and merge it into the records if it is sound."""
        self.rows += 1
        before = len(self.errors)
        cells: Mapping[str, str | None] = given  # None: a cell already reported
        if CONTROL.search("".join(given.values())):
            cells = self._without_controls(row, given)
        email = self._email(row, cells.get("email", ""))
        name = cells.get("name") or " ".join(
            filter(None, (cells.get("first_name"), cells.get("last_name")))
        )
        if not name and None not in (cells.get(c, "") for c in ("name", "first_name", "last_name")):
            self.error(row, "name", "", "no name: fill in name, or first_name and last_name")
        manager_name = cells.get("manager_name") or ""
        for column, value in (("name", name), ("manager_name", manager_name)):
            if len(value) > NAME_MAX:
                self.error(row, column, value, f"longer than {NAME_MAX} characters")
        manager = self._manager(row, cells.get("manager_email", ""), email)
        journey = self._journey(row, cells.get("journey", ""))
        start = self._date(row, cells.get("start_date", ""))
        tz = self._timezone(row, cells.get("timezone", ""))
        country = self._country(row, cells.get("country", ""))
        if len(self.errors) > before or journey is None:
            if email and email not in self.rejected:
                self.rejected[email] = (row, manager)
            return
        if manager:
            self._note_manager(row, manager, manager_name)
        new = PersonRow(row, name, tz, country, manager, email, journey, start)
        self._merge(row, email, new, journey, start)

    def _without_controls(self, row: int, cells: dict[str, str]) -> dict[str, str | None]:
        """Report each cell holding a control character; None keeps it out of the other checks."""
        checked: dict[str, str | None] = {}
        for column, value in cells.items():
            code = control_character(value)
            checked[column] = value if code is None else None
            if code is not None:
                message = f"contains a control character ({code}): remove it"
                self.error(row, column, escape_controls(value), message)
        return checked

    def _email(self, row: int, value: str | None) -> str:
        if value is None:
            return ""
        if not value:
            self.error(row, "email", "", "no email address")
            return ""
        try:
            return normal_email(value)
        except EmailNotValidError as exc:
            self.error(row, "email", value, f"not a valid email address: {exc}")
            return ""

    def _manager(self, row: int, value: str | None, email: str) -> str:
        if not value:
            return ""
        if value not in self._manager_emails:
            try:
                self._manager_emails[value] = normal_email(value)
            except EmailNotValidError as exc:
                self._manager_emails[value] = exc
        found = self._manager_emails[value]
        if isinstance(found, EmailNotValidError):
            self.error(row, "manager_email", value, f"not a valid email address: {found}")
            return ""
        if found == email:
            self.error(row, "manager_email", value, "a learner cannot be their own manager")
            return ""
        return found

    def _journey(self, row: int, value: str | None) -> JourneyPlan | None:
        if value is None:
            return None
        slug = value.lower() or self.default_slug
        if not slug:
            self.error(row, "journey", "", "no journey: fill in the journey's slug")
            return None
        journey = self.journeys.get(slug)
        if journey is None and value:  # an unknown default was reported once, for the file
            self.error(row, "journey", value, unknown_journey(slug, self.journeys))
        return journey

    def _date(self, row: int, value: str | None) -> date | None:
        if not value:
            return None
        if value not in self._dates and _DATE.fullmatch(value):
            with suppress(ValueError):  # 2027-02-30 matches the pattern but is no date
                self._dates[value] = date.fromisoformat(value)
        if value not in self._dates:
            self.error(row, "start_date", value, "not a date: write it as YYYY-MM-DD")
            return None
        return self._dates[value]

    def _timezone(self, row: int, value: str | None) -> str:
        if not value:
            return ""
        name = _zone_names().get(value.lower(), "")
        if not is_valid_timezone(name):
            message = "unknown time zone: use an IANA name such as Europe/London"
            self.error(row, "timezone", value, message)
        return name

    def _country(self, row: int, value: str | None) -> str:
        if value and value not in self._countries:
            known = is_valid_country(value) and len(value) <= COUNTRY_MAX
            self._countries[value] = value.upper() if known else ""
        if value and not self._countries[value]:
            self.error(row, "country", value, "unknown country: use an ISO 3166 code such as GB")
        return self._countries.get(value, "")

    def _note_manager(self, row: int, manager: str, manager_name: str) -> None:
        first = self.managers.get(manager)
        if first is None or (manager_name and not first[1]):
            self.managers[manager] = (first[0] if first else row, manager_name)

    def _merge(self, row: int, email: str, new: PersonRow, journey: JourneyPlan, start) -> None:
        """Record the row, unless it contradicts an earlier row about the same person."""
        old = self.people.get(email)
        pair: PersonRow | EnrolmentRow | None = None
        if old is not None:
            same = old.journey.journey_id == journey.journey_id
            pair = old if same else self.pairs.get((email, journey.journey_id))
        if old is not None and self._conflicts(row, old, new, pair):
            return
        if pair is not None and start and pair.start and start != pair.start:
            message = f"duplicate of row {pair.row} for {journey.slug}, which starts {pair.start}"
            self.error(row, "start_date", start.isoformat(), message + ": make them agree")
            return
        if old is None:
            self.people[email] = new  # the person and their first enrolment
            return
        self._fill_blanks(old, new)
        if pair is None:
            self.pairs[(email, journey.journey_id)] = EnrolmentRow(row, email, journey, start)
            return
        key = (email, journey.journey_id)
        self.repeats[key] = self.repeats.get(key, 0) + 1
        pair.start = pair.start or start
        message = f"repeats row {pair.row} for {journey.slug}; counted once"
        self.warnings.append(RowError(row, "email", email, message))

    def _conflicts(
        self, row: int, old: PersonRow, new: PersonRow, pair: PersonRow | EnrolmentRow | None
    ) -> bool:
        found = False
        for column, label, mine, theirs in (
            ("name", "name", new.name, old.name),
            ("timezone", "time zone", new.timezone, old.timezone),
            ("country", "country", new.country, old.country),
            ("manager_email", "manager", new.manager, old.manager),
        ):
            if mine and theirs and mine != theirs:
                found = True
                their_row = self.row_of(old, column)
                if pair is not None:
                    message = f"duplicate of row {their_row} for {pair.journey.slug} with"
                    message += f" a different {label} ({theirs}): make them agree"
                else:
                    message = f"row {their_row} gives this person a different {label}"
                    message += f" ({theirs}): a person has one {label}"
                self.error(row, column, mine, message)
        return found

    def _fill_blanks(self, old: PersonRow, new: PersonRow) -> None:
        """Take the values a later row gives that earlier rows about the person left blank."""
        if new.timezone and not old.timezone:
            old.timezone = new.timezone
            self.later[(old.email, "timezone")] = new.row
        if new.country and not old.country:
            old.country = new.country
            self.later[(old.email, "country")] = new.row
        if new.manager and not old.manager:
            old.manager = new.manager
            self.later[(old.email, "manager_email")] = new.row

    def rows_of(self, pair: PersonRow | EnrolmentRow) -> int:
        """Return how many rows of the file ask for this enrolment."""
        return 1 + self.repeats.get((pair.email, pair.journey.journey_id), 0)

    def row_of(self, person: PersonRow, column: str) -> int:
        """Return the row that gave the person's value in this column."""
        return self.later.get((person.email, column), person.row)


def check_loops(reader: RowChecker, known: KnownPeople) -> None:
    """Report each manager loop at the rows whose manager_email helps close it.

    Rows rejected for another reason still count: the file says who manages whom.
    """

    def stated(email: str) -> tuple[int, str] | None:
        """Return (row, manager) as the file gives them, or None if it names no manager."""
        person = reader.people.get(email)
        if person is not None and person.manager:
            return reader.row_of(person, "manager_email"), person.manager
        row, manager = reader.rejected.get(email, (0, ""))
        return (row, manager) if manager else None

    def manager_of(email: str) -> str:
        found = stated(email)
        return found[1] if found else known.manager_email(email)

    # Who has been walked is marked on the person's record: a set of a million emails would
    # cost tens of megabytes at the import's peak. Others (rejected, known) are few.
    others: set[str] = set()

    def done(email: str) -> bool:
        person = reader.people.get(email)
        return person.looked_up if person is not None else email in others

    for start in itertools.chain(reader.people, reader.rejected):
        if done(start) or stated(start) is None:
            continue
        path, on_path, node = [], set(), start
        while node and not done(node) and node not in on_path:
            path.append(node)
            on_path.add(node)
            node = manager_of(node)
        if node in on_path:
            loop = path[path.index(node) :]
            for i, email in enumerate(loop):
                found = stated(email)
                if found is not None:
                    chain = " → ".join([*loop[i:], *loop[: i + 1]])
                    reader.error(found[0], "manager_email", found[1], f"manager loop: {chain}")
        for email in path:
            person = reader.people.get(email)
            if person is not None:
                person.looked_up = True
            else:
                others.add(email)
