"""What every composer shares: a send batch's loaded rows, and the template view of its parts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from email.utils import parseaddr
from functools import lru_cache
from typing import TypeVar

from sqlmodel import Session, func, select

from nudger import tokens
from nudger.bulk import among
from nudger.calendar import zone
from nudger.config import Settings
from nudger.models import Enrolment, EnrolmentStep, Journey, Outbox, Person, Step

M = TypeVar("M")


# session.info keys that `preload` fills in for a send batch, so that composers
# find what it loaded without a query per row.
PRELOADED = "nudger.preloaded"  # the objects loaded, by (model, id)
LIVE_STEPS = "nudger.live_steps"  # each journey's number of live steps, by journey id


def loaded(session: Session, model: type[M], ident: int) -> M | None:
    """Return an object a send batch preloaded (a dict lookup), else `session.get` it."""
    found = session.info.get(PRELOADED, {}).get((model, ident))
    return found if found is not None else session.get(model, ident)


def sender_domain(settings: Settings) -> str:
    """Return the domain of NUDGER_FROM, used in Message-IDs and invite UIDs."""
    return _domain(settings.from_addr)


@lru_cache(maxsize=64)
def _domain(from_addr: str) -> str:
    return parseaddr(from_addr)[1].rpartition("@")[2] or "localhost"


def person_ctx(person: Person, slot: Callable[[str], str] = str) -> dict:
    """Return the template view of a person; `slot` stands in each string (see skeletons)."""
    name = person.name or person.email.split("@")[0]
    return {"name": slot(name), "first_name": slot(name.split()[0]), "email": slot(person.email)}


def journey_ctx(journey: Journey) -> dict:
    """Return the template view of a journey."""
    return {"title": journey.title, "slug": journey.slug, "summary": journey.spec.get("summary")}


def live_step_count(session: Session, journey_id: int) -> int:
    """Return how many steps a journey has now (counted once per send batch)."""
    known = session.info.get(LIVE_STEPS, {})
    if journey_id in known:
        return known[journey_id]
    query = select(func.count()).where(Step.journey_id == journey_id, Step.removed.is_(False))
    return session.exec(query).one()


def step_ctx(
    settings: Settings,
    es: EnrolmentStep,
    step: Step,
    total: int,
    tz: str,
    slot: Callable[[str], str] = str,
) -> dict:
    """Return the template view of one sent step; `slot` stands in its done link."""
    return {
        "key": step.key,
        "title": step.title,
        "kind": step.kind,
        "minutes": step.minutes,
        "link": step.link,
        "body": step.body,
        "done_url": slot(tokens.link(settings, "done", "done", es.id)),
        "position": step.position + 1,
        "total": total,
        "due_date": es.due_at.astimezone(zone(tz)).date() if es.due_at else None,
        "invite_start": es.invite_start.astimezone(zone(tz)) if es.invite_start else None,
    }


def preload(session: Session, rows: Iterable[Outbox]) -> None:
    """Load what a batch's messages name in a few queries, so composing issues none.

    Composers look objects up with `loaded`, which finds them in
    an index kept in the session's `info` for as long as it lives (one batch),
    or with `session.get`, which finds them in its identity map.
    """
    rows = list(rows)
    step_row_ids = {i for r in rows for i in _step_row_ids(r.payload)}
    enrolment_ids = {r.enrolment_id for r in rows if r.enrolment_id}
    index: dict = session.info.setdefault(PRELOADED, {})
    enrolments = _fetch(session, Enrolment, Enrolment.id, enrolment_ids)
    person_ids = {r.person_id for r in rows if r.person_id} | {e.person_id for e in enrolments}
    journey_ids = {e.journey_id for e in enrolments}
    steps = _fetch(session, Step, Step.journey_id, journey_ids)
    for model, objects in (
        (EnrolmentStep, _fetch(session, EnrolmentStep, EnrolmentStep.id, step_row_ids)),
        (Enrolment, enrolments),
        (Person, _fetch(session, Person, Person.id, person_ids)),
        (Journey, _fetch(session, Journey, Journey.id, journey_ids)),
        (Step, steps),
    ):
        index.update(((model, o.id), o) for o in objects)
    counts: dict[int, int] = session.info.setdefault(LIVE_STEPS, {})
    for journey_id in journey_ids:
        counts[journey_id] = sum(1 for s in steps if s.journey_id == journey_id and not s.removed)


def _step_row_ids(payload: object) -> list[int]:
    """Return the enrolment-step ids a payload names; a malformed one names none here
    (its composer fails it, alone, with the reason)."""
    ids = payload.get("enrolment_step_ids") if isinstance(payload, dict) else None
    return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []


def _fetch(session: Session, model, column, values: set[int]) -> list:
    if not values:
        return []
    return list(session.exec(select(model).where(among(session, column, sorted(values)))))
