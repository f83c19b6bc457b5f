"""Every email a journey will send, built with sample data, for the admin's preview.

The messages go through the same templates (`nudger.mail.render.render`) and the
same MIME assembly (`build_message`, with the invite) as real ones; only the
person and the dates are made up. "Send me a test" writes an outbox row of
kind `test` whose composer (`nudger.mail.compose.samples`) builds the same
message for the admin's own address.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from sqlmodel import Session, select

from nudger import tokens
from nudger.calendar import WorkCalendar, local_date
from nudger.config import Settings
from nudger.mail.context import journey_ctx, sender_domain, step_ctx
from nudger.mail.invites import InviteEvent, build_invite, make_uid
from nudger.mail.mime import build_message, make_message_id, unsubscribe_headers
from nudger.mail.render import render
from nudger.models import EnrolmentStep, Journey, Person, Step
from nudger.schedule import JourneyPlan, PlanStep, default_start
from nudger.wording import days_overdue

SAMPLE_LEARNER = ("Sam Sample", "sam.sample@example.com")
SAMPLE_MANAGER = {"name": "Morgan Manager", "first_name": "Morgan", "email": "morgan@example.com"}
SAMPLE_PEERS = [("Alex Example", "alex@example.com"), ("Jo Placeholder", "jo@example.com")]
DIGEST_LEVELS = {
    "manager": "their manager",
    "skip_level": "the manager's manager",
    "admin": "admins",
}


@dataclass(frozen=True)
class Preview:
    """One email the journey will send: which kind, for which step or recipient."""

    key: str  # "step:read-sbi", "reminder:read-sbi:1", "digest:manager", ...
    kind: str
    label: str
    step_key: str | None = None


def previews(plan: JourneyPlan) -> list[Preview]:
    """List every email the journey can send, in the order a learner would meet them."""
    found = []
    reminders = plan.reminders
    for step in plan.steps:
        found.append(
            Preview(f"step:{step.key}", "step", f"Step {step.position + 1}: {step.title}", step.key)
        )
        for n, after in enumerate(reminders, start=1):
            label = f"Reminder {n} ({days_overdue(after)}): {step.title}"
            found.append(Preview(f"reminder:{step.key}:{n}", "reminder", label, step.key))
    for level in dict.fromkeys(notify for _, notify in plan.escalations):
        found.append(Preview(f"digest:{level}", "digest", f"Digest to {DIGEST_LEVELS[level]}"))
    timed = next((s for s in plan.steps if s.minutes), None)
    if timed is not None:
        found.append(
            Preview(
                f"invite-update:{timed.key}",
                "invite-update",
                f"Invite moved: {timed.title}",
                timed.key,
            )
        )
        found.append(
            Preview(
                f"invite-cancel:{timed.key}",
                "invite-cancel",
                f"Invites cancelled (withdrawn): {timed.title}",
                timed.key,
            )
        )
    return found


def load_plan(session: Session, journey: Journey) -> tuple[JourneyPlan, dict[str, Step]]:
    """Return the journey's plan and its live steps by key."""
    steps = list(session.exec(select(Step).where(Step.journey_id == journey.id)))
    return JourneyPlan.build(journey, steps), {s.key: s for s in steps if not s.removed}


class PreviewNotFound(LookupError):
    """No such email in this journey."""


def build_preview(
    session: Session,
    settings: Settings,
    journey: Journey,
    key: str,
    now: datetime,
    *,
    to: str | None = None,
    message_id: str | None = None,
    test: bool = False,
) -> EmailMessage:
    """Build the sample email `key` of a journey exactly as the worker would send it."""
    plan, steps = load_plan(session, journey)
    preview = next((p for p in previews(plan) if p.key == key), None)
    if preview is None:
        raise PreviewNotFound(key)
    tz = settings.default_timezone
    person = Person(
        id=0,
        email=to or SAMPLE_LEARNER[1],
        name=SAMPLE_LEARNER[0],
        timezone=tz,
        country=settings.default_country,
    )
    cal = plan.calendar(person, settings.default_country)
    start = default_start(cal, tz, now)
    ctx = {
        "person": _person(person),
        "journey": journey_ctx(journey),
        "base_url": settings.base_url,
        "me_url": tokens.link(settings, "me", "me", 0),
        "answers_by_reply": bool(settings.inbound_domain),
    }
    date, invite, headers = now, None, {}
    if preview.step_key is not None:
        pstep = next(s for s in plan.steps if s.key == preview.step_key)
        step = steps[pstep.key]
        sent_at = plan.send_at(cal, tz, start, 0, pstep)
        es = _sample_sent(plan, cal, tz, start, pstep, sent_at)
        sctx = step_ctx(settings, es, step, len(plan.steps), tz)
        date = sent_at
        if preview.kind == "step":
            ctx["steps"] = [sctx]
            invite = _invite(settings, person, journey, pstep, es, sctx, "REQUEST", 0, now)
        elif preview.kind == "reminder":
            after = plan.reminders[int(key.rsplit(":", 1)[1]) - 1]
            date = plan.after_due(cal, tz, es.due_at, after)
            ctx["steps"] = [{**sctx, "days_overdue": after}]
            ctx["mute_url"] = tokens.link(settings, "mute", "mute", 0)
            ctx["tz"] = tz
            headers = unsubscribe_headers(ctx["mute_url"])
        elif preview.kind == "invite-update":
            moved = plan.invite_start(cal, tz, start, 1, pstep)
            es.invite_start = moved
            sctx = step_ctx(settings, es, step, len(plan.steps), tz)
            ctx["steps"] = [sctx]
            invite = _invite(settings, person, journey, pstep, es, sctx, "REQUEST", 1, now)
        else:
            ctx["steps"] = [{"title": step.title}]
            ctx["reason"] = "withdrawn"
            invite = _invite(settings, person, journey, pstep, es, sctx, "CANCEL", 1, now)
    else:
        level = key.split(":", 1)[1]
        ctx = _digest_ctx(settings, plan, journey, level, to, now, tz)
        if ctx["preferences_url"]:
            headers = unsubscribe_headers(ctx["preferences_url"])
    rendered = render(preview.kind, ctx)
    if test:
        rendered = replace(rendered, subject=f"[Test] {rendered.subject}")
    domain = sender_domain(settings)
    return build_message(
        kind="test" if test else preview.kind,
        to=to or (ctx["recipient"]["email"] if preview.kind == "digest" else person.email),
        from_addr=settings.from_addr,
        message_id=message_id or make_message_id(0, f"preview:{journey.slug}:{key}", domain),
        date=date if not test else now,
        rendered=rendered,
        invite=invite,
        headers={**headers, "X-Nudger-Preview": preview.kind} if test else headers,
    )


def _person(person: Person) -> dict:
    name = person.name
    return {"name": name, "first_name": name.split()[0], "email": person.email}


def _sample_sent(plan, cal: WorkCalendar, tz: str, start, step: PlanStep, sent_at) -> EnrolmentStep:
    """Return an unsaved enrolment-step as the tick would write it when `step` is sent."""
    return EnrolmentStep(
        id=0,
        enrolment_id=0,
        step_id=step.id,
        sent_at=sent_at,
        due_at=plan.due_at(cal, tz, sent_at, step),
        invite_start=plan.invite_start(cal, tz, start, 0, step) if step.minutes else None,
    )


def _invite(settings, person, journey, step: PlanStep, es, sctx, method, sequence, now):
    if not (step.minutes and es.invite_start):
        return None
    event = InviteEvent(
        uid=make_uid(0, step.key, sender_domain(settings)),
        sequence=sequence,
        start=es.invite_start,
        minutes=step.minutes,
        tz=person.timezone,
        summary=step.title,
        description=f"{journey.title}\n\nMark it done: {sctx['done_url']}",
        url=sctx["done_url"],
    )
    return build_invite(
        method,
        [event],
        organizer=settings.from_addr,
        attendee=person.email,
        attendee_name=person.name,
        now=now,
    )


def _digest_ctx(settings, plan: JourneyPlan, journey, level: str, to, now, tz: str) -> dict:
    """Return a digest listing sample learners behind on this journey's first steps."""
    after = dict((notify, days) for days, notify in plan.escalations).get(level, 3)
    groups = []
    for i, (name, email) in enumerate([SAMPLE_LEARNER, *SAMPLE_PEERS]):
        if i >= max(1, min(3, len(plan.steps))):
            break
        step = plan.steps[i]
        confirm = step.confirmed_by == "manager" and level == "manager"
        confirm_url = tokens.link(settings, "team", "team", 0) if confirm else None
        groups.append(
            {
                "person": {"name": name, "email": email},
                "journey_title": journey.title,
                "days_behind": after + i,
                "last_activity": local_date(now, tz) if i else None,
                "steps": [
                    {
                        "title": step.title,
                        "days_overdue": after + i,
                        "confirm_url": confirm_url,
                    }
                ],
            }
        )
    recipient = dict(SAMPLE_MANAGER)
    team_url = tokens.link(settings, "team", "team", 0)
    prefs_url = tokens.link(settings, "prefs", "prefs", 0)
    if level == "admin":
        # Owners and admins are usually not people in Nudger: the console is their page.
        recipient = {"name": "", "first_name": "", "email": journey.owner or "admin@example.com"}
        team_url, prefs_url = f"{settings.base_url}/admin/", None
    if to:
        recipient["email"] = to
    return {
        "recipient": recipient,
        "base_url": settings.base_url,
        "level": level,
        "groups": groups,
        "checkins": [],
        "on_track": 4 if level != "admin" else 0,
        "team_url": team_url,
        "preferences_url": prefs_url,
    }


def message_parts(raw: bytes) -> dict:
    """Return the headers, text, HTML and calendar parts of a message as sent."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    parts = {"headers": list(msg.items()), "text": None, "html": None, "ics": None}
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "text/plain" and parts["text"] is None:
            parts["text"] = part.get_content()
        elif ctype == "text/html" and parts["html"] is None:
            parts["html"] = part.get_content()
        elif ctype == "text/calendar" and parts["ics"] is None:
            parts["ics"] = part.get_content()
    return parts
