"""Mail scanners open every link, run its JavaScript and submit what submits itself.

Nothing they can do without a person pressing a button may change a step,
a mute, a digest choice or a confirmation; every hit is recorded as a
LinkHit, never as engagement; bad links get a clear page.
"""

from __future__ import annotations

import html
import os
from datetime import timedelta

import pytest
from sqlmodel import select

from nudger import tokens
from nudger.models import AuditLog, LinkHit
from nudger.progress import complete_step
from tests.factories import make_journey, make_person
from tests.pagekit import (
    CHROMIUM,
    SEND,
    app_for,
    chromium,
    csrf_token,
    fresh,
    learner_with_first_step,
    live_server,
    sent_steps,
)

SAFE_LINKS = "Mozilla/5.0 (compatible; Microsoft Office Protection)"

FEEDBACK = [
    {
        "key": "ask",
        "day": 0,
        "kind": "feedback",
        "title": "Ask for feedback",
        "confirmed_by": "manager",
    }
]


def changes(session) -> list[str]:
    """Return every change recorded in the audit log."""
    return [a.action for a in session.exec(select(AuditLog))]


def test_a_head_request_changes_nothing_and_is_recorded(settings, session, now):
    _, _, es = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    response = client.head(f"/done/{tokens.make_token(settings, 'done', es.id)}")
    assert response.status_code == 200
    assert fresh(session, es).status == "sent"
    hits = session.exec(select(LinkHit)).all()
    assert [(h.purpose, h.subject_id, h.method) for h in hits] == [("done", es.id, "HEAD")]
    assert changes(session) == []


def test_a_get_changes_nothing_and_is_recorded_with_its_user_agent(settings, session, now):
    _, _, es = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    url = f"/done/{tokens.make_token(settings, 'done', es.id)}"
    for _ in range(3):  # scanners often fetch twice or more
        assert client.get(url, headers={"User-Agent": SAFE_LINKS}).status_code == 200
    row = fresh(session, es)
    assert (row.status, row.done_at, row.note) == ("sent", None, None)
    hits = session.exec(select(LinkHit)).all()
    assert [(h.method, h.user_agent) for h in hits] == [("GET", SAFE_LINKS)] * 3
    assert changes(session) == []


def test_a_post_without_the_csrf_token_changes_nothing(settings, session, now):
    _, _, es = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    url = f"/done/{tokens.make_token(settings, 'done', es.id)}"
    client.get(url)
    response = client.post(url, data={"note": "auto-submitted"})
    assert response.status_code == 400
    assert "Nothing was changed" in response.text
    assert fresh(session, es).status == "sent"
    assert changes(session) == []


def test_a_post_replaying_the_forms_token_without_its_cookie_changes_nothing(
    settings, session, now
):
    _, _, es = learner_with_first_step(session, settings, now)
    app = app_for(settings, now + SEND)
    url = f"/done/{tokens.make_token(settings, 'done', es.id)}"
    token = csrf_token(app.test_client().get(url).text)
    # A scanner that parses the form and posts it from a fresh connection has no session.
    response = app.test_client().post(url, data={"csrf_token": token})
    assert response.status_code == 400
    assert fresh(session, es).status == "sent"


def test_scanners_cannot_mute_or_change_digests_by_opening_links(settings, session, now):
    _, enrolment, _ = learner_with_first_step(session, settings, now)
    boss = make_person(session, "boss@example.com", "Sam Boss")
    client = app_for(settings, now + SEND).test_client()
    for url in (
        f"/mute/{tokens.make_token(settings, 'mute', enrolment.id)}",
        f"/prefs/{tokens.make_token(settings, 'prefs', boss.id)}",
    ):
        assert client.get(url).status_code == 200
        assert client.head(url).status_code == 200
        assert client.post(url, data={"every": "week", "action": "mute"}).status_code == 400
    assert fresh(session, enrolment).reminders_muted is False
    assert fresh(session, boss).digest_every is None
    assert changes(session) == []


def test_a_tampered_link_gets_a_clear_404_page(settings, session, now):
    _, _, es = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    token = tokens.make_token(settings, "done", es.id)
    for bad in (token[:-3] + "abc", token[:10], "not-a-token", token.replace(".", "", 1)):
        response = client.get(f"/done/{bad}")
        assert response.status_code == 404
        assert "This link doesn't work" in html.unescape(response.text)
        assert "newest email" in response.text
        assert "Traceback" not in response.text
        assert "Email me a fresh link" not in response.text  # we don't know who it was for
    assert session.exec(select(LinkHit)).all() == []


def test_a_tampered_post_gets_the_same_clear_page(settings, session, now):
    _, enrolment, es = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    me = f"/me/{tokens.make_token(settings, 'me', enrolment.id)}"
    token = csrf_token(client.get(me).text)
    response = client.post(
        f"/done/{tokens.make_token(settings, 'done', es.id)}x", data={"csrf_token": token}
    )
    assert response.status_code == 404
    assert "This link doesn't work" in html.unescape(response.text)
    assert fresh(session, es).status == "sent"


def test_an_expired_link_gets_a_clear_410_page_with_a_way_forward(settings, session, now):
    _, enrolment, es = learner_with_first_step(session, settings, now)
    enrolment = fresh(session, enrolment)
    enrolment.status = "withdrawn"
    session.add(enrolment)
    session.commit()
    later = now + timedelta(days=400)
    client = app_for(settings, later).test_client()
    for url in (
        f"/done/{tokens.make_token(settings, 'done', es.id, now)}",
        f"/me/{tokens.make_token(settings, 'me', enrolment.id, now)}",
        f"/mute/{tokens.make_token(settings, 'mute', enrolment.id, now)}",
    ):
        response = client.get(url)
        assert response.status_code == 410
        assert "This link has expired" in response.text
        assert "Email me a fresh link" in response.text
        assert "Traceback" not in response.text
    boss = make_person(session, "boss@example.com", "Sam Boss")
    old_team = tokens.make_token(settings, "team", boss.id, later - timedelta(days=121))
    assert client.get(f"/team/{old_team}").status_code == 410


def test_a_manager_cannot_see_another_managers_reports_by_changing_the_url(settings, session, now):
    max_ = make_person(session, "max@example.com", "Max Manager")
    olu = make_person(session, "olu@example.com", "Olu Other")
    journey = make_journey(session, steps=FEEDBACK)
    _, _, ask = learner_with_first_step(
        session, settings, now, journey=journey, email="dee@example.com", name="Dee", manager=olu
    )
    client = app_for(settings, now + SEND).test_client()
    mine = f"/team/{tokens.make_token(settings, 'team', max_.id)}"
    page = client.get(mine)
    assert "Dee" not in page.text
    token = csrf_token(client.get(f"/prefs/{tokens.make_token(settings, 'prefs', max_.id)}").text)
    assert client.post(f"{mine}/confirm/{ask.id}", data={"csrf_token": token}).status_code == 404
    assert fresh(session, ask).status == "sent"


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
def test_opening_every_link_with_javascript_running_changes_nothing(settings, session, now):
    boss = make_person(session, "boss@example.com", "Sam Boss")
    journey = make_journey(session, steps=FEEDBACK)
    _, enrolment, ask = learner_with_first_step(
        session, settings, now, journey=journey, manager=boss
    )
    complete_step(session, ask.id, now + SEND)  # waiting for the manager: a Confirm button shows
    before = changes(session)
    links = [
        f"/done/{tokens.make_token(settings, 'done', ask.id)}",
        f"/me/{tokens.make_token(settings, 'me', enrolment.id)}",
        f"/team/{tokens.make_token(settings, 'team', boss.id)}#confirm-{ask.id}",
        f"/mute/{tokens.make_token(settings, 'mute', enrolment.id)}",
        f"/prefs/{tokens.make_token(settings, 'prefs', boss.id)}",
    ]
    with live_server(settings, now + SEND) as (base, _app), chromium() as browser:
        page = browser.new_page(user_agent=SAFE_LINKS)
        posts = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        for link in links:
            page.goto(base + link, wait_until="networkidle")
            page.wait_for_timeout(300)  # time for any script that would submit a form
        assert posts == []
    row = fresh(session, ask)
    assert (row.status, row.awaiting_confirmation, row.confirmed_by_id) == ("sent", True, None)
    assert fresh(session, enrolment).reminders_muted is False
    assert fresh(session, boss).digest_every is None
    assert changes(session) == before
    methods = {h.method for h in session.exec(select(LinkHit))}
    assert methods == {"GET"}
    assert sent_steps(session, enrolment)["ask"].status == "sent"
