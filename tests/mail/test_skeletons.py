"""Rendering once per content and filling in each recipient (nudger.mail.render_once)."""

from __future__ import annotations

from datetime import date, datetime
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from markupsafe import Markup

from nudger.mail import render_once as skeletons
from nudger.mail.render import render
from nudger.mail.render_once import Personal, render_personal

BASE = "https://nudger.test"
TRICKY_NAMES = [
    "Maya Patel",
    "Zoë <script>alert(1)</script> & \"Co\" 'x'",
    "O'Brien",
    "李 小龙",
    "Ann  \t Lee",
]


@pytest.fixture(autouse=True)
def fresh_cache():
    skeletons.clear()
    yield
    skeletons.clear()


def step_ctx(personal: Personal, name: str, token: str, start: datetime | None = None) -> dict:
    """A step email's context, with this recipient's strings as slots."""
    return {
        "person": {
            "name": personal(name),
            "first_name": personal(name.split()[0]),
            "email": personal(f"{token}@example.com"),
        },
        "journey": {"title": "Feedback & <you>", "slug": "fb", "summary": "**Six** weeks"},
        "base_url": BASE,
        "me_url": personal(f"{BASE}/me/{token}-me?a=1&b=2"),
        "steps": [
            {
                "key": "read",
                "title": "Read the SBI one-pager",
                "kind": "read",
                "minutes": 15,
                "link": "https://intranet.example.com/sbi",
                "body": "Read it *twice*.",
                "done_url": personal(f"{BASE}/done/{token}-done"),
                "position": 1,
                "total": 6,
                "due_date": date(2027, 3, 3),
                "invite_start": start
                or datetime(2027, 3, 1, 10, 0, tzinfo=ZoneInfo("Europe/London")),
            }
        ],
    }


class _Events(HTMLParser):
    """The document as a list of parse events: tags, attributes (unescaped) and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple] = []

    def handle_starttag(self, tag, attrs):
        self.events.append(("start", tag, tuple(attrs)))

    def handle_endtag(self, tag):
        self.events.append(("end", tag))

    def handle_data(self, data):
        self.events.append(("text", data))


def events(html: str) -> list[tuple]:
    parser = _Events()
    parser.feed(html)
    return parser.events


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_a_filled_skeleton_reads_the_same_as_a_full_render(name):
    personal = Personal()
    ctx = step_ctx(personal, name, "tok")
    filled = render_personal("step", ctx, personal)
    again = render_personal("step", ctx, personal)  # from the cached skeleton
    full = render("step", personal.filled(ctx))

    assert filled == again
    assert filled.subject == full.subject
    assert filled.text == full.text
    # Escaping may be spelled differently (&#39; or '), never read differently.
    assert events(filled.html) == events(full.html)
    assert "<script>" not in filled.html


def test_recipients_share_a_skeleton_but_each_gets_only_their_own_links():
    outputs = {}
    for token in ("alice", "bob", "carol"):
        personal = Personal()
        outputs[token] = render_personal("step", step_ctx(personal, token.title(), token), personal)

    assert len(skeletons._skeletons) == 1
    for token, rendered in outputs.items():
        for part in (rendered.text, rendered.html):
            assert f"{BASE}/done/{token}-done" in part
            assert f"{token}-me" in part
            for other in set(outputs) - {token}:
                assert other not in part
        assert f"Hi {token.title()}" in rendered.text


def test_the_same_moment_in_another_zone_is_another_skeleton():
    london = datetime(2027, 3, 1, 10, 0, tzinfo=ZoneInfo("Europe/London"))
    new_york = london.astimezone(ZoneInfo("America/New_York"))
    assert london == new_york  # equal instants: a plain dict key would mix them up
    texts = []
    for start in (london, new_york):
        personal = Personal()
        texts.append(render_personal("step", step_ctx(personal, "Maya", "t", start), personal).text)

    assert "at 10:00" in texts[0] and "at 05:00" in texts[1]
    assert len(skeletons._skeletons) == 2


def test_values_equal_across_types_key_apart():
    assert skeletons._freeze({"x": True}) != skeletons._freeze({"x": 1})
    assert skeletons._freeze({"x": Markup("<b>")}) != skeletons._freeze({"x": "<b>"})


def test_an_altered_marker_is_refused_and_the_context_rendered_in_full():
    personal = Personal()
    marker = personal("https://nudger.test/done/secret")
    assert skeletons._split(f"a {marker} b", 1) == ["a ", 0, " b"]
    assert skeletons._split(f"a {marker.upper()} b", 1) is None  # a filter changed it
    assert skeletons._split(f"a {marker[:-1]} b", 1) is None  # truncated
    assert skeletons._split(f"a {marker} b", 0) is None  # a slot this recipient lacks


def test_a_context_that_cannot_be_keyed_is_rendered_in_full():
    personal = Personal()
    ctx = step_ctx(personal, "Maya", "tok")
    ctx["journey"]["tags"] = {"a", "b"}  # a set: no stable key

    rendered = render_personal("step", ctx, personal)

    assert f"{BASE}/done/tok-done" in rendered.html
    assert skeletons._skeletons == {}
