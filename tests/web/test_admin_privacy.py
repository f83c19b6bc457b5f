"""Erasing a person's personal data from the console: a confirmation page, then a POST."""

from __future__ import annotations

from sqlmodel import select

from nudger.models import AuditLog, Enrolment, Person
from tests.adminkit import admin_app, make_admin, post, redis, sign_in
from tests.privacykit import (
    ERASED_AT,
    ZOE,
    ZOE_EMAIL,
    ZOE_NAME,
    a_team_with_history,
    cells_mentioning,
)

__all__ = ["redis"]

NOW = ERASED_AT


def console(session, settings):
    make_admin(session, NOW)
    client = admin_app(settings, NOW).test_client()
    sign_in(client)
    return client


def test_the_person_page_leads_to_a_confirmation_that_changes_nothing(session, settings, redis):
    team = a_team_with_history(session, settings)
    client = console(session, settings)
    zoe = team["zoe"]
    before = cells_mentioning(session, ZOE)

    page = client.get(f"/admin/people/{zoe.id}").get_data(as_text=True)
    assert f'href="/admin/people/{zoe.id}/erase"' in page
    confirm = client.get(f"/admin/people/{zoe.id}/erase")

    assert confirm.status_code == 200
    html = confirm.get_data(as_text=True)
    assert ZOE_EMAIL in html and "notes they wrote on steps: 1" in html
    assert "they manage 1 person: their manager link now points at the anonymised record" in html
    assert f'<form method="post" action="/admin/people/{zoe.id}/erase">' in html
    session.expire_all()
    assert cells_mentioning(session, ZOE) == before
    assert session.get(Person, zoe.id).erased_at is None


def test_erasing_from_the_console_removes_her_everywhere_and_is_audited(session, settings, redis):
    team = a_team_with_history(session, settings)
    client = console(session, settings)
    zoe = team["zoe"]

    response = post(client, f"/admin/people/{zoe.id}/erase")

    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/people/{zoe.id}"
    session.expire_all()
    assert cells_mentioning(session, ZOE) == []
    entry = session.exec(select(AuditLog).where(AuditLog.action == "person.erase")).one()
    assert (entry.actor, entry.subject_id) == ("admin@example.com", zoe.id)
    page = client.get(f"/admin/people/{zoe.id}").get_data(as_text=True)
    assert f"Person {zoe.id}&#39;s personal data was erased." in page
    assert f"Person {zoe.id} (erased)" in page and "Personal data erased on" in page
    assert ZOE_NAME not in page and ZOE_EMAIL not in page
    assert "/erase" not in page and "Pause</button>" not in page
    # Her link hits stay, without the browser that would tell a person from a scanner.
    assert page.count("not known: details erased") == 3 and "a mail scanner" not in page
    # Kit's page names his manager as the anonymised record.
    kit = client.get(f"/admin/people/{team['kit'].id}").get_data(as_text=True)
    assert f'manager <a href="/admin/people/{zoe.id}">Person {zoe.id} (erased)</a>' in kit


def test_a_post_without_the_csrf_token_erases_nothing(session, settings, redis):
    team = a_team_with_history(session, settings)
    client = console(session, settings)

    response = client.post(f"/admin/people/{team['zoe'].id}/erase")

    assert response.status_code == 400
    session.expire_all()
    assert session.get(Person, team["zoe"].id).email == ZOE_EMAIL


def test_an_erased_persons_enrolment_cannot_be_changed_from_the_console(session, settings, redis):
    team = a_team_with_history(session, settings)
    client = console(session, settings)
    enrolment = team["enrolments"][ZOE_EMAIL]
    post(client, f"/admin/people/{team['zoe'].id}/erase")

    response = post(client, f"/admin/enrolments/{enrolment.id}/pause", follow_redirects=True)

    assert "Nothing changed: this person&#39;s personal data was erased." in response.get_data(
        as_text=True
    )
    session.expire_all()
    assert session.get(Enrolment, enrolment.id).status == "active"


def test_erasing_an_unknown_person_is_not_found(session, settings, redis):
    client = console(session, settings)
    assert client.get("/admin/people/999/erase").status_code == 404
    assert post(client, "/admin/people/999/erase").status_code == 404
