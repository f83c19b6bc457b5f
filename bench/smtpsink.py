"""A minimal, fast SMTP sink for benchmarks: answers 250 to everything, counts mail.

    .venv/bin/python bench/smtpsink.py PORT [--aiosmtpd] [--no-pipelining]

aiosmtpd parses and dispatches every command through coroutines and handlers;
at thousands of messages a second that, not the client, becomes the limit. This
sink reads whole lines and whole DATA blocks with asyncio's C-level buffer
search and does nothing else, so both sides of a measurement see the same, fast
server. Like Postfix, Exim, Exchange and the big providers' relays, it offers
PIPELINING (RFC 2920); `--no-pipelining` turns that off. `XSTAT` answers
"250 <messages> <distinct Message-IDs> <bytes>"; `XRESET` zeroes the counts.
With `--aiosmtpd` the same counting runs on aiosmtpd instead (the server the
tests use), for comparison.
"""

from __future__ import annotations

import asyncio
import re
import sys

EHLO = b"250-sink\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n"
EHLO_PIPELINING = b"250-sink\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 104857600\r\n"
PIPELINING = "--no-pipelining" not in sys.argv

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class Counter:
    """What the sink has accepted since the last XRESET."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.ids: set[bytes] = set()

    def add(self, data: bytes) -> None:
        """Count one message and its Message-ID (looked for in the headers only)."""
        self.messages += 1
        self.bytes += len(data)
        end = data.find(b"\r\n\r\n")
        if m := MESSAGE_ID.search(data[: end if end >= 0 else len(data)]):
            self.ids.add(m.group(1))


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, c: Counter) -> None:
    """Serve one client connection until QUIT or hang-up."""
    writer.write(b"220 sink ESMTP\r\n")
    # Answers wait here while more commands are already buffered: a pipelined
    # group is answered with one write, as RFC 2920 recommends.
    answers = bytearray()
    try:
        while True:
            if answers and not reader._buffer:  # type: ignore[attr-defined]
                writer.write(answers)
                answers.clear()
                await writer.drain()
            line = await reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                answers += EHLO_PIPELINING if PIPELINING else EHLO
            elif verb == b"DATA":
                writer.write(answers + b"354 go ahead\r\n")
                answers.clear()
                c.add(await reader.readuntil(b"\r\n.\r\n"))
                answers += b"250 2.0.0 accepted\r\n"
            elif verb == b"QUIT":
                writer.write(answers + b"221 bye\r\n")
                await writer.drain()
                return
            elif verb == b"XSTA":
                answers += b"250 %d %d %d\r\n" % (c.messages, len(c.ids), c.bytes)
            elif verb == b"XRES":
                c.messages, c.bytes = 0, 0
                c.ids.clear()
                answers += b"250 reset\r\n"
            else:  # MAIL, RCPT, RSET, NOOP
                answers += b"250 OK\r\n"
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:port until killed."""
    counts = Counter()
    server = await asyncio.start_server(
        lambda r, w: session(r, w, counts), "127.0.0.1", port, limit=64 * 1024 * 1024
    )
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def serve_aiosmtpd(port: int) -> None:
    """Count mail the same way on aiosmtpd, in its own thread, until killed."""
    import threading

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    counts = Counter()

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:
            data = envelope.original_content or b""
            counts.add(data)
            return "250 2.0.0 accepted"

    class CountingSMTP(SMTP):
        async def smtp_XSTAT(self, arg: str) -> None:
            await self.push(f"250 {counts.messages} {len(counts.ids)} {counts.bytes}")

        async def smtp_XRESET(self, arg: str) -> None:
            counts.__init__()
            await self.push("250 reset")

    class Serve(Controller):
        def factory(self):
            return CountingSMTP(self.handler, **self.SMTP_kwargs)

    Serve(Handler(), hostname="127.0.0.1", port=port, data_size_limit=None).start()
    print(f"listening on 127.0.0.1:{port} (aiosmtpd)", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    if "--aiosmtpd" in sys.argv:
        serve_aiosmtpd(int(sys.argv[1]))
    else:
        asyncio.run(serve(int(sys.argv[1])))
