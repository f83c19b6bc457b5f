"""What every composer shares: a send batch's loaded rows, and the template view of its parts."""

from __future__ import annotations

from collections.abc import Callable
from email.utils import parseaddr
from functools import lru_cache
from typing import TypeVar

from sqlmodel import Session, func, select

from nudger import tokens
from nudger.calendar import zone
from nudger.config import Settings
from nudger.models import EnrolmentStep, Journey, Person, Step

M = TypeVar("M")


# session.info keys a send batch fills in (nudger.outbox.sending.preload) so that
# composers find what it loaded without a query per row.
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


