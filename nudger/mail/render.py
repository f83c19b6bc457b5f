"""Render emails from templates/email and assemble them as MIME messages.

Each kind has three templates: `KIND.subject.txt`, `KIND.txt` and `KIND.html`
(which extends `base.html`). Nothing here touches the database or the network:
callers pass plain dicts in and get an `EmailMessage` out.
"""

from __future__ import annotations

import binascii
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import css_inline
from jinja2 import (
    Environment,
    FileSystemBytecodeCache,
    FileSystemLoader,
    StrictUndefined,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from markdown_it import MarkdownIt
from markupsafe import Markup

from nudger.mail.invites import Invite

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "email"

KINDS = ("step", "reminder", "digest", "invite-update", "invite-cancel")

# Links in journey Markdown must lead somewhere a person can open from a mail
# client; anything else (javascript:, data:, relative paths) stays plain text.
SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel"})

KIND_LABELS = {
    "read": "Read",
    "discuss": "Discuss",
    "elearning": "E-learning",
    "experiment": "Experiment",
    "practice": "Practice",
    "feedback": "Feedback",
    "reflect": "Reflect",
    "workshop": "Workshop",
    "video": "Video",
    "quiz": "Quiz",
    "assignment": "Assignment",
    "other": "Activity",
}

# Spelled out rather than strftime("%A") so output never depends on the locale.
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

_BLANK_LINES = re.compile(r"\n{3,}")
_LINE_BREAK = re.compile(r"[\r\n]")



class _MemoPolicy(EmailPolicy):
    """The default policy, parsing each distinct header value once per process.

    Writing a message reads its Content-Type headers over and over (type,
    boundary, charset); parsing them is most of the cost of sending, and the
    values repeat from message to message. Header objects are immutable.
    """

    def header_fetch_parse(self, name: str, value: str):
        if hasattr(value, "name"):
            return value
        # Keyed on the header factory, not the policy: writing clones the policy.
        return _parsed_header(self.header_factory, name, value)


@lru_cache(maxsize=4096)
def _parsed_header(factory, name: str, value: str):
    return factory(name, "".join(value.splitlines()))


# Bodies go out as 7bit, quoted-printable or base64, never raw 8bit: not every
# relay on the way advertises 8BITMIME, and a name like "Zoë" must survive it.
MIME_POLICY = _MemoPolicy(**default_policy.__dict__).clone(cte_type="7bit")


@dataclass(frozen=True)
class Rendered:
    """A rendered email: one-line subject, plain text and inlined HTML."""

    subject: str
    text: str
    html: str


def render(kind: str, ctx: dict[str, Any], *, env: Environment | None = None) -> Rendered:
    """Render the subject, text and HTML of one email kind."""
    env = env or environment()
    subject = " ".join(env.get_template(f"{kind}.subject.txt").render(ctx).split())
    text = env.get_template(f"{kind}.txt").render(ctx)
    # Templates stay readable with blank lines around blocks; the reader sees at most one.
    text = _BLANK_LINES.sub("\n\n", text).strip() + "\n"
    html = env.get_template(f"{kind}.html").render({**ctx, "subject": subject})
    return Rendered(subject=subject, text=text, html=_inliner().inline(html))


def build_message(
    *,
    kind: str,
    to: str,
    from_addr: str,
    message_id: str,
    date: datetime,
    rendered: Rendered,
    invite: Invite | Sequence[Invite] | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """Assemble the MIME message, with calendar parts when there are invites.

    Several invites (a catch-up email with several steps): the first is the
    inline text/calendar part, which Outlook and Gmail process as the meeting
    request, and every invite is also attached as its own .ics file, one UID
    each, as RFC 5546 wants (see nudger.mail.invites).
    """
    if date.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    invites = [invite] if isinstance(invite, Invite) else list(invite or ())
    fields = {
        "Message-ID": message_id,
        "Date": format_datetime(date),
        "From": from_addr,
        "To": to,
        "Subject": rendered.subject,
        "X-Nudger-Kind": kind,
        "Auto-Submitted": "auto-generated",
        # Exchange/Outlook: no out-of-office or auto replies to a robot's mailbox.
        "X-Auto-Response-Suppress": "OOF, AutoReply",
    }
    for name, value in (headers or {}).items():
        for same in [k for k in fields if k.lower() == name.lower()]:
            del fields[same]
        fields[name] = value
    # Parts are encoded here with C codecs (binascii) and stored ready to
    # write: EmailMessage's set_content/add_alternative parse every header
    # and quoted-printable-encode in pure Python, ~10x the cost of the rest of
    # sending. The tree is the same: multipart/alternative (text, HTML and
    # the inline calendar part), inside multipart/mixed with the .ics files.
    # Plain text is 7bit when it can be, else quoted-printable (readable in
    # the raw source); HTML is base64 (inlined CSS makes long lines that
    # relays may re-wrap).
    alternative = [
        _text_part('text/plain; charset="utf-8"', rendered.text),
        _part('text/html; charset="utf-8"', "base64", _base64(rendered.html.encode())),
    ]
    if invites:
        first = invites[0]
        alternative.append(
            _text_part(f'text/calendar; charset="utf-8"; method="{first.method}"', first.ics)
        )
    msg = EmailMessage(policy=MIME_POLICY)
    for name, value in fields.items():
        _set_header(msg, name, value)
    msg.set_raw("MIME-Version", "1.0")
    if not invites:
        return _multipart(msg, "alternative", alternative)
    attachments = []
    for number, item in enumerate(invites, start=1):
        name = "invite.ics" if number == 1 else f"invite-{number}.ics"
        disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
        attachments.append(
            _part(f'application/ics; name="{name}"', "base64", _base64(item.ics), disposition)
        )
    inner = _multipart(MIMEPart(policy=MIME_POLICY), "alternative", alternative)
    return _multipart(msg, "mixed", [inner, *attachments])


def _set_header(msg: MIMEPart, name: str, value: str) -> None:
    """Store a header as written when it needs no encoding, else let the policy encode it."""
    if value.isascii() and len(name) + 2 + len(value) <= 78 and not _LINE_BREAK.search(value):
        msg.set_raw(name, value)
    else:
        msg[name] = value


def _part(
    content_type: str, cte: str, payload: str, headers: dict[str, str] | None = None
) -> MIMEPart:
    """Return a leaf part whose payload is already encoded with `cte`."""
    part = MIMEPart(policy=MIME_POLICY)
    part.set_raw("Content-Type", content_type)
    part.set_raw("Content-Transfer-Encoding", cte)
    for name, value in (headers or {}).items():
        part.set_raw(name, value)
    part.set_payload(payload)
    return part


def _text_part(content_type: str, text: str | bytes) -> MIMEPart:
    """Return a text part: 7bit when ASCII with short lines, else quoted-printable."""
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    if data.isascii() and max(map(len, data.splitlines()), default=0) <= 78:
        return _part(content_type, "7bit", data.decode("ascii"))
    return _part(content_type, "quoted-printable", binascii.b2a_qp(data, istext=True).decode())


def _base64(data: bytes) -> str:
    """Return base64 in 76-character lines, as base64.encodebytes does.

    encodebytes calls the C encoder once per 57-byte line from Python; one
    call and slicing the result is several times faster on a 10 kB part.
    """
    text = binascii.b2a_base64(data, newline=False).decode("ascii")
    if not text:
        return ""
    return "\n".join([text[i : i + 76] for i in range(0, len(text), 76)]) + "\n"


def _multipart(msg: MIMEPart, subtype: str, parts: list[MIMEPart]) -> MIMEPart:
    """Make `msg` a multipart holding `parts`, with a boundary no part contains."""
    # "=_" never occurs in base64 or quoted-printable; only 7bit text could hold
    # it. A fixed boundary keeps the header the same from message to message.
    plain = [p.get_payload() for p in parts if p.get("Content-Transfer-Encoding") == "7bit"]
    boundary = f"=_nudger_{subtype}"
    while any(boundary in text for text in plain):
        boundary = f"=_{random.getrandbits(64):016x}"
    msg.set_raw("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')
    msg.set_payload(parts)
    return msg


def make_message_id(outbox_id: int, dedupe_key: str, domain: str) -> str:
    """Return the Message-ID of one outbox row, the same on every retry."""
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:12]
    return f"<nudger.{outbox_id}.{digest}@{domain}>"


def address_domain(addr: str) -> str:
    """Return the domain of an address such as "Nudger <nudger@example.org>"."""
    _, email = parseaddr(addr)
    local, at, domain = email.rpartition("@")
    if not (local and at and domain):
        raise ValueError(f"no domain in address {addr!r}")
    return domain.lower()


def make_environment(templates_dir: Path | str = TEMPLATES_DIR) -> Environment:
    """Create the autoescaping Jinja environment for email templates."""
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        # .html escapes; .txt (subjects and plain text) are not HTML and must not.
        autoescape=select_autoescape(["html"], default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Compiled templates are kept in Jinja's per-user cache folder, keyed on
        # each template's source: a worker starts without compiling them again.
        bytecode_cache=_bytecode_cache(),
    )
    env.filters.update(
        markdown=markdown_filter,
        day=format_day,
        time=_time_filter,
        when=_when_filter,
        duration=format_duration,
        kind_label=lambda kind: KIND_LABELS.get(kind, str(kind).capitalize()),
        plural=plural,
    )
    return env


@cache
def _bytecode_cache() -> FileSystemBytecodeCache | None:
    # The pattern keeps these apart from any other environment's compiled code
    # (the cache key is the template's name and file, not the options).
    try:
        return FileSystemBytecodeCache(pattern="__nudger_email_%s.cache")
    except (OSError, RuntimeError):
        return None  # no writable temporary folder: compile in memory


@cache
def environment() -> Environment:
    """Return the shared environment over TEMPLATES_DIR, built once per process."""
    return make_environment()


def warm_up() -> None:
    """Compile every template and build the inliner and Markdown parser now.

    A worker calls this before it forks, so each job starts with them ready.
    """
    env = environment()
    for kind in KINDS:
        for suffix in ("subject.txt", "txt", "html"):
            env.get_template(f"{kind}.{suffix}")
    _inliner()
    _markdown()


@cache
def _inliner() -> css_inline.CSSInliner:
    """Return the shared CSS inliner, built once per process."""
    # keep_at_rules keeps the media queries in a <style> block (they cannot be
    # inlined) and drops the rules already inlined, so Gmail's 102 kB clip is far.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


@cache
def _markdown() -> MarkdownIt:
    """Return the shared Markdown renderer: CommonMark, no raw HTML, safe links."""
    md = MarkdownIt("commonmark", {"html": False})
    # Emails carry no external assets: an image would load a remote tracker.
    md.disable("image")
    md.validateLink = _safe_link  # type: ignore[method-assign]
    return md


def _safe_link(url: str) -> bool:
    """Accept only absolute links with a scheme a mail reader can open."""
    scheme = urlsplit(url.strip()).scheme.lower()
    return scheme in SAFE_SCHEMES


def markdown_filter(source: str | None) -> Markup:
    """Render Markdown to safe HTML."""
    if not source:
        return Markup("")
    return _markdown_html(source)


@lru_cache(maxsize=1024)
def _markdown_html(source: str) -> Markup:
    # A step's body is the same for every learner: render it once per process.
    return Markup(_markdown().render(source))


def format_day(value: date | datetime | None) -> str:
    """Format a date like "Tuesday 31 March"."""
    if value is None:
        return ""
    return f"{_DAYS[value.weekday()]} {value.day} {_MONTHS[value.month - 1]}"


def format_time(value: datetime, tz: str | None = None) -> str:
    """Format a time like "10:00", in the zone tz if given."""
    if tz:
        value = value.astimezone(ZoneInfo(tz))
    return f"{value.hour:02d}:{value.minute:02d}"


def format_when(value: datetime, tz: str | None = None) -> str:
    """Format a moment like "Tuesday 31 March at 10:00", in the zone tz if given."""
    if tz:
        value = value.astimezone(ZoneInfo(tz))
    return f"{format_day(value)} at {format_time(value)}"


def format_duration(minutes: int | None) -> str:
    """Format an effort like "15 min", "1 hour" or "1 h 30 min"."""
    if not minutes:
        return ""
    hours, rest = divmod(int(minutes), 60)
    if not hours:
        return f"{rest} min"
    if not rest:
        return "1 hour" if hours == 1 else f"{hours} hours"
    return f"{hours} h {rest} min"


def plural(count: int, singular: str, many: str | None = None) -> str:
    """Return "1 step" or "3 steps"."""
    word = singular if count == 1 else (many or singular + "s")
    return f"{count} {word}"


@pass_context
def _time_filter(ctx: Context, value: datetime, tz: str | None = None) -> str:
    """Format a time in tz, else the context's `tz`, else the value's own zone."""
    return format_time(value, tz or ctx.get("tz"))


@pass_context
def _when_filter(ctx: Context, value: datetime, tz: str | None = None) -> str:
    """Format a day and time in tz, else the context's `tz`, else the value's own zone."""
    return format_when(value, tz or ctx.get("tz"))
