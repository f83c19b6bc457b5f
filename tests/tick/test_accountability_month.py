"""A month of hourly ticks through one team, every email sent over SMTP.

The team: Max (a manager in New York) has four reports in London on one
journey. Kim and Ben keep up; Lee falls behind and catches up on the 10th;
Nia never starts. Max reports to Sofia (London); the journey's owner,
learning@example.com, is not a person in Nudger (so UTC, no holidays).

March 2027 has a weekend every week, Good Friday on the 26th (a GB holiday,
not a US one), the US clocks change on the 14th and the UK's on the 28th.
The feedback step is confirmed by the manager: Max is asked in his digest,
and confirms it for those who say they have talked with him.

Every expected date below is worked out by hand from the journey's rules:
reminders 1 and 4 working days after a step is due; the manager hears at 3,
the skip-level at 8, the owner at 12; digests daily at 08:00 recipient-local.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import select

from nudger import tokens
from nudger.models import Enrolment, EnrolmentStep, Outbox, Step
from nudger.outbox.sending import send_batch
from nudger.progress import complete_step, confirm_step
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person
from tests.smtpd import SmtpSink

STEPS = [
    {"key": "read", "day": 0, "kind": "read", "title": "Read the SBI one-pager", "minutes": 15},
    {"key": "discuss", "day": 2, "kind": "discuss", "title": "Discuss it with a peer"},
    {"key": "practise", "day": 5, "kind": "practice", "title": "Practise on a small thing"},
    {
        "key": "feedback",
        "day": 10,
        "kind": "feedback",
        "title": "Ask your manager for feedback",
        "due_after": 3,
        "confirmed_by": "manager",
    },
    {"key": "reflect", "day": 15, "kind": "reflect", "title": "Reflect on what changed"},
]
SENT_ON = {"read": 1, "discuss": 3, "practise": 8, "feedback": 15, "reflect": 22}  # March
FIRST = datetime(2027, 3, 1, 0, 0, tzinfo=UTC)
LAST = datetime(2027, 4, 2, 23, 0, tzinfo=UTC)
OWNER = "learning@example.com"
CONFIRM_LINK = re.compile(r"/team/([^#\s]+)#person-(\d+)")


def march(*days: int) -> list[date]:
    return [date(2027, 3, d) if d > 0 else date(2027, 4, -d) for d in days]


def test_a_month_of_ticks_holds_the_right_people_to_account(session, settings, engine):
    journey = make_journey(session, steps=STEPS, owner=OWNER)
    sofia = make_person(session, "sofia@example.com", "Sofia Skip")
    max_ = make_person(
        session, "max@example.com", "Max Manager", sofia, timezone="America/New_York", country="US"
    )
    learners = {
        name: make_person(session, f"{name.lower()}@example.com", f"{name} Test", max_)
        for name in ("Kim", "Ben", "Lee", "Nia")
    }
    for person in learners.values():
        make_enrolment(session, person, journey, date(2027, 3, 1))
    steps = {s.key: s.id for s in session.exec(select(Step))}

    # What the learners do, at 11:00 UTC: keepers finish each step on the day it comes;
    # Lee catches up with everything open on the 10th, then keeps up.
    actions: dict[datetime, list[tuple[str, str]]] = defaultdict(list)
    for key, day in SENT_ON.items():
        for name in ("Kim", "Ben"):
            actions[_at(day, 11)].append((name, key))
        if day >= 10:
            actions[_at(day, 11)].append(("Lee", key))
    actions[_at(10, 11)] += [("Lee", "read"), ("Lee", "discuss"), ("Lee", "practise")]

    received: list[tuple[datetime, str, str, object]] = []  # (when, kind, to, message)
    confirmations: list[tuple[datetime, int, int]] = []  # (when, manager id, learner id)
    confirmed: list[tuple[datetime, int]] = []
    with SmtpSink() as sink:
        smtp = dataclasses.replace(settings, smtp_url=sink.url())
        when = FIRST
        while when <= LAST:
            for name, key in actions.get(when, []):
                es = _sent_step(session, learners[name].id, steps[key])
                complete_step(session, es.id, when)
            for _, manager_id, learner_id in [c for c in confirmations if c[0] == when]:
                # Max confirms for those who say they have talked with him, no one else.
                es = _awaiting(session, learner_id)
                if es is not None:
                    confirm_step(session, es.id, manager_id, when)
                    confirmed.append((when, learner_id))
            tick(session, smtp, when, enqueue=False)
            pending = session.exec(select(Outbox.id).where(Outbox.state == "pending")).all()
            before = len(sink.messages)
            if pending:
                counts = send_batch(engine, smtp, list(pending), when)
                assert counts.get("failed", 0) == 0, counts
            for got in sink.messages[before:]:
                msg = got.message
                received.append((when, str(msg["X-Nudger-Kind"]), str(msg["To"]), msg))
                # Max acts on his digest: he confirms what it asks him to, that afternoon.
                if msg["To"] == max_.email and msg["X-Nudger-Kind"] == "digest":
                    for token, learner_id in CONFIRM_LINK.findall(_text(msg)):
                        manager_id = tokens.read_token(settings, "team", token)
                        later = when + timedelta(hours=3)
                        confirmations.append((later, manager_id, int(learner_id)))
            session.expire_all()
            when += timedelta(hours=1)

    def days(kind: str, to: str, tz: str = "UTC") -> list[date]:
        zone = ZoneInfo(tz)
        return [w.astimezone(zone).date() for w, k, t, _ in received if (k, t) == (kind, to)]

    # Every learner got every step, in five emails.
    for person in learners.values():
        assert len(days("step", person.email)) == 5

    # Reminders: only the two who fell behind; bounded; never once caught up.
    assert days("reminder", "kim@example.com") == []
    assert days("reminder", "ben@example.com") == []
    assert days("reminder", "lee@example.com") == march(4, 8, 9)
    # Nia: two per step, one email a day (the 11th names two steps' thresholds); the
    # reflect step, due the 24th, is reminded on the 31st: Good Friday does not count.
    assert days("reminder", "nia@example.com") == march(4, 8, 9, 11, 16, 19, 24, 25, 31)

    # Digests: at most one per recipient per (local) day, on exactly these days.
    max_days = days("digest", max_.email, "America/New_York")
    sofia_days = days("digest", sofia.email, "Europe/London")
    owner_days = days("digest", OWNER)
    for got in (max_days, sofia_days, owner_days):
        assert len(got) == len(set(got))
    # Max: Nia and Lee on the 8th; Nia's discuss on the 10th (Lee's resolved at 11:00,
    # before 08:00 in New York); practise and three confirmations on the 15th; feedback
    # on the 23rd; reflect on the 30th (due the 24th; Good Friday skipped in London).
    assert max_days == march(8, 10, 15, 23, 30)
    assert sofia_days == march(16, 18, 23, -1)
    # The owner: read (Fri 19th 09:00) on Monday 22nd; discuss on the 24th; practise
    # at 09:00 BST = 08:00 UTC on Monday 29th, the owner's digest time that same day.
    assert owner_days == march(22, 24, 29)

    # Whom each digest names, and how.
    named = {(w.date(), t): _groups(msg) for w, k, t, msg in received if k == "digest"}
    behind = {key: {n for n, late, _ in groups if late} for key, groups in named.items()}
    confirm = {key: {n for n, _, c in groups if c} for key, groups in named.items()}
    # On-track people are never named as behind, anywhere.
    assert all(not ({"Kim Test", "Ben Test"} & names) for names in behind.values())
    # Lee is named once, before catching up; never after.
    assert [k for k, names in behind.items() if "Lee Test" in names] == [
        (date(2027, 3, 8), max_.email)
    ]
    # Nia is in every digest; the skip-level and the owner hear only of Nia.
    assert all("Nia Test" in names for names in behind.values())
    assert all(names == {"Nia Test"} for (_, to), names in behind.items() if to != max_.email)
    # Confirmations: Max is asked for everyone the day the feedback step goes out, then
    # only for Nia, whose step stays open; nobody else is ever asked.
    assert {k: v for k, v in confirm.items() if v} == {
        (date(2027, 3, 15), max_.email): {"Kim Test", "Ben Test", "Lee Test", "Nia Test"},
        (date(2027, 3, 23), max_.email): {"Nia Test"},
        (date(2027, 3, 30), max_.email): {"Nia Test"},
    }
    # Manager first, then the skip-level, the owner last.
    assert min(max_days) < min(sofia_days) < min(owner_days)

    # Max's first digests count the rest of the team as on track.
    max_texts = [_text(m) for w, k, t, m in received if (k, t) == ("digest", max_.email)]
    assert "2 other people are on track." in max_texts[0].splitlines()  # Kim and Ben
    assert "3 other people are on track." in max_texts[1].splitlines()  # and Lee

    # Confirmed on the 15th by Max for the three who did it.
    by_id = {p.id: name for name, p in learners.items()}
    assert sorted((w.date(), by_id[i]) for w, i in confirmed) == [
        (date(2027, 3, 15), "Ben"),
        (date(2027, 3, 15), "Kim"),
        (date(2027, 3, 15), "Lee"),
    ]
    for name in ("Kim", "Ben", "Lee"):
        es = _sent_step(session, learners[name].id, steps["feedback"])
        assert (es.status, es.confirmed_by_id) == ("done", max_.id)


def _at(day: int, hour: int) -> datetime:
    return datetime(2027, 3, day, hour, tzinfo=UTC)


def _sent_step(session, person_id: int, step_id: int) -> EnrolmentStep:
    return session.exec(
        select(EnrolmentStep)
        .join(Enrolment, Enrolment.id == EnrolmentStep.enrolment_id)
        .where(Enrolment.person_id == person_id, EnrolmentStep.step_id == step_id)
    ).one()


def _awaiting(session, person_id: int) -> EnrolmentStep | None:
    return session.exec(
        select(EnrolmentStep)
        .join(Enrolment, Enrolment.id == EnrolmentStep.enrolment_id)
        .where(Enrolment.person_id == person_id, EnrolmentStep.awaiting_confirmation.is_(True))
    ).one_or_none()


def _text(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def _groups(msg) -> list[tuple[str, bool, bool]]:
    """Return (name, named as behind, asked to confirm) for each person in a digest."""
    found = []
    for block in _text(msg).split("-" * 40):
        lines = [line for line in block.splitlines() if line.strip()]
        head = re.fullmatch(r"(.+) <(\S+@\S+)>", lines[0]) if lines else None
        if head:
            found.append((head[1], "behind" in lines[1], any("Confirm here" in ln for ln in lines)))
    return found
