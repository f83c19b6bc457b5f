"""Email rendering and MIME assembly: every kind, escaping, invites, headers."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from nudger.mail.invites import InviteEvent, build_invite, make_uid
from nudger.mail.mime import address_domain, build_message, make_message_id
from nudger.mail.render import KINDS, environment, format_duration, make_environment, render

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
FROM = "Nudger <nudger@example.org>"
BASE = "https://nudger.test"
UNICODE_TITLE = "Zoë’s café — read it"  # noqa: RUF001


def person() -> dict:
    return {"name": "Maya Patel", "first_name": "Maya", "email": "maya@example.com"}


def journey() -> dict:
    return {
        "title": "Giving feedback that lands",
        "slug": "giving-feedback",
        "summary": "Six weeks from *avoiding* feedback to holding it well.",
    }


def step(position: int = 3, **overrides) -> dict:
    values = {
        "key": f"step-{position}",
        "title": "Read the SBI one-pager",
        "kind": "read",
        "minutes": 15,
        "link": "https://intranet.example.com/sbi.pdf",
        "body": "Read it **twice**.\n\n- Note one situation from this week",
        "done_url": f"{BASE}/done/tok-{position}",
        "position": position,
        "total": 12,
        "due_date": date(2026, 4, 1),
        "invite_start": datetime(2026, 3, 30, 10, 0, tzinfo=LONDON),
    }
    values.update(overrides)
    return values


def learner_ctx(steps: list[dict], **extra) -> dict:
    return {
        "person": person(),
        "base_url": BASE,
        "me_url": f"{BASE}/me/tok-me",
        "journey": journey(),
        "steps": steps,
        **extra,
    }


def digest_ctx(level: str = "manager", groups: list[dict] | None = None) -> dict:
    if groups is None:
        groups = [
            {
                "person": {"name": "Maya Patel", "email": "maya@example.com"},
                "journey_title": "Giving feedback that lands",
                "days_behind": 4,
                "last_activity": date(2026, 3, 23),
                "steps": [
                    {"title": "Read the SBI one-pager", "days_overdue": 4, "confirm_url": None},
                    {
                        "title": "Ask your manager for feedback",
                        "days_overdue": 1,
                        "confirm_url": f"{BASE}/team/tok-confirm",
                    },
                ],
            },
            {
                "person": {"name": "Olu Ade", "email": "olu@example.com"},
                "journey_title": "Giving feedback that lands",
                "days_behind": 2,
                "last_activity": None,
                "steps": [{"title": "Discuss with a peer", "days_overdue": 2, "confirm_url": None}],
            },
        ]
    return {
        "recipient": {"name": "Sam Lee", "first_name": "Sam", "email": "sam@example.com"},
        "base_url": BASE,
        "level": level,
        "groups": groups,
        "checkins": [],
        "on_track": 5,
        "team_url": f"{BASE}/team/tok-team",
        "preferences_url": f"{BASE}/preferences/tok-prefs",
    }


def ctx_for(kind: str) -> dict:
    """Return a realistic context for each kind."""
    if kind == "step":
        return learner_ctx([step(3)])
    if kind == "reminder":
        return learner_ctx([step(3, days_overdue=2)], mute_url=f"{BASE}/mute/tok-mute")
    if kind == "digest":
        return digest_ctx()
    if kind == "invite-update":
        moved = {
            "title": "Feedback workshop",
            "position": 5,
            "total": 12,
            "invite_start": datetime(2026, 4, 2, 14, 0, tzinfo=LONDON),
            "done_url": f"{BASE}/done/tok-5",
        }
        return learner_ctx([moved])
    if kind == "invite-cancel":
        return learner_ctx([{"title": "Feedback workshop"}], reason="withdrawn")
    raise AssertionError(kind)


def request_invite(key: str = "read-sbi", method: str = "REQUEST"):
    return build_invite(
        method,
        [
            InviteEvent(
                uid=make_uid(7, key, "example.org"),
                sequence=0,
                start=datetime(2026, 3, 30, 10, 0, tzinfo=LONDON),
                minutes=15,
                tz="Europe/London",
                summary="Read the SBI one-pager",
                description="Read it twice.",
                url=f"{BASE}/done/tok-3",
            )
        ],
        organizer=FROM,
        attendee="maya@example.com",
        attendee_name="Maya Patel",
        now=NOW,
    )


def message(kind: str, ctx: dict | None = None, **kwargs) -> EmailMessage:
    return build_message(
        kind=kind,
        to="Maya Patel <maya@example.com>",
        from_addr=FROM,
        message_id=make_message_id(42, f"{kind}:7:read-sbi", "example.org"),
        date=NOW,
        rendered=render(kind, ctx or ctx_for(kind)),
        **kwargs,
    )


def reparse(msg: EmailMessage) -> EmailMessage:
    """Serialise and parse again, as the receiving end would."""
    parsed = message_from_bytes(msg.as_bytes(), policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def structure(msg: EmailMessage) -> list:
    """Return the MIME tree as nested content types."""
    if msg.is_multipart():
        return [msg.get_content_type(), [structure(p) for p in msg.iter_parts()]]
    return msg.get_content_type()


def part(msg: EmailMessage, content_type: str) -> EmailMessage:
    found = [p for p in msg.walk() if p.get_content_type() == content_type]
    assert len(found) == 1, f"{len(found)} parts of type {content_type}"
    return found[0]


# Rendering


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_a_one_line_subject_text_and_html(kind):
    rendered = render(kind, ctx_for(kind))

    assert rendered.subject
    assert "\n" not in rendered.subject and rendered.subject == rendered.subject.strip()
    assert rendered.text.strip()
    assert "\n\n\n" not in rendered.text
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert "Maya" in rendered.text or "Sam" in rendered.text


def test_single_step_subject_names_position_and_title():
    rendered = render("step", learner_ctx([step(3)]))

    assert rendered.subject == "Step 3 of 12: Read the SBI one-pager"


def test_catch_up_subject_counts_steps_and_names_the_journey():
    rendered = render("step", learner_ctx([step(3), step(4, title="Discuss it")]))

    assert rendered.subject == "2 steps for Giving feedback that lands"


def test_step_shows_kind_effort_due_date_link_instructions_and_position():
    rendered = render("step", learner_ctx([step(3)]))

    for output in (rendered.text, rendered.html):
        assert "Read" in output
        assert "15 min" in output
        assert "Wednesday 1 April" in output
        assert "https://intranet.example.com/sbi.pdf" in output
        assert "Monday 30 March at 10:00" in output
    assert "Step 3 of 12" in rendered.html
    assert "STEP 3 OF 12" in rendered.text
    assert "<strong>twice</strong>" in rendered.html


def test_step_html_has_a_mark_as_done_button_per_step():
    rendered = render("step", learner_ctx([step(3), step(4)]))

    for position in (3, 4):
        assert re.search(
            rf'<a [^>]*href="{BASE}/done/tok-{position}"[^>]*>Mark as done</a>', rendered.html
        )


@pytest.mark.parametrize("kind", ["step", "reminder", "invite-update"])
def test_text_part_has_every_done_url_on_its_own_line(kind):
    steps = [step(3, days_overdue=2), step(4, days_overdue=1)]
    ctx = learner_ctx(steps, mute_url=f"{BASE}/mute/x")
    lines = render(kind, ctx).text.splitlines()

    assert f"{BASE}/done/tok-3" in lines
    assert f"{BASE}/done/tok-4" in lines
    assert f"{BASE}/me/tok-me" in lines


def test_first_step_of_a_journey_introduces_the_journey():
    first = render("step", learner_ctx([step(1)]))
    later = render("step", learner_ctx([step(5)]))

    assert "Six weeks from" in first.text
    assert "<em>avoiding</em>" in first.html
    assert "Six weeks from" not in later.text


def test_missing_optional_step_fields_are_left_out():
    bare = step(3, minutes=None, link=None, body=None, due_date=None, invite_start=None)
    rendered = render("step", learner_ctx([bare]), env=environment())

    assert "calendar" not in rendered.text
    assert "Open it here" not in rendered.text
    assert "due" not in rendered.text.split("STEP 3 OF 12")[1].splitlines()[1]


def test_no_me_url_means_no_progress_link():
    rendered = render("step", {**learner_ctx([step(3)]), "me_url": None})

    assert "See where you are" not in rendered.text
    assert "See where you are" not in rendered.html


def test_reminder_says_how_overdue_and_links_to_mute():
    rendered = render("reminder", ctx_for("reminder"))

    assert rendered.subject == "Still to do: Read the SBI one-pager"
    assert "2 working days overdue" in rendered.text
    assert "2 working days overdue" in rendered.html
    assert f"{BASE}/mute/tok-mute" in rendered.text.splitlines()
    assert f'href="{BASE}/mute/tok-mute"' in rendered.html


def test_reminder_for_several_steps_counts_them():
    ctx = learner_ctx([step(3, days_overdue=3), step(4, days_overdue=1)], mute_url="u")

    assert render("reminder", ctx).subject == (
        "2 steps are waiting for you in Giving feedback that lands"
    )


@pytest.mark.parametrize(
    ("level", "subject"),
    [
        # one of the two behind also has a step waiting for the manager's confirmation
        ("manager", "2 people on your team could use a nudge, 1 waiting for your confirmation"),
        ("skip_level", "2 people in your wider team are behind"),
        ("admin", "2 learners are behind"),
    ],
)
def test_digest_subject_depends_on_the_recipient_level(level, subject):
    assert render("digest", digest_ctx(level)).subject == subject


def test_digest_about_one_person_names_them():
    ctx = digest_ctx()
    ctx["groups"] = ctx["groups"][:1]

    assert render("digest", ctx).subject == (
        "Maya Patel is behind by 4 working days on Giving feedback that lands"
    )


def test_digest_lists_people_steps_confirm_links_and_team_page():
    rendered = render("digest", digest_ctx())
    lines = rendered.text.splitlines()

    assert "Maya Patel <maya@example.com>" in lines
    assert any("last active Monday 23 March" in line for line in lines)
    assert any("no activity yet" in line for line in lines)
    assert f"{BASE}/team/tok-confirm" in [line.strip() for line in lines]
    assert f"{BASE}/team/tok-team" in lines
    assert f"{BASE}/preferences/tok-prefs" in lines
    assert "5 other people are on track." in lines
    assert re.search(rf'href="{BASE}/team/tok-confirm"[^>]*>Confirm it', rendered.html)
    assert f'href="{BASE}/preferences/tok-prefs"' in rendered.html


def test_invite_update_shows_the_new_time():
    rendered = render("invite-update", ctx_for("invite-update"))

    assert rendered.subject == "New time for step 5: Feedback workshop"
    assert "Thursday 2 April at 14:00" in rendered.text
    assert "Thursday 2 April at 14:00" in rendered.html


@pytest.mark.parametrize(
    ("reason", "phrase"),
    [("withdrawn", "no longer enrolled"), ("paused", "is paused"), ("removed", "taken out of")],
)
def test_invite_cancel_explains_the_reason(reason, phrase):
    rendered = render("invite-cancel", learner_ctx([{"title": "Workshop"}], reason=reason))

    assert rendered.subject == "Cancelled: Workshop"
    assert phrase in rendered.text
    assert phrase in rendered.html


def test_times_can_be_shown_in_a_zone_given_by_the_context():
    ctx = ctx_for("invite-update")
    ctx["tz"] = "America/New_York"

    assert "Thursday 2 April at 09:00" in render("invite-update", ctx).text


def test_durations_read_naturally():
    assert format_duration(15) == "15 min"
    assert format_duration(60) == "1 hour"
    assert format_duration(90) == "1 h 30 min"
    assert format_duration(120) == "2 hours"


# Escaping and Markdown


def test_html_escapes_step_titles_but_text_and_subject_keep_them():
    ctx = learner_ctx([step(3, title="<script>alert(1)</script> & more")])
    rendered = render("step", ctx)

    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in rendered.html
    assert "<script>alert(1)</script> & more" in rendered.text
    assert rendered.subject == "Step 3 of 12: <script>alert(1)</script> & more"


def test_names_and_journey_titles_are_escaped_in_every_html_kind():
    evil = '<img src=x onerror="alert(1)">'
    for kind in KINDS:
        ctx = ctx_for(kind)
        if kind == "digest":
            ctx["recipient"]["first_name"] = evil
            ctx["groups"][0]["person"]["name"] = evil
        else:
            ctx["person"]["first_name"] = evil
            ctx["journey"]["title"] = evil

        assert "<img" not in render(kind, ctx).html, kind


def test_markdown_javascript_links_do_not_survive():
    body = (
        "[click](javascript:alert(1)) [again](JaVaScRiPt:alert(2)) "
        "[entity](javascript&#58;alert(3)) <javascript:alert(4)> "
        "[data](data:text/html;base64,PHNjcmlwdD4=) [fine](https://example.com/ok)"
    )
    html = render("step", learner_ctx([step(3, body=body)])).html

    hrefs = re.findall(r'href="([^"]*)"', html)
    assert not [h for h in hrefs if not h.startswith(("https:", "mailto:"))]
    assert "[click](javascript:alert(1))" in html  # left as plain text
    assert 'href="https://example.com/ok"' in html


def test_markdown_raw_html_and_images_are_not_rendered():
    body = '<b onclick="x()">bold</b>\n\n![tracker](https://tracker.example.com/p.gif)'
    html = render("step", learner_ctx([step(3, body=body)])).html

    assert "<b onclick" not in html
    assert "&lt;b onclick" in html
    assert "<img" not in html


# HTML quality


def test_html_has_css_inlined_and_keeps_the_media_query():
    html = render("step", learner_ctx([step(3)])).html

    assert "@media" in html
    assert re.search(r'<a [^>]*class="btn"[^>]*style="[^"]*background|<a [^>]*style=', html)
    assert re.search(r'<td [^>]*class="btn-cell"[^>]*style="[^"]*background-color', html)
    assert "<link" not in html
    assert "<img" not in html


def test_environment_is_built_once_and_can_point_elsewhere(tmp_path):
    assert environment() is environment()
    (tmp_path / "hello.subject.txt").write_text("Hello {{ person.name }}\n")
    (tmp_path / "hello.txt").write_text("Hi {{ person.name }}\n")
    (tmp_path / "hello.html").write_text("<p>{{ person.name }}</p>")

    rendered = render("hello", {"person": {"name": "<Ann>"}}, env=make_environment(tmp_path))

    assert rendered.subject == "Hello <Ann>"
    assert "&lt;Ann&gt;" in rendered.html


# MIME assembly


@pytest.mark.parametrize("kind", KINDS)
def test_message_without_invite_is_text_and_html_alternatives(kind):
    msg = reparse(message(kind))

    assert structure(msg) == ["multipart/alternative", ["text/plain", "text/html"]]
    assert part(msg, "text/plain").get_content_charset() == "utf-8"
    assert part(msg, "text/html").get_content_charset() == "utf-8"


@pytest.mark.parametrize("kind", KINDS)
def test_message_headers(kind):
    msg = reparse(message(kind))

    assert msg["Message-ID"] == make_message_id(42, f"{kind}:7:read-sbi", "example.org")
    assert msg["From"] == FROM
    assert msg["To"] == "Maya Patel <maya@example.com>"
    # A subject too long for one line with "Subject:" is folded onto the next; unfolding
    # leaves the space that began the line, which readers drop.
    assert msg["Subject"].lstrip() == render(kind, ctx_for(kind)).subject
    assert msg["X-Nudger-Kind"] == kind
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Date"].datetime == NOW


def test_message_with_request_invite_has_calendar_part_and_attachment():
    msg = reparse(message("step", invite=request_invite()))

    assert structure(msg) == [
        "multipart/mixed",
        [
            ["multipart/alternative", ["text/plain", "text/html", "text/calendar"]],
            "application/ics",
        ],
    ]
    calendar = part(msg, "text/calendar")
    assert calendar.get_param("method") == "REQUEST"
    assert calendar.get_content_charset() == "utf-8"
    assert Calendar.from_ical(calendar.get_content())["METHOD"] == "REQUEST"
    attachment = part(msg, "application/ics")
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_param("name") == "invite.ics"
    assert attachment.get_content_disposition() == "attachment"
    assert Calendar.from_ical(attachment.get_content())["METHOD"] == "REQUEST"


def test_cancel_invite_sets_method_cancel_on_the_mime_part():
    ctx = learner_ctx([{"title": "Read the SBI one-pager"}], reason="paused")
    msg = reparse(message("invite-cancel", ctx, invite=request_invite(method="CANCEL")))
    calendar = part(msg, "text/calendar")

    assert calendar.get_param("method") == "CANCEL"
    cal = Calendar.from_ical(calendar.get_content())
    assert cal["METHOD"] == "CANCEL"
    assert cal.walk("VEVENT")[0]["STATUS"] == "CANCELLED"


def test_several_invites_put_the_first_inline_and_attach_each():
    invites = [request_invite("read-sbi"), request_invite("discuss")]
    ctx = learner_ctx([step(3), step(4)])
    msg = reparse(message("step", ctx, invite=invites))

    inline = Calendar.from_ical(part(msg, "text/calendar").get_content())
    assert str(inline.walk("VEVENT")[0]["UID"]) == make_uid(7, "read-sbi", "example.org")
    attachments = [p for p in msg.iter_attachments()]
    assert [a.get_filename() for a in attachments] == ["invite.ics", "invite-2.ics"]
    uids = [str(Calendar.from_ical(a.get_content()).walk("VEVENT")[0]["UID"]) for a in attachments]
    assert uids == [make_uid(7, "read-sbi", "example.org"), make_uid(7, "discuss", "example.org")]


def test_the_text_part_decodes_to_the_rendered_text():
    ctx = learner_ctx([step(3, title=UNICODE_TITLE)])
    msg = reparse(message("step", ctx))

    assert UNICODE_TITLE in part(msg, "text/plain").get_content()
    assert UNICODE_TITLE in msg["Subject"]


def test_extra_headers_are_added_and_can_replace_defaults():
    msg = message(
        "reminder",
        headers={
            "List-Unsubscribe": f"<{BASE}/mute/tok-mute>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-replied",
        },
    )

    assert msg["List-Unsubscribe"] == f"<{BASE}/mute/tok-mute>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_all("Auto-Submitted") == ["auto-replied"]


def test_naive_date_is_refused():
    with pytest.raises(ValueError, match="aware"):
        build_message(
            kind="step",
            to="maya@example.com",
            from_addr=FROM,
            message_id="<x@example.org>",
            date=datetime(2026, 3, 30, 9, 0),
            rendered=render("step", ctx_for("step")),
        )


def test_message_id_is_deterministic_per_outbox_row():
    first = make_message_id(42, "step:7:read-sbi", "example.org")

    assert first == make_message_id(42, "step:7:read-sbi", "example.org")
    assert first != make_message_id(43, "step:7:read-sbi", "example.org")
    assert first != make_message_id(42, "step:7:discuss", "example.org")
    assert re.fullmatch(r"<nudger\.42\.[0-9a-f]{12}@example\.org>", first)


def test_message_id_domain_comes_from_the_from_address():
    assert address_domain("Nudger <nudger@Example.ORG>") == "example.org"
    assert address_domain("nudger@localhost") == "localhost"
    with pytest.raises(ValueError):
        address_domain("Nudger")


def test_message_is_plain_ascii_on_the_wire_even_with_accents():
    ctx = learner_ctx([step(3, title=UNICODE_TITLE)])
    raw = message("step", ctx, invite=request_invite()).as_bytes()

    raw.decode("ascii")  # no 8bit body: relays without 8BITMIME accept it
    assert UNICODE_TITLE in part(reparse(message("step", ctx)), "text/html").get_content()
