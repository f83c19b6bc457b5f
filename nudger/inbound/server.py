"""The SMTP face of inbound mail (aiosmtpd): accept only the signed addresses, store, queue.

A message is acknowledged (250) only once it is committed to the database;
if the database is down the sender hears 451 and tries again later, as
mail servers do. The job that acts on it is queued after the commit; if
Redis is down, the tick queues it again.
"""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.controller import Controller
from sqlalchemy.engine import Engine
from sqlmodel import Session

from nudger.config import Settings
from nudger.db import utcnow
from nudger.inbound.receiving import accepts, enqueue, store

log = logging.getLogger(__name__)


class InboundHandler:
    """aiosmtpd handler: RCPT checks the address, DATA stores the message."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain != self.settings.inbound_domain:
            return "550 5.7.1 Relaying denied: this server takes mail for its own domain only"
        if not accepts(self.settings, address):
            return "550 5.1.1 No such mailbox"
        if envelope.rcpt_tos:
            # One message, one email it answers: a second address would be a second row.
            return "452 4.5.3 One recipient per message, please send again"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        loop = asyncio.get_running_loop()
        try:
            inbound_id, new = await loop.run_in_executor(None, self._store, raw, envelope)
        except Exception:
            log.exception("could not store an inbound message")
            return "451 4.3.0 Could not store the message; please try again later"
        if new:
            try:
                await loop.run_in_executor(None, enqueue, self.settings, inbound_id)
            except Exception:  # Redis down: the message is safe, the tick queues it later
                log.warning("could not queue inbound message %s", inbound_id, exc_info=True)
        return f"250 2.0.0 Stored as {inbound_id}"

    def _store(self, raw: bytes, envelope) -> tuple[int, bool]:
        with Session(self.engine, expire_on_commit=False) as session:
            return store(
                session,
                raw,
                recipient=envelope.rcpt_tos[0],
                envelope_from=envelope.mail_from or "",
                via="smtp",
                now=utcnow(),
            )


def start_server(settings: Settings, engine: Engine, host: str, port: int) -> Controller:
    """Start the SMTP server in a thread and return its controller (call `.stop()`)."""
    controller = Controller(
        InboundHandler(settings, engine),
        hostname=host,
        port=port,
        data_size_limit=settings.inbound_max_bytes,
        server_hostname=settings.inbound_domain,
        ident="Nudger inbound",
    )
    controller.start()
    return controller
