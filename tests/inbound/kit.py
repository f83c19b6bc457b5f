"""Builders for inbound tests: a learner with a step email sent, replies, bounces, a server."""

from __future__ import annotations

import os
import re
import smtplib
import socket
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path

from sqlmodel import Session, select

from nudger.config import Settings
from nudger.inbound.processing import pending, process
from nudger.inbound.receiving import parse
from nudger.models import CapturedMail, Outbox, Person
from nudger.outbox.sending import send_batch
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person

DOMAIN = "reply.example.org"
SAMPLES = Path(__file__).parent / "samples"
START = date(2027, 3, 1)  # the `now` fixture's Monday


def with_inbound(settings: Settings) -> Settings:
    return replace(settings, inbound_domain=DOMAIN, inbound_secret="s3cret-route")


@dataclass
class Sent:
    """A learner (Dan) with a manager, and the step email that went to him."""

    learner: Person
    manager: Person
    row: Outbox
    message: EmailMessage
    enrolment_id: int


def send_first_step(session: Session, settings: Settings, engine, now: datetime, **journey) -> Sent:
    """Enrol Dan, tick at 09:00 London on the start day, and send (captured) what is due."""
    j = make_journey(session, **journey)
    manager = make_person(session, "mia@example.com", "Mia Manager")
    learner = make_person(session, "dan@example.com", "Dan Learner", manager=manager)
    enrolment = make_enrolment(session, learner, j, START)
    sent = send_due(session, settings, engine, now + timedelta(hours=2))
    row = next(r for r in sent if r.kind == "step")
    return Sent(learner, manager, row, captured(session, row), enrolment.id)


def send_due(session: Session, settings: Settings, engine, at: datetime) -> list[Outbox]:
    """Tick at `at` and send every row it wrote; return the rows as they ended."""
    before = set(session.exec(select(Outbox.id)))
    tick(session, settings, at, enqueue=False)
    ids = sorted(set(session.exec(select(Outbox.id))) - before)
    send_batch(engine, settings, ids, now=at)
    session.expire_all()
    return list(session.exec(select(Outbox).where(Outbox.id.in_(ids)).order_by(Outbox.id)))


def captured(session: Session, row: Outbox) -> EmailMessage:
    mail = session.exec(select(CapturedMail).where(CapturedMail.message_id == row.message_id))
    return parse(mail.one().raw)


def reply(
    original: EmailMessage, text: str, *, sender: str | None = None, headers: dict | None = None
) -> EmailMessage:
    """Write a reply as a mail client does: the text, then the original quoted below."""
    msg = EmailMessage()
    msg["From"] = sender or str(original["To"])
    msg["To"] = str(original["Reply-To"])
    msg["Subject"] = "Re: " + str(original["Subject"])
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = str(original["Message-ID"])
    msg["Date"] = format_datetime(datetime.now().astimezone())
    for name, value in (headers or {}).items():
        msg[name] = value
    body = original.get_body(("plain",)).get_content()
    quoted = "\n".join(f"> {line}" for line in body.splitlines())
    msg.set_content(
        f"{text}\n\nOn Mon, 1 Mar 2027 at 09:00, Nudger <nudger@example.org> wrote:\n{quoted}\n",
        cte="quoted-printable",  # as mail clients send long lines
    )
    return msg


def bounce_sample(name: str, verp: str, message_id: str = "x") -> bytes:
    raw = (SAMPLES / name).read_bytes()
    return raw.replace(b"{{VERP}}", verp.encode()).replace(b"{{ID}}", message_id.encode())


def envelope_sender(msg: EmailMessage) -> str:
    """Return the VERP address a message was sent from (its Return-Path)."""
    return parseaddr(str(msg["Return-Path"]))[1]


def smtp_send(port: int, rcpt: str, data: bytes | EmailMessage, mail_from: str = "") -> None:
    """Deliver one message to the inbound server, as a mail server on the internet would."""
    raw = data.as_bytes(policy=SMTP_POLICY) if isinstance(data, EmailMessage) else data
    raw = re.sub(rb"\r?\n", b"\r\n", raw)  # on the wire every line ends in CRLF
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail(mail_from, [rcpt], raw)


def process_all(session: Session, settings: Settings, now: datetime) -> list[str | None]:
    """Do what the worker does for every stored message not acted on yet."""
    return [process(session, settings, i, now) for i in pending(session, now + timedelta(days=1))]


def free_port() -> int:
    """Return a free port in this project's test range (2600-2699), else any free one."""
    for port in range(2600 + os.getpid() % 50, 2700):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
