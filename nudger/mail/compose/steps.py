"""Turn an outbox row into an email: load what it names, build the context, render."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from functools import lru_cache
from typing import TypeVar

from sqlmodel import Session, func, select

from nudger import tokens
from nudger.calendar import zone
from nudger.config import Settings
from nudger.mail.invites import InviteEvent, build_invites, make_uid
from nudger.mail.render import build_message, make_message_id
from nudger.mail.render_once import Personal, render_personal
from nudger.models import Enrolment, EnrolmentStep, Journey, Outbox, Person, Step

M = TypeVar("M")


# session.info key of the objects a send batch loaded, by (model, id).
PRELOADED = "nudger.preloaded"


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
    known = session.info.get("nudger.live_steps", {})
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


def compose_step(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Build the email carrying one or more steps, with their invites."""
    # A send batch has preloaded these (nudger.outbox.sending.preload).
    sent = [loaded(session, EnrolmentStep, i) for i in row.payload["enrolment_step_ids"]]
    sent = [es for es in sent if es is not None and es.status != "cancelled"]
    if not sent:
        return None
    enrolment = loaded(session, Enrolment, row.enrolment_id)
    person = loaded(session, Person, enrolment.person_id)
    journey = loaded(session, Journey, enrolment.journey_id)
    steps = {es.step_id: loaded(session, Step, es.step_id) for es in sent}
    sent.sort(key=lambda es: steps[es.step_id].position)
    total = live_step_count(session, journey.id)
    # Everyone on the same steps, dates and zone gets the same email but for
    # these strings: it is rendered once and filled in for each of them.
    personal = Personal()
    ctx = {
        "person": person_ctx(person, personal),
        "journey": journey_ctx(journey),
        "base_url": settings.base_url,
        "me_url": personal(tokens.link(settings, "me", "me", enrolment.id)),
        "steps": [
            step_ctx(settings, es, steps[es.step_id], total, person.timezone, personal)
            for es in sent
        ],
    }
    done_urls = personal.filled([c["done_url"] for c in ctx["steps"]])
    domain = sender_domain(settings)
    events = [
        InviteEvent(
            uid=make_uid(enrolment.id, steps[es.step_id].key, domain),
            sequence=es.invite_sequence,
            start=es.invite_start,
            minutes=steps[es.step_id].minutes,
            tz=person.timezone,
            summary=steps[es.step_id].title,
            description=f"{journey.title}\n\nMark it done: {done_url}",
            url=done_url,
        )
        for es, done_url in zip(sent, done_urls, strict=True)
        if es.invite_start and steps[es.step_id].minutes
    ]
    # One invite per step (one UID per iTIP message); build_message puts the
    # first inline and attaches every one.
    invites = build_invites(
        "REQUEST",
        events,
        organizer=settings.from_addr,
        attendee=person.email,
        attendee_name=person.name or None,
        now=now,
    )
    return build_message(
        kind="step",
        to=person.email,
        from_addr=settings.from_addr,
        message_id=make_message_id(row.id, row.dedupe_key, domain),
        date=now,
        rendered=render_personal("step", ctx, personal),
        invite=invites or None,
    )


Composer = Callable[[Session, Settings, Outbox, datetime], EmailMessage | None]
COMPOSERS: dict[str, Composer] = {"step": compose_step}


def compose(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Build the email for an outbox row, or None when nothing is left to send."""
    return COMPOSERS[row.kind](session, settings, row, now)


import nudger.mail.compose.followups  # noqa: E402  (registers "reminder" and "digest")
import nudger.mail.compose.invites  # noqa: E402  (registers "invite-update", "invite-cancel")
import nudger.mail.previews  # noqa: E402, F401  (registers the "test" composer)
from nudger import links as freshlinks  # noqa: E402, F401  (registers the "links" composer)
