"""The learner CSV import: check every row, then write everything or nothing.

The file is streamed into one small record per person and per enrolment; the
database is read and written with chunked Core statements, so 100,000 rows
never become 100,000 ORM objects.

The package: `reading` (decoding, separator, header, rows), `checks` (each
row, duplicates, manager loops), `writing` (comparing with the database and
writing), `result` (RowError, ImportResult) and `error_csv`.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from nudger import webhooks
from nudger.config import Settings
from nudger.roster.checks import RowChecker, check_loops, unknown_journey
from nudger.roster.error_csv import write_error_csv
from nudger.roster.known import KnownPeople
from nudger.roster.reading import COLUMNS, Source, open_binary, read_rows
from nudger.roster.result import ImportResult, RowError
from nudger.roster.writing import (
    WritePlan,
    existing_enrolments,
    journey_plans,
    plan_writes,
    unmeasured_journeys,
    write_all,
)

__all__ = [
    "COLUMNS",
    "ImportResult",
    "RowError",
    "Source",
    "import_records",
    "import_roster",
    "write_error_csv",
]


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
    digest = hashlib.sha256()
    default_slug = (journey_slug or "").strip().lower()

    def feed(reader: RowChecker) -> None:
        with open_binary(source) as raw:
            read_rows(reader, raw, digest, bool(default_slug))

    name = filename or (str(source) if isinstance(source, str | Path) else "")
    return _import(
        session, settings, feed, digest, filename=name, journey_slug=journey_slug,
        dry_run=dry_run, now=now, actor=actor,
    )  # fmt: skip


def import_records(
    session: Session,
    settings: Settings,
    records: Iterable[dict[str, str]],
    *,
    label: str,
    now: datetime,
    actor: str,
    dry_run: bool = False,
) -> ImportResult:
    """Check learners given as records (CSV columns to values) like the rows of a CSV, and enrol
    them in one transaction if every one is sound.

    Record N (from 0) is checked as row N + 2 of a file, so errors say `row N + 2`; records need
    no header, so nothing is reported at row 1.
    """
    digest = hashlib.sha256()

    def feed(reader: RowChecker) -> None:
        for i, record in enumerate(records):
            cells = {c: (record.get(c) or "").strip() for c in COLUMNS if c in record}
            digest.update(repr(sorted(cells.items())).encode())
            reader.add(i + 2, cells)

    return _import(
        session, settings, feed, digest, filename=label, journey_slug=None, dry_run=dry_run,
        now=now, actor=actor,
    )  # fmt: skip


def _import(
    session: Session,
    settings: Settings,
    feed: Callable[[RowChecker], None],
    digest: Any,
    *,
    filename: str,
    journey_slug: str | None,
    dry_run: bool,
    now: datetime,
    actor: str,
) -> ImportResult:
    """Feed every row to the checks, compare with the database, and write all or nothing."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    journeys = journey_plans(session)
    default_slug = (journey_slug or "").strip().lower()
    reader = RowChecker(journeys, default_slug)
    if default_slug and default_slug not in journeys:
        reader.error(0, "", journey_slug or "", unknown_journey(default_slug, journeys))
    feed(reader)
    result = ImportResult(rows=reader.rows, dry_run=dry_run)
    plan, slugs = WritePlan(), []
    if reader.people or reader.rejected:
        conn = session.connection()
        stated = (manager for _, manager in reader.rejected.values() if manager)
        # A name may come twice (a person who manages others): the lookup minds no repeats.
        named = itertools.chain(reader.people, reader.rejected, reader.managers, stated)
        known = KnownPeople(conn, named)
        check_loops(reader, known)
        person_ids = [known.by_email[e].id for e in reader.people if e in known.by_email]
        journey_ids = {p.journey.journey_id for p in reader.enrolment_rows()}
        enrolled = existing_enrolments(conn, person_ids, journey_ids)
        del person_ids
        slugs = sorted({p.journey.slug for p in reader.enrolment_rows()})
        plan = plan_writes(reader, known, enrolled, settings, now)
        plan.unmeasured = unmeasured_journeys(session)
    result.errors = sorted(reader.errors, key=lambda e: e.row)
    result.warnings = sorted(reader.warnings, key=lambda e: e.row)
    if result.errors:
        return result
    result.people_created, result.people_updated = len(plan.new_people), len(plan.updates)
    result.enrolments_created, result.unchanged = len(plan.enrolments), plan.unchanged
    if dry_run or plan.empty:
        return result  # a re-import that changes nothing leaves no trace either
    batch = dict(
        filename=filename[:500],
        checksum=digest.hexdigest(), actor=actor, rows=result.rows, created_at=now,
        people_created=result.people_created, people_updated=result.people_updated,
        enrolments_created=result.enrolments_created,
    )  # fmt: skip
    detail = {k: v for k, v in batch.items() if k != "created_at"} | {
        "unchanged": result.unchanged, "warnings": len(result.warnings),
        "journeys": slugs,
    }  # fmt: skip
    ids = {email: row.id for email, row in known.by_email.items()}
    # A million `enrolment.created` that nobody receives need no fan-out at the next tick.
    plan.events_heard = webhooks.subscribed(session, settings)
    result.batch_id = write_all(session, plan, ids, batch, detail)
    return result
