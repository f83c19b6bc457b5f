"""Progress of enrolments, step by step."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlmodel import Session, select

from nudger.models import Enrolment, EnrolmentStep, Journey, Person, Rating, Step

CHUNK = 1000


def step_status(es: EnrolmentStep | None, enrolment_status: str, now: datetime) -> str:
    """Return scheduled|sent|overdue|done|cancelled for one step of an enrolment."""
    if es is None:
        return "cancelled" if enrolment_status == "withdrawn" else "scheduled"
    if es.status == "done":
        return "done"
    if es.status == "cancelled" or enrolment_status == "withdrawn":
        return "cancelled"
    if es.due_at is not None and es.due_at <= now:
        return "overdue"
    return "sent"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def journey_slugs(session: Session) -> list[str]:
    """Return the slugs of the journeys loaded, in order."""
    return sorted(session.exec(select(Journey.slug)))


def progress(session: Session, now: datetime, journey_slug: str | None = None) -> Iterator[dict]:
    """Yield one dict per enrolment: email, journey, status and its steps."""
    journeys = {j.id: j for j in session.exec(select(Journey))}
    if journey_slug:
        journeys = {i: j for i, j in journeys.items() if j.slug == journey_slug}
    steps: dict[int, list[Step]] = defaultdict(list)
    for step in session.exec(select(Step).order_by(Step.journey_id, Step.position)):
        steps[step.journey_id].append(step)
    last_id = 0
    while True:
        query = (
            select(Enrolment, Person.email, Person.undeliverable_at)
            .join(Person, Person.id == Enrolment.person_id)
            .where(Enrolment.journey_id.in_(list(journeys)), Enrolment.id > last_id)
            .order_by(Enrolment.id)
            .limit(CHUNK)
        )
        batch = session.exec(query).all()
        if not batch:
            return
        last_id = batch[-1][0].id
        sent: dict[int, dict[int, EnrolmentStep]] = defaultdict(dict)
        ids = [e.id for e, _, _ in batch]
        for es in session.exec(select(EnrolmentStep).where(EnrolmentStep.enrolment_id.in_(ids))):
            sent[es.enrolment_id][es.step_id] = es
        rated = _ratings(session, ids)
        for enrolment, email, undeliverable_at in batch:
            mine = sent[enrolment.id]
            yield {
                "email": email,
                "journey": journeys[enrolment.journey_id].slug,
                "status": enrolment.status,
                # False once mail to the address bounced for good (nudger.inbound): nothing is sent.
                "deliverable": undeliverable_at is None,
                "start_date": enrolment.start_date.isoformat(),
                "steps": [
                    {
                        "key": step.key,
                        "status": step_status(mine.get(step.id), enrolment.status, now),
                        "sent_at": _iso(mine[step.id].sent_at) if step.id in mine else None,
                        "done_at": _iso(mine[step.id].done_at) if step.id in mine else None,
                    }
                    for step in steps[enrolment.journey_id]
                    if not step.removed or step.id in mine
                ],
                "ratings": rated.get(enrolment.id, []),
            }


def _ratings(session: Session, ids: list[int]) -> dict[int, list[dict]]:
    """Return every rating of these enrolments, removed behaviours' too, oldest checkpoint first."""
    found: dict[int, list[dict]] = defaultdict(list)
    query = (
        select(Rating)
        .where(Rating.enrolment_id.in_(ids))
        .order_by(Rating.enrolment_id, Rating.checkpoint_order, Rating.rater, Rating.behaviour)
    )
    for r in session.exec(query):
        found[r.enrolment_id].append(
            {
                "behaviour": r.behaviour,
                "rater": r.rater,
                "checkpoint": r.checkpoint,
                "value": r.value,
                "recorded_at": r.recorded_at.isoformat(),
            }
        )
    return found


def as_csv(rows: Iterator[dict]) -> str:
    """Return the report as CSV: one line per enrolment-step."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["email", "journey", "enrolment_status", "step", "status", "sent_at", "done_at"]
    )
    for row in rows:
        for s in row["steps"]:
            writer.writerow(
                [
                    row["email"],
                    row["journey"],
                    row["status"],
                    s["key"],
                    s["status"],
                    s["sent_at"] or "",
                    s["done_at"] or "",
                ]
            )
    return out.getvalue()


#: how each step status shows in the table's bar of steps
MARKS = {"done": "✓", "sent": "·", "overdue": "!", "scheduled": " ", "cancelled": "x"}
LEGEND = "✓ done  · sent  ! overdue  x cancelled  (blank) scheduled"


def as_table(rows: Iterable[dict]) -> str:
    """Return the report as a table with a header: one line per enrolment.

    Columns are as wide as their widest value, so long emails or journey
    slugs never push the rest out of line.
    """
    header = ("EMAIL", "JOURNEY", "STATUS", "STEPS", "DONE")
    lines = [
        (
            row["email"],
            row["journey"],
            row["status"],
            "[" + "".join(MARKS[s["status"]] for s in row["steps"]) + "]",
            f"{sum(s['status'] == 'done' for s in row['steps'])}/{len(row['steps'])}",
        )
        for row in rows
    ]
    if not lines:
        return "No enrolments."
    widths = [max(len(line[i]) for line in (header, *lines)) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (header, *lines)
    ]
    return "\n".join([*text, "", LEGEND])
