"""The manager's page: the team's standing, shared notes, one-click confirmation."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from nudger import tokens
from nudger.models import AuditLog, EnrolmentStep
from nudger.progress import complete_step
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person
from tests.pagekit import SEND, app_for, csrf_token, fresh, sent_steps

THURSDAY = datetime(2027, 3, 4, 10, 0, tzinfo=UTC)  # 10:00 in London, after the send time

FEEDBACK_STEPS = [
    {
        "key": "ask",
        "day": 0,
        "kind": "feedback",
        "title": "Ask your manager for feedback",
        "confirmed_by": "manager",
    },
    {"key": "reflect", "day": 3, "kind": "reflect", "title": "Reflect on it"},
]


def words_of(markup: str) -> str:
    """Return markup's words as a person reads them: no tags, single spaces."""
    words = re.sub(r"<[^>]+>", " ", markup)
    return re.sub(r"\s+([.,:;)])", r"\1", re.sub(r"\s+", " ", html.unescape(words))).strip()


def page_text(response) -> str:
    return words_of(response.get_data(as_text=True))


@pytest.fixture
def org(session, settings, now):
    """Skip-level Kim > manager Max > Ada, Bo, Cy; another manager Olu > Dee."""
    kim = make_person(session, "kim@example.com", "Kim Skip")
    max_ = make_person(session, "max@example.com", "Max Manager", manager=kim)
    olu = make_person(session, "olu@example.com", "Olu Other")
    ada = make_person(session, "ada@example.com", "Ada Lovelace", manager=max_)
    bo = make_person(session, "bo@example.com", "Bo Diddley", manager=max_)
    cy = make_person(session, "cy@example.com", "Cy Twombly", manager=max_)
    dee = make_person(session, "dee@example.com", "Dee Secret", manager=olu)
    basics = make_journey(session, "basics")
    feedback = make_journey(session, "feedback", steps=FEEDBACK_STEPS)
    enrol = {p.email: make_enrolment(session, p, basics, now.date()) for p in (ada, bo, cy, dee)}
    fb_ada = make_enrolment(session, ada, feedback, now.date())
    fb_dee = make_enrolment(session, dee, feedback, now.date())
    tick(session, settings, now + SEND, enqueue=False)

    read_ada = sent_steps(session, enrol["ada@example.com"])["read"]
    complete_step(session, read_ada.id, now + SEND, note="Shared thought")
    ask_ada = sent_steps(session, fb_ada)["ask"]
    complete_step(session, ask_ada.id, now + SEND, note="We talked on Monday")
    read_cy = sent_steps(session, enrol["cy@example.com"])["read"]
    read_cy.due_at = datetime(2027, 2, 25, 9, 0, tzinfo=UTC)  # Thursday the week before
    session.add(read_cy)
    read_bo = sent_steps(session, enrol["bo@example.com"])["read"]
    read_bo.note, read_bo.note_shared = "Private musing", False
    session.add(read_bo)
    session.commit()
    return {
        "kim": kim,
        "max": max_,
        "olu": olu,
        "ada": ada,
        "dee": dee,
        "ask_ada": ask_ada,
        "ask_dee": sent_steps(session, fb_dee)["ask"],
        "read_bo": read_bo,
    }


def team_url(settings, person) -> str:
    return "/team/" + tokens.make_token(settings, "team", person.id)


def test_a_manager_sees_each_report_on_track_behind_or_escalated_in_glossary_words(settings, org):
    response = app_for(settings, THURSDAY).test_client().get(team_url(settings, org["max"]))
    assert response.status_code == 200
    cards = member_cards(response)
    assert "Basics On track" in cards["Ada Lovelace"]
    # Due Wednesday 09:00; Thursday's send time has passed: one working day.
    assert "Basics Behind by 1 working day" in cards["Bo Diddley"]
    # Due the Thursday before: Fri, Mon, Tue, Wed, Thu.
    assert "Basics Escalated · behind by 5 working days" in cards["Cy Twombly"]
    assert "5 working days overdue, was due Thursday 25 February" in cards["Cy Twombly"]
    assert "1 escalated 1 behind 1 on track" in page_text(response)
    # The terms are defined once, on the page.
    assert page_text(response).count("Escalated a learner behind by at least") == 1


def member_cards(response) -> dict[str, str]:
    """Return each person's card on the team page as text, by the person's name."""
    cards = {}
    for match in re.finditer(r'<article class="card member".*?</article>', response.text, re.S):
        name = re.search(r"<h3[^>]*>(.*?)</h3>", match.group(0)).group(1)
        cards[html.unescape(name)] = words_of(match.group(0))
    return cards


def test_shared_notes_show_and_private_ones_do_not(settings, org):
    text = page_text(app_for(settings, THURSDAY).test_client().get(team_url(settings, org["max"])))
    assert "Shared thought" in text
    assert "We talked on Monday" in text
    assert "Private musing" not in text


def test_a_manager_sees_only_their_own_tree(settings, org):
    text = page_text(app_for(settings, THURSDAY).test_client().get(team_url(settings, org["max"])))
    assert "Ada Lovelace" in text
    assert "Dee Secret" not in text
    assert "Kim Skip" not in text


def test_a_skip_level_manager_sees_their_reports_reports(settings, org):
    text = page_text(app_for(settings, THURSDAY).test_client().get(team_url(settings, org["kim"])))
    assert "Reporting to you (1)" in text
    assert "In their teams (3)" in text
    assert "Ada Lovelace Reports to Max Manager" in text
    assert "Waiting for Max Manager to confirm it." in text
    assert "Dee Secret" not in text


def test_the_manager_confirms_a_feedback_step_with_one_click(settings, session, org):
    client = app_for(settings, THURSDAY).test_client()
    url = team_url(settings, org["max"])
    page = client.get(url)
    ask = org["ask_ada"]
    assert f'id="confirm-{ask.id}"' in page.text
    assert fresh(session, ask).status == "sent"
    response = client.post(f"{url}/confirm/{ask.id}", data={"csrf_token": csrf_token(page.text)})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"{url}#person-{org['ada'].id}")
    row = fresh(session, ask)
    assert row.status == "done"
    assert row.confirmed_by_id == org["max"].id
    assert row.done_at == THURSDAY
    assert "Confirmed: Ada Lovelace has done “Ask your manager for feedback”." in page_text(
        client.get(url)
    )


def test_confirming_twice_is_harmless(settings, session, org):
    client = app_for(settings, THURSDAY).test_client()
    url = team_url(settings, org["max"])
    token = csrf_token(client.get(url).text)
    ask = org["ask_ada"]
    client.post(f"{url}/confirm/{ask.id}", data={"csrf_token": token})
    again = client.post(f"{url}/confirm/{ask.id}", data={"csrf_token": token})
    assert again.status_code == 303
    assert "was already confirmed" in page_text(client.get(url))
    done = session.exec(
        select(AuditLog).where(AuditLog.action == "step.done", AuditLog.subject_id == ask.id)
    ).all()
    assert len(done) == 1


def test_a_manager_cannot_confirm_another_managers_report(settings, session, org):
    client = app_for(settings, THURSDAY).test_client()
    url = team_url(settings, org["max"])
    token = csrf_token(client.get(url).text)
    response = client.post(f"{url}/confirm/{org['ask_dee'].id}", data={"csrf_token": token})
    assert response.status_code == 404
    assert "Dee" not in response.text
    assert fresh(session, org["ask_dee"]).status == "sent"


def test_a_skip_level_manager_cannot_confirm_for_the_direct_manager(settings, session, org):
    client = app_for(settings, THURSDAY).test_client()
    url = team_url(settings, org["kim"])
    assert 'action="/team/' not in client.get(url).text  # no button is offered...
    # ...and a hand-made POST, with a valid CSRF token from another page, is refused.
    prefs = client.get("/prefs/" + tokens.make_token(settings, "prefs", org["kim"].id))
    token = csrf_token(prefs.text)
    response = client.post(f"{url}/confirm/{org['ask_ada'].id}", data={"csrf_token": token})
    assert response.status_code == 404
    assert fresh(session, org["ask_ada"]).status == "sent"


def test_a_step_without_manager_confirmation_cannot_be_confirmed(settings, session, org):
    client = app_for(settings, THURSDAY).test_client()
    url = team_url(settings, org["max"])
    token = csrf_token(client.get(url).text)
    response = client.post(f"{url}/confirm/{org['read_bo'].id}", data={"csrf_token": token})
    assert response.status_code == 404
    assert fresh(session, org["read_bo"]).status == "sent"


def test_an_unknown_step_id_is_a_404(settings, org):
    client = app_for(settings, THURSDAY).test_client()
    url = team_url(settings, org["max"])
    token = csrf_token(client.get(url).text)
    assert client.post(f"{url}/confirm/999999", data={"csrf_token": token}).status_code == 404


def test_a_team_link_is_not_a_learner_link(settings, org):
    client = app_for(settings, THURSDAY).test_client()
    token = tokens.make_token(settings, "team", org["max"].id)
    assert client.get(f"/me/{token}").status_code == 404
    assert client.get(f"/done/{token}").status_code == 404


def test_a_confirm_without_the_csrf_token_changes_nothing(settings, session, org):
    client = app_for(settings, THURSDAY).test_client()
    url = team_url(settings, org["max"])
    response = client.post(f"{url}/confirm/{org['ask_ada'].id}")
    assert response.status_code == 400
    assert fresh(session, org["ask_ada"]).status == "sent"


def test_a_manager_with_nobody_reporting_sees_an_empty_page(settings, session, now):
    lone = make_person(session, "lone@example.com", "Lone Wolf")
    client = app_for(settings, now).test_client()
    response = client.get(team_url(settings, lone))
    assert response.status_code == 200
    assert "Nobody reports to you in Nudger yet." in response.text


def test_the_team_view_reads_a_large_team_in_a_few_queries(settings, session, engine, now):
    from sqlalchemy import event

    from nudger.insights.team import team

    boss = make_person(session, "boss@example.com", "Boss")
    journey = make_journey(session)
    for i in range(60):
        p = make_person(session, f"r{i}@example.com", f"Report {i}", manager=boss)
        make_enrolment(session, p, journey, now.date())
    tick(session, settings, now + SEND, enqueue=False)
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        view = team(session, settings, fresh(session, boss), THURSDAY)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(view.members) == 60
    assert all(m.standing == "behind" for m in view.members)
    assert len(statements) <= 10
    assert session.exec(select(EnrolmentStep)).first() is not None
