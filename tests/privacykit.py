"""Helpers for the privacy tests: a person whose data is everywhere, and a scan of every column."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default as default_policy

from sqlalchemy import select as sql_select
from sqlmodel import Session, SQLModel, select

from nudger.models import LinkHit, Outbox
from nudger.outbox.sending import send_batch
from nudger.progress import complete_step
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person
from tests.pagekit import sent_steps

ZOE_EMAIL = "zoe.quintero@example.com"
ZOE_NAME = "Zoë Quintero"
ADA = "ada@example.com"
# What must not be found anywhere once she is erased (compared lower-case).
ZOE = (ZOE_EMAIL, ZOE_NAME.lower(), "quintero")


def day(n: int, hour: int = 9, minute: int = 5) -> datetime:
    """Return a UTC instant in March 2027 (the 1st is a Monday)."""
    return datetime(2027, 3, n, hour, minute, tzinfo=UTC)


ERASED_AT = day(16, 10)  # a Tuesday, after two weeks of mail


def send_due(session: Session, settings, at: datetime) -> None:
    """Send every pending row through the capture transport (the development outbox)."""
    ids = list(session.exec(select(Outbox.id).where(Outbox.state == "pending")))
    if ids:
        send_batch(session.get_bind(), settings, ids, at)
    session.expire_all()


def a_team_with_history(session: Session, settings) -> dict:
    """Zoë, who learns (under Bea) and manages (Kit), through two weeks of mail.

    She completes one step with a note, lets the others go overdue (reminders
    to her, digests about her to Bea), Kit's overdue steps put digests in her
    inbox, her links were opened, one of her emails bounced, and one email to
    her is still waiting to go when she is erased.
    """
    journey = make_journey(session)
    bea = make_person(session, "bea@example.com", "Bea Boss")
    zoe = make_person(session, ZOE_EMAIL, ZOE_NAME, manager=bea)
    ada = make_person(session, "ada@example.com", "Ada Lovelace", manager=bea)
    kit = make_person(session, "kit@example.com", "Kit Report", manager=zoe)
    # Ada starts two days later: her escalations bring Bea digests that name Zoë again
    # without being about her (a digest lists every open escalation of its recipient).
    enrolments = {
        p.email: make_enrolment(session, p, journey, day(start).date())
        for p, start in ((zoe, 1), (ada, 3), (kit, 1))
    }
    for n in (1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 15):
        tick(session, settings, day(n), enqueue=False)
        for email, note, on in ((ZOE_EMAIL, f"{ZOE_NAME}: talked it through", 1), (ADA, "ok", 3)):
            if n == on:
                es = sent_steps(session, enrolments[email])["read"]
                complete_step(session, es.id, day(n, 12), note=note, actor=f"learner:{es.id}")
        send_due(session, settings, day(n, 9, 30))
    zoe_steps = sent_steps(session, enrolments[ZOE_EMAIL])
    session.add_all(
        [
            LinkHit(at=day(1, 10), purpose="done", subject_id=zoe_steps["read"].id,
                    method="GET", user_agent="Mozilla/5.0 (iPhone)", ip="203.0.113.7"),
            LinkHit(at=day(2, 10), purpose="me", subject_id=enrolments[ZOE_EMAIL].id,
                    method="GET", user_agent="Mozilla/5.0 (iPhone)", ip="203.0.113.7"),
            LinkHit(at=day(2, 11), purpose="team", subject_id=zoe.id,
                    method="GET", user_agent="Mozilla/5.0 (iPhone)", ip="203.0.113.7"),
        ]
    )  # fmt: skip
    bounced = session.exec(select(Outbox).where(Outbox.to_email == ZOE_EMAIL)).first()
    bounced.state, bounced.last_error = "failed", f"550 5.1.1 <{ZOE_EMAIL}>: mailbox unavailable"
    session.add(bounced)
    session.commit()
    # The next Tuesday's reminder to her, and digests to her and about her, are not sent yet.
    tick(session, settings, day(16), enqueue=False)
    session.expire_all()
    return {"journey": journey, "zoe": zoe, "bea": bea, "kit": kit, "enrolments": enrolments}


def cells_mentioning(session: Session, needles: tuple[str, ...]) -> list[tuple[str, str, object]]:
    """Return (table, column, id) of every stored value that contains one of `needles`.

    Every column of every table is read, whatever its type, so a column added
    later is checked without changing this test. Stored messages are read
    decoded too (quoted-printable, base64 and encoded headers).
    """
    found = []
    for table in SQLModel.metadata.sorted_tables:
        key = next(iter(table.primary_key.columns))
        for row in session.execute(sql_select(key, *table.columns)):
            for column, value in zip(table.columns, row[1:], strict=True):
                text = as_text(value).lower()
                if any(needle in text for needle in needles):
                    found.append((table.name, column.name, row[0]))
    return found


def as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        msg = message_from_bytes(value, policy=default_policy)
        parts = [value.decode("utf-8", "replace"), *(str(v) for _, v in msg.items())]
        for part in msg.walk():
            if not part.is_multipart():
                content = part.get_content()
                parts.append(content.decode("utf-8", "replace") if isinstance(content, bytes)
                             else str(content))  # fmt: skip
        return "\n".join(parts)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
