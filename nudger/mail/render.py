"""Render emails from templates/email: subject, plain text and inlined HTML.

Each kind has three templates: `KIND.subject.txt`, `KIND.txt` and `KIND.html`
(which extends `base.html`). Nothing here touches the database or the network:
callers pass plain dicts in and get a `Rendered` out (`nudger.mail.mime`
assembles it into a message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
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
