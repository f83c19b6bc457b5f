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
from datetime import datetime
from pathlib import Path

from sqlmodel import Session

from nudger.config import Settings
from nudger.roster.checks import _check_loops, _Reader, _unknown_journey
from nudger.roster.checks import _normal_email as _normal_email  # tests/test_roster.py checks it
from nudger.roster.error_csv import write_error_csv
from nudger.roster.reading import COLUMNS, Source, _binary, _read
from nudger.roster.result import ImportResult, RowError
from nudger.roster.writing import _enrolments, _journeys, _Known, _Plan, _plan, _write

__all__ = ["COLUMNS", "ImportResult", "RowError", "Source", "import_roster", "write_error_csv"]


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
