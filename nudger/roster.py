"""The learner CSV import: check every row, then write everything or nothing.

The file is streamed into one small record per person and per enrolment; the
database is read and written with chunked Core statements, so 100,000 rows
never become 100,000 ORM objects.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Connection, Row, bindparam, insert, select, update
from sqlmodel import Session
from sqlmodel import select as orm_select

from nudger.calendar import WorkCalendar, is_valid_country, is_valid_timezone
from nudger.config import Settings
from nudger.models import AuditLog, Enrolment, ImportBatch, Journey, Person
from nudger.schedule import JourneyPlan, default_start, next_slot

Source = str | Path | bytes | BinaryIO  # a str is a path, as with open()
T = TypeVar("T")

CHUNK = 1000  # keys per IN (...), far below every driver's parameter limit
WRITE_CHUNK = 5000  # rows per executemany: bounds the dicts alive at once
COLUMNS = ("email", "name", "first_name", "last_name", "manager_email", "manager_name",
           "journey", "start_date", "timezone", "country")  # fmt: skip
ALIASES = {c.replace("_", ""): c for c in COLUMNS} | {
    "emailaddress": "email", "fullname": "name", "journeyslug": "journey", "tz": "timezone"
}  # fmt: skip
NAME_COLUMNS = {"name", "first_name", "last_name"}
NAME_MAX = Person.__table__.c.name.type.length  # PostgreSQL refuses longer; SQLite would not
COUNTRY_MAX = Person.__table__.c.country.type.length
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SHIFTED = "more values than the header has columns: quote values that contain the separator"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")  # an RFC 5322 dot-atom, ASCII only
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")
_HEADER_NOISE = re.compile(r"[\s_-]+")


@dataclass(frozen=True)
class RowError:
    """A problem a person can act on; row 1 is the header, row 0 the whole file."""

    row: int
    field: str
    value: str
    message: str


@dataclass
class ImportResult:
    """What an import read, found wrong, and did (or, in a dry run, would do).

    A rejected file did nothing, so its counts stay 0 apart from `rows`.
    """

    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    people_created: int = 0
    people_updated: int = 0
    enrolments_created: int = 0
    unchanged: int = 0
    dry_run: bool = False
    batch_id: int | None = None

    @property
    def ok(self) -> bool:
        """Say whether the file was accepted."""
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        """Return the result as one JSON-ready dict (the CLI's `--json`)."""
        names = ("rows", "people_created", "people_updated", "enrolments_created", "unchanged")
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "batch_id": self.batch_id,
            **{name: getattr(self, name) for name in names},
            "errors": [asdict(e) for e in self.errors],
            "warnings": [asdict(w) for w in self.warnings],
        }


@dataclass(slots=True)
class _Person:
    """A learner as the file describes them; "" means not given, `*_row` where it was."""

    row: int
    name: str
    timezone: str
    tz_row: int
    country: str
    country_row: int
    manager: str
    manager_row: int


@dataclass(slots=True)
class _Pair:
    """One (learner, journey) enrolment, asked for by one or more agreeing rows."""

    row: int
    email: str
    journey: JourneyPlan
    start: date | None
    rows: int = 1


# --- reading the file ---------------------------------------------------------------


class _NotUtf8(Exception):
    pass


@contextmanager
def _binary(source: Source, rewind: bool = False) -> Iterator[BinaryIO]:
    if isinstance(source, bytes | bytearray):
        yield io.BytesIO(source)
    elif isinstance(source, str | Path):
        with open(source, "rb") as f:
            yield f
    else:
        if rewind and source.seekable():
            source.seek(0)
        yield source


def _lines(raw: BinaryIO, digest: Any, errors: str) -> Iterator[str]:
    """Decode line by line, so a byte that is not UTF-8 is reported with its line."""
    for number, line in enumerate(raw, start=1):
        digest.update(line)
        try:
            text = line.decode("utf-8", errors)
        except UnicodeDecodeError as exc:
            byte = line[exc.start : exc.start + 1].hex().upper()
            message = f"the file is not UTF-8 text (line {number} has the byte 0x{byte})"
            raise _NotUtf8(message + ': save it as "CSV UTF-8" and try again') from exc
        if "\r" in text[:-2]:  # old Mac spreadsheets end lines with a lone CR
            yield from filter(None, _LONE_CR.split(text))
        else:
            yield text


def _records(raw: BinaryIO, digest: Any, errors: str = "strict") -> tuple[str, Iterator[list]]:
    """Return the separator and the records; the header line decides comma or semicolon."""
    lines = _lines(raw, digest, errors)
    first = next(lines, "").removeprefix("\ufeff")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    return delimiter, csv.reader(itertools.chain([first], lines), delimiter=delimiter)


def _header(cells: list[str], default_journey: bool) -> tuple[dict[str, int], list, list]:
    """Map canonical column names to positions; report missing and unknown columns."""
    index: dict[str, int] = {}
    errors, warnings = [], []
    for i, raw in enumerate(cells):
        key = _HEADER_NOISE.sub("", raw).lower()
        if not key:
            continue  # a trailing separator makes a nameless, empty column
        column = ALIASES.get(key)
        if column is None:
            message = f"unknown column, ignored (known: {', '.join(COLUMNS)})"
            warnings.append(RowError(1, raw.strip(), "", message))
        elif column in index:
            errors.append(RowError(1, raw.strip(), "", f"the {column} column appears twice"))
        else:
            index[column] = i
    missing = []
    if "email" not in index:
        missing.append("the file has no email column")
    if not index.keys() & NAME_COLUMNS:
        missing.append("the file has no name column: add name, or first_name and last_name")
    if "journey" not in index and not default_journey:
        missing.append("the file has no journey column: add one, or name the journey for the file")
    return index, errors + [RowError(1, "", "", m) for m in missing], warnings


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


def _normal_email(value: str) -> str:
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


def _unknown_journey(slug: str, journeys: dict[str, JourneyPlan]) -> str:
    known = ", ".join(sorted(journeys)) or "none yet: run `nudger journeys sync`"
    return f"unknown journey {slug!r}; known journeys: {known}"


class _Reader:
    """Check rows one at a time and merge them into per-person and per-enrolment records."""

    def __init__(self, journeys: dict[str, JourneyPlan], default_slug: str) -> None:
        self.journeys, self.default_slug = journeys, default_slug
        self.rows = 0
        self.people: dict[str, _Person] = {}
        self.pairs: dict[tuple[str, int], _Pair] = {}
        self.managers: dict[str, tuple[int, str]] = {}  # email -> (first row, manager_name)
        self.errors: list[RowError] = []
        self.warnings: list[RowError] = []
        # Managers, countries and dates repeat down a roster: check each value once.
        self._manager_emails: dict[str, str | EmailNotValidError] = {}
        self._countries: dict[str, str] = {}
        self._dates: dict[str, date] = {}

    def error(self, row: int, column: str, value: str, message: str) -> None:
        self.errors.append(RowError(row, column, value, message))

    def add(self, row: int, cells: dict[str, str]) -> None:
        """Check one data row and merge it into the records if it is sound."""
        self.rows += 1
        before = len(self.errors)
        email = self._email(row, cells.get("email", ""))
        name = cells.get("name") or " ".join(
            filter(None, (cells.get("first_name"), cells.get("last_name")))
        )
        if not name:
            self.error(row, "name", "", "no name: fill in name, or first_name and last_name")
        manager_name = cells.get("manager_name", "")
        for column, value in (("name", name), ("manager_name", manager_name)):
            if len(value) > NAME_MAX:
                self.error(row, column, value, f"longer than {NAME_MAX} characters")
        manager = self._manager(row, cells.get("manager_email", ""), email)
        journey = self._journey(row, cells.get("journey", ""))
        start = self._date(row, cells.get("start_date", ""))
        tz = self._timezone(row, cells.get("timezone", ""))
        country = self._country(row, cells.get("country", ""))
        if len(self.errors) > before or journey is None:
            return
        if manager:
            self._note_manager(row, manager, manager_name)
        new = _Person(row, name, tz, row, country, row, manager, row)
        self._merge(row, email, new, journey, start)

    def _email(self, row: int, value: str) -> str:
        if not value:
            self.error(row, "email", "", "no email address")
            return ""
        try:
            return _normal_email(value)
        except EmailNotValidError as exc:
            self.error(row, "email", value, f"not a valid email address: {exc}")
            return ""

    def _manager(self, row: int, value: str, email: str) -> str:
        if not value:
            return ""
        if value not in self._manager_emails:
            try:
                self._manager_emails[value] = _normal_email(value)
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

    def _journey(self, row: int, value: str) -> JourneyPlan | None:
        slug = value.lower() or self.default_slug
        if not slug:
            self.error(row, "journey", "", "no journey: fill in the journey's slug")
            return None
        journey = self.journeys.get(slug)
        if journey is None and value:  # an unknown default was reported once, for the file
            self.error(row, "journey", value, _unknown_journey(slug, self.journeys))
        return journey

    def _date(self, row: int, value: str) -> date | None:
        if not value:
            return None
        if value not in self._dates and _DATE.fullmatch(value):
            with suppress(ValueError):  # 2027-02-30 matches the pattern but is no date
                self._dates[value] = date.fromisoformat(value)
        if value not in self._dates:
            self.error(row, "start_date", value, "not a date: write it as YYYY-MM-DD")
            return None
        return self._dates[value]

    def _timezone(self, row: int, value: str) -> str:
        if not value:
            return ""
        name = _zone_names().get(value.lower(), "")
        if not is_valid_timezone(name):
            message = "unknown time zone: use an IANA name such as Europe/London"
            self.error(row, "timezone", value, message)
        return name

    def _country(self, row: int, value: str) -> str:
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

    def _merge(self, row: int, email: str, new: _Person, journey: JourneyPlan, start) -> None:
        """Record the row, unless it contradicts an earlier row about the same person."""
        pair = self.pairs.get((email, journey.journey_id))
        old = self.people.get(email)
        if old is not None and self._conflicts(row, old, new, pair):
            return
        if pair is not None and start and pair.start and start != pair.start:
            message = f"duplicate of row {pair.row} for {journey.slug}, which starts {pair.start}"
            self.error(row, "start_date", start.isoformat(), message + ": make them agree")
            return
        if old is None:
            self.people[email] = new
        else:
            _fill_blanks(old, new)
        if pair is None:
            self.pairs[(email, journey.journey_id)] = _Pair(row, email, journey, start)
            return
        pair.rows += 1
        pair.start = pair.start or start
        message = f"repeats row {pair.row} for {journey.slug}; counted once"
        self.warnings.append(RowError(row, "email", email, message))

    def _conflicts(self, row: int, old: _Person, new: _Person, pair: _Pair | None) -> bool:
        found = False
        for column, label, mine, theirs, their_row in (
            ("name", "name", new.name, old.name, old.row),
            ("timezone", "time zone", new.timezone, old.timezone, old.tz_row),
            ("country", "country", new.country, old.country, old.country_row),
            ("manager_email", "manager", new.manager, old.manager, old.manager_row),
        ):
            if mine and theirs and mine != theirs:
                found = True
                if pair is not None:
                    message = f"duplicate of row {their_row} for {pair.journey.slug} with"
                    message += f" a different {label} ({theirs}): make them agree"
                else:
                    message = f"row {their_row} gives this person a different {label}"
                    message += f" ({theirs}): a person has one {label}"
                self.error(row, column, mine, message)
        return found


def _fill_blanks(old: _Person, new: _Person) -> None:
    """Take the values a later row gives that earlier rows about the person left blank."""
    if new.timezone and not old.timezone:
        old.timezone, old.tz_row = new.timezone, new.row
    if new.country and not old.country:
        old.country, old.country_row = new.country, new.row
    if new.manager and not old.manager:
        old.manager, old.manager_row = new.manager, new.row


def _read(reader: _Reader, raw: BinaryIO, digest: Any, default_journey: bool) -> None:
    """Stream the file through the reader; file-level problems become row 0 or 1 errors."""
    row = 1
    try:
        _, records = _records(raw, digest)
        header = next(records, [])
        if not any(c.strip() for c in header):
            reader.error(0, "", "", "the file is empty: expected a header line and learners")
            return
        index, errors, warnings = _header(header, default_journey)
        reader.errors += errors
        reader.warnings += warnings
        if errors:
            return
        width, columns = len(header), list(index.items())
        for row, record in enumerate(records, start=2):
            cells = [c.strip() for c in record]
            if not any(cells):
                continue  # spreadsheets leave blank lines behind
            if len(cells) > width and any(cells[width:]):
                # The values have shifted, so checking them one by one would only mislead.
                reader.rows += 1
                reader.error(row, "", "", SHIFTED)
                continue
            reader.add(row, {c: cells[i] if i < len(cells) else "" for c, i in columns})
        if reader.rows == 0:
            reader.error(0, "", "", "the file has a header but no learners")
    except _NotUtf8 as exc:
        reader.error(0, "", "", str(exc))
    except csv.Error as exc:
        reader.error(row + 1, "", "", f"the file is not a readable CSV here: {exc}")


# --- what the database already holds ------------------------------------------------


def _chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _journeys(session: Session) -> dict[str, JourneyPlan]:
    """Return every journey's schedule by slug; a handful of rows, so the ORM is fine."""
    return {j.slug: JourneyPlan.build(j, []) for j in session.exec(orm_select(Journey))}


class _Known:
    """The people the file names who are already in the database, and their managers."""

    def __init__(self, conn: Connection, emails: Iterable[str]) -> None:
        t = Person.__table__
        columns = (t.c.id, t.c.email, t.c.name, t.c.timezone, t.c.country, t.c.manager_id)
        keys = bindparam("keys", expanding=True)
        self.by_email: dict[str, Row] = {}
        self.by_id: dict[int, Row] = {}
        self._load(conn, select(*columns).where(t.c.email.in_(keys)), emails)
        # Walk up the reporting lines, so a loop closed through the database shows.
        while missing := {r.manager_id for r in self.by_id.values()} - self.by_id.keys() - {None}:
            self._load(conn, select(*columns).where(t.c.id.in_(keys)), missing)

    def _load(self, conn: Connection, stmt: Any, keys: Iterable) -> None:
        for chunk in _chunks(keys):
            for r in conn.execute(stmt, {"keys": chunk}):
                self.by_email[r.email] = self.by_id[r.id] = r

    def manager_email(self, email: str) -> str:
        """Return the email of the manager the database has for `email`, or ""."""
        row = self.by_email.get(email)
        manager = self.by_id.get(row.manager_id) if row is not None and row.manager_id else None
        return manager.email if manager is not None else ""


def _enrolments(conn: Connection, person_ids: list[int], journey_ids: set[int]) -> dict:
    """Return {(person_id, journey_id): (status, start_date)} on the file's journeys."""
    t = Enrolment.__table__
    stmt = select(t.c.person_id, t.c.journey_id, t.c.status, t.c.start_date).where(
        t.c.person_id.in_(bindparam("keys", expanding=True)),
        t.c.journey_id.in_(sorted(journey_ids)),
    )
    found = {}
    for chunk in _chunks(person_ids):
        for r in conn.execute(stmt, {"keys": chunk}):
            found[(r.person_id, r.journey_id)] = (r.status, r.start_date)
    return found


def _check_loops(reader: _Reader, known: _Known) -> None:
    """Report each manager loop at the rows whose manager_email helps close it."""

    def manager_of(email: str) -> str:
        person = reader.people.get(email)
        return person.manager if person and person.manager else known.manager_email(email)

    done: set[str] = set()
    for start, person in reader.people.items():
        if not person.manager or start in done:
            continue
        path, on_path, node = [], set(), start
        while node and node not in done and node not in on_path:
            path.append(node)
            on_path.add(node)
            node = manager_of(node)
        if node in on_path:
            loop = path[path.index(node) :]
            for i, email in enumerate(loop):
                culprit = reader.people.get(email)
                if culprit is not None and culprit.manager:
                    chain = " → ".join([*loop[i:], *loop[: i + 1]])
                    message = f"manager loop: {chain}"
                    reader.error(culprit.manager_row, "manager_email", culprit.manager, message)
        done.update(path)


# --- deciding what to write ---------------------------------------------------------


@dataclass
class _Plan:
    """Exactly what a commit writes; a dry run stops here."""

    new_people: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)
    updates: dict[str, tuple[int, str, str, str, str]] = field(default_factory=dict)
    enrolments: list[tuple[str, int, date]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.new_people or self.updates or self.enrolments)


class _Starts:
    """Work out start dates, cached per journey, zone and country (rosters repeat them)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._defaults: dict[tuple, date] = {}
        self._slots: dict[tuple, date] = {}

    def start(self, journey: JourneyPlan, tz: str, country: str, given: date | None):
        """Return (start date, whether a past `given` date moved to the next send slot)."""
        cal = WorkCalendar(journey.weekdays, country, journey.skip_holidays)
        key = (journey.journey_id, tz, country)
        if given is None:
            if key not in self._defaults:
                self._defaults[key] = default_start(cal, tz, self.now)
            return self._defaults[key], False
        if key not in self._slots:
            self._slots[key] = next_slot(cal, tz, journey.send_time, self.now)
        slot = self._slots[key]
        # A start whose first send time is behind us would send every step due by now at once.
        if given < slot and cal.next_working_day(given) < slot:
            return slot, True
        return given, False


def _plan(reader: _Reader, known: _Known, enrolled: dict, settings: Settings, now) -> _Plan:
    """Compare the file with the database: who is new, who changed, which enrolments."""
    plan, starts = _Plan(), _Starts(now)
    zone, country = settings.default_timezone, settings.default_country.upper()
    for email, p in reader.people.items():
        row = known.by_email.get(email)
        if row is None:
            plan.new_people[email] = (p.name, p.timezone or zone, p.country or country, p.manager)
            continue
        current = (row.name, row.timezone, row.country, known.manager_email(email))
        given = (p.name, p.timezone, p.country, p.manager)
        # A blank cell keeps what the database has; it never resets a value to the default.
        wanted = tuple(mine or theirs for mine, theirs in zip(given, current, strict=True))
        if wanted != current:
            plan.updates[email] = (row.id, *wanted)
    for email, (first_row, name) in reader.managers.items():
        if email not in reader.people and email not in known.by_email:
            plan.new_people[email] = (name, zone, country, "")
            named = f"named {name!r}" if name else "with no name"
            message = f"manager not in the file: added as a person {named}"
            reader.warnings.append(RowError(first_row, "manager_email", email, message))
    for pair in reader.pairs.values():
        _plan_pair(plan, pair, reader.warnings, known, enrolled, starts)
    return plan


def _plan_pair(
    plan: _Plan, pair: _Pair, warnings: list, known: _Known, enrolled: dict, starts: _Starts
) -> None:
    """Add the pair's enrolment to the plan, or count its rows as unchanged."""
    email, row = pair.email, known.by_email.get(pair.email)
    existing = enrolled.get((row.id, pair.journey.journey_id)) if row is not None else None
    if existing is not None:
        status, started = existing
        if status != "active" or (pair.start and pair.start != started):
            message = f"already enrolled ({status}, starting {started}): left as it is"
            warnings.append(RowError(pair.row, "journey", pair.journey.slug, message))
        if email not in plan.updates:
            plan.unchanged += pair.rows
        return
    if email in plan.new_people:
        _name, tz, country, _manager = plan.new_people[email]
    elif email in plan.updates:
        _id, _name, tz, country, _manager = plan.updates[email]
    else:
        tz, country = row.timezone, row.country
    start, moved = starts.start(pair.journey, tz, country, pair.start)
    if moved:
        message = f"in the past: starts on {start}, the next send slot, instead"
        warnings.append(RowError(pair.row, "start_date", pair.start.isoformat(), message))
    plan.enrolments.append((email, pair.journey.journey_id, start))


# --- writing ------------------------------------------------------------------------


def _insert_people(conn: Connection, plan: _Plan, ids: dict[str, int], now: datetime) -> None:
    """Insert new people managers first, so each row carries its manager_id from the start."""
    t = Person.__table__
    stmt = insert(t).returning(t.c.id, t.c.email)
    pending = list(plan.new_people.items())
    while pending:
        # One layer of the reporting lines per pass: every manager has an id before their
        # reports are inserted, which spares a bulk UPDATE of manager_id afterwards.
        ready = [(e, p) for e, p in pending if not p[3] or p[3] in ids]
        pending = [(e, p) for e, p in pending if p[3] and p[3] not in ids]
        if not ready:
            raise RuntimeError("a manager loop among new people slipped past the checks")
        for chunk in _chunks(ready, WRITE_CHUNK):
            values = [
                dict(email=email, name=name, timezone=tz, country=country, created_at=now,
                     updated_at=now, manager_id=ids[manager] if manager else None)
                for email, (name, tz, country, manager) in chunk
            ]  # fmt: skip
            ids.update((r.email, r.id) for r in conn.execute(stmt, values))


def _update_people(conn: Connection, plan: _Plan, ids: dict[str, int], now: datetime) -> None:
    t = Person.__table__
    stmt = (
        update(t)
        .where(t.c.id == bindparam("pid"))
        .values(name=bindparam("v_name"), timezone=bindparam("v_tz"),
                country=bindparam("v_country"), manager_id=bindparam("v_manager"), updated_at=now)
    )  # fmt: skip
    rows = (
        dict(pid=pid, v_name=name, v_tz=tz, v_country=country,
             v_manager=ids[manager] if manager else None)
        for pid, name, tz, country, manager in plan.updates.values()
    )  # fmt: skip
    for chunk in _chunks(rows, WRITE_CHUNK):
        conn.execute(stmt, chunk)


def _insert_enrolments(conn, plan: _Plan, ids: dict[str, int], batch_id: int, now) -> None:
    # next_action_at = now: the next tick picks the enrolment up and works out its real times.
    same = dict(status="active", shift_days=0, next_position=0, next_action_at=now,
                paused_at=None, reminders_muted=False, import_batch_id=batch_id,
                created_at=now, updated_at=now)  # fmt: skip
    rows = (
        dict(same, person_id=ids[email], journey_id=journey_id, start_date=start)
        for email, journey_id, start in plan.enrolments
    )
    for chunk in _chunks(rows, WRITE_CHUNK):
        conn.execute(insert(Enrolment.__table__), chunk)


def _write(session: Session, plan: _Plan, ids: dict[str, int], batch: dict, detail: dict) -> int:
    """Write the batch, people, enrolments and the audit row, and commit; return the batch id."""
    now = batch["created_at"]
    try:
        conn = session.connection()
        t = ImportBatch.__table__
        batch_id = conn.execute(insert(t).returning(t.c.id), batch).scalar_one()
        _insert_people(conn, plan, ids, now)
        _update_people(conn, plan, ids, now)
        _insert_enrolments(conn, plan, ids, batch_id, now)
        audit = dict(at=now, actor=batch["actor"], action="import", subject_type="import_batch",
                     subject_id=batch_id, detail=detail)  # fmt: skip
        conn.execute(insert(AuditLog.__table__), audit)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return batch_id


# --- the entry points ---------------------------------------------------------------


def import_roster(
    session: Session,
    settings: Settings,
    source: Source,
    *,
    filename: str = "",
    journey_slug: str | None = None,
    dry_run: bool = False,
    now: datetime,
    actor: str = "cli",
) -> ImportResult:
    """Check a learner CSV and, if every row is sound, enrol them in one transaction."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    journeys = _journeys(session)
    default_slug = (journey_slug or "").strip().lower()
    reader = _Reader(journeys, default_slug)
    if default_slug and default_slug not in journeys:
        reader.error(0, "", journey_slug or "", _unknown_journey(default_slug, journeys))
    digest = hashlib.sha256()
    with _binary(source) as raw:
        _read(reader, raw, digest, bool(default_slug))
    result = ImportResult(rows=reader.rows, dry_run=dry_run)
    plan = _Plan()
    if reader.people:
        conn = session.connection()
        known = _Known(conn, [*reader.people, *(reader.managers.keys() - reader.people.keys())])
        _check_loops(reader, known)
        person_ids = [known.by_email[e].id for e in reader.people if e in known.by_email]
        journey_ids = {p.journey.journey_id for p in reader.pairs.values()}
        enrolled = _enrolments(conn, person_ids, journey_ids)
        plan = _plan(reader, known, enrolled, settings, now)
    result.errors = sorted(reader.errors, key=lambda e: e.row)
    result.warnings = sorted(reader.warnings, key=lambda e: e.row)
    if result.errors:
        return result
    result.people_created, result.people_updated = len(plan.new_people), len(plan.updates)
    result.enrolments_created, result.unchanged = len(plan.enrolments), plan.unchanged
    if dry_run or plan.empty:
        return result  # a re-import that changes nothing leaves no trace either
    batch = dict(
        filename=(filename or (str(source) if isinstance(source, str | Path) else ""))[:500],
        checksum=digest.hexdigest(), actor=actor, rows=result.rows, created_at=now,
        people_created=result.people_created, people_updated=result.people_updated,
        enrolments_created=result.enrolments_created,
    )  # fmt: skip
    detail = {k: v for k, v in batch.items() if k != "created_at"} | {
        "unchanged": result.unchanged, "warnings": len(result.warnings),
        "journeys": sorted({p.journey.slug for p in reader.pairs.values()}),
    }  # fmt: skip
    ids = {email: row.id for email, row in known.by_email.items()}
    result.batch_id = _write(session, plan, ids, batch, detail)
    return result


def _neutral(cell: str) -> str:
    """Defuse a cell that a spreadsheet would run as a formula (CSV injection)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def write_error_csv(result: ImportResult, source: Source) -> str:
    """Return the rejected rows of `source` with an `error` column, safe for spreadsheets.

    The separator is the original file's, so it opens where the original did;
    encode it as utf-8-sig for Excel.
    """
    messages: dict[int, list[str]] = defaultdict(list)
    for e in result.errors:
        if e.row >= 2:
            messages[e.row].append(f"{e.field}: {e.message}" if e.field else e.message)
    out = io.StringIO()
    with _binary(source, rewind=True) as raw:
        delimiter, records = _records(raw, hashlib.sha256(), errors="replace")
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
        header = next(records, [])
        writer.writerow([*map(_neutral, header), "error"])
        for row, record in enumerate(records, start=2):
            if row in messages:
                padded = record + [""] * (len(header) - len(record))
                writer.writerow([*map(_neutral, padded), _neutral("; ".join(messages[row]))])
    return out.getvalue()
