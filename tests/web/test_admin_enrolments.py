"""Enrolments in the console: search and filters, pages, changes with an audit trail, history."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlmodel import select

from nudger.enrolments.changes import StartNotMoved, move_start, pause, resume
from nudger.insights import search as lookup
from nudger.models import AuditLog, Enrolment, LinkHit, Outbox
from nudger.outbox.sending import send_batch
from nudger.tick.run import tick
from tests.adminkit import admin_app, build_cohort, make_admin, post, redis, sign_in
from tests.factories import make_enrolment, make_journey, make_person
from tests.pagekit import sent_steps

__all__ = ["redis"]


@pytest.fixture
def cohort(session, settings, now):
    return build_cohort(session, settings, now)


def emails(rows) -> list[str]:
    return [r.email for r in rows]


def find(session, at, **filters) -> list[str]:
    rows, _ = lookup.search(session, lookup.EnrolmentFilter(**filters), at)
    return sorted(emails(rows))


def test_filters_narrow_the_list(session, cohort):
    at = cohort["later"]
    assert find(session, at, behind="yes") == ["bob@example.com", "eve@example.com"]
    assert find(session, at, behind="escalated") == ["bob@example.com"]
    assert find(session, at, status="active", behind="no") == ["ada@example.com"]
    assert find(session, at, status="paused") == ["cy@example.com"]
    assert find(session, at, q="MOSS") == ["eve@example.com"]
    assert find(session, at, q="ada@") == ["ada@example.com"]
    assert len(find(session, at, manager="boss@example.com")) == 5
    assert find(session, at, manager="nobody@example.com") == []
    assert find(session, at, journey="no-such-journey") == []


def test_a_search_for_a_percent_sign_is_literal(session, cohort):
    assert find(session, cohort["later"], q="%") == []


def test_the_count_matches_the_filtered_list(session, cohort):
    f = lookup.EnrolmentFilter(behind="yes")
    assert lookup.count(session, f, cohort["later"]) == 2


def test_pages_follow_each_other_without_gaps_or_repeats(session, now):
    journey = make_journey(session)
    for i in range(7):
        make_enrolment(session, make_person(session, f"p{i}@example.com", f"P {i}"), journey,
                       now.date())  # fmt: skip
    seen, before = [], None
    while True:
        rows, before = lookup.search(session, lookup.EnrolmentFilter(), now, before, limit=3)
        seen += emails(rows)
        if before is None:
            break
    assert seen == [f"p{i}@example.com" for i in reversed(range(7))]


@pytest.mark.parametrize("people_cap", [1, lookup.TEXT_PEOPLE_CAP])
def test_a_text_search_pages_and_counts_alike_however_many_people_match(
    session, now, monkeypatch, people_cap
):
    """Few matching people: their enrolments are found from them; many: by walking enrolments
    newest first. Either way the same pages, in order, and the same count."""
    monkeypatch.setattr(lookup, "TEXT_PEOPLE_CAP", people_cap)
    first, second = make_journey(session, slug="first"), make_journey(session, slug="second")
    for i in range(6):
        person = make_person(session, f"p{i}@example.com", f"Pat {i}" if i % 2 else f"Sam {i}")
        make_enrolment(session, person, first, now.date())
        if i < 3:
            make_enrolment(session, person, second, now.date())
    session.commit()
    f = lookup.EnrolmentFilter(q="pat")
    seen, before = [], None
    while True:
        rows, before = lookup.search(session, f, now, before, limit=2)
        seen += [(r.email, r.journey_slug) for r in rows]
        if before is None:
            break
    assert seen == [("p5@example.com", "first"), ("p3@example.com", "first"),
                    ("p1@example.com", "second"), ("p1@example.com", "first")]  # fmt: skip
    assert lookup.count(session, f, now) == 4
    assert lookup.count(session, f, now, cap=2) == 3
    assert lookup.count(session, lookup.EnrolmentFilter(q="pat", journey="second"), now) == 1


def test_rows_show_progress_lateness_and_manager(session, cohort):
    rows, _ = lookup.search(session, lookup.EnrolmentFilter(q="bob"), cohort["later"])
    [bob] = rows
    assert (bob.done, bob.sent, bob.late, bob.escalated, bob.total) == (0, 3, 2, True, 3)
    assert bob.manager_email == "boss@example.com"


def test_the_list_page_shows_matches_and_keeps_filters_in_the_export(
    settings, session, cohort, redis
):
    make_admin(session, cohort["later"])
    client = admin_app(settings, cohort["later"]).test_client()
    sign_in(client)
    html = client.get("/admin/enrolments?behind=yes").get_data(as_text=True)
    assert "2 enrolments match." in html
    assert "Bob Stone" in html and "Eve Moss" in html and "Ada Lovelace" not in html
    assert 'href="/admin/enrolments.csv?behind=yes"' in html
    export = client.get("/admin/enrolments.csv?behind=yes").data.decode("utf-8-sig")
    assert export.count("\r\n") == 3


def test_pause_resume_and_withdraw_from_the_console_are_audited_as_the_admin(
    settings, session, now, redis
):
    journey = make_journey(session)
    person = make_person(session)
    enrolment = make_enrolment(session, person, journey, now.date())
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    for action, status in (("pause", "paused"), ("resume", "active"), ("withdraw", "withdrawn")):
        response = post(client, f"/admin/enrolments/{enrolment.id}/{action}")
        assert response.headers["Location"] == f"/admin/people/{person.id}"
        session.expire_all()
        assert session.get(Enrolment, enrolment.id).status == status
    audit = session.exec(
        select(AuditLog).where(AuditLog.subject_type == "enrolment").order_by(AuditLog.id)
    ).all()
    assert [(a.action, a.actor) for a in audit] == [
        ("enrolment.pause", "admin@example.com"),
        ("enrolment.resume", "admin@example.com"),
        ("enrolment.withdraw", "admin@example.com"),
    ]
    page = client.get(f"/admin/people/{person.id}").get_data(as_text=True)
    assert "Nothing changed" not in page and "withdrawn." in page


def test_pausing_twice_says_nothing_changed(settings, session, now, redis):
    enrolment = make_enrolment(session, make_person(session), make_journey(session), now.date())
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    post(client, f"/admin/enrolments/{enrolment.id}/pause")
    again = post(client, f"/admin/enrolments/{enrolment.id}/pause", follow_redirects=True)
    assert "Nothing changed: ada@example.com on Giving Feedback was not active." in again.get_data(
        as_text=True
    )


def test_moving_the_start_moves_the_steps_not_yet_sent(session, settings, now):
    journey = make_journey(session)
    enrolment = make_enrolment(session, make_person(session), journey, now.date())
    assert move_start(session, enrolment, date(2027, 3, 8), now, "admin@example.com")
    session.commit()
    tick(session, settings, now + timedelta(days=1), enqueue=False)
    session.refresh(enrolment)
    assert enrolment.start_date == date(2027, 3, 8)
    assert enrolment.next_action_at.date() == date(2027, 3, 8)  # the first send, in London
    audit = session.exec(select(AuditLog).where(AuditLog.action == "enrolment.move_start")).one()
    assert (audit.actor, audit.detail) == (
        "admin@example.com", {"old": "2027-03-01", "new": "2027-03-08"},
    )  # fmt: skip


def test_a_start_in_the_past_is_refused_with_the_reason(session, now):
    enrolment = make_enrolment(session, make_person(session), make_journey(session), now.date())
    with pytest.raises(StartNotMoved, match="2027-02-26 is in the past for this learner"):
        move_start(session, enrolment, date(2027, 2, 26), now, "admin@example.com")


def test_a_withdrawn_enrolment_cannot_be_moved(session, now):
    enrolment = make_enrolment(session, make_person(session), make_journey(session), now.date(),
                               status="withdrawn")  # fmt: skip
    with pytest.raises(StartNotMoved, match="withdrawn"):
        move_start(session, enrolment, date(2027, 3, 8), now)


def test_the_move_form_reports_a_bad_date_without_changing_anything(settings, session, now, redis):
    enrolment = make_enrolment(session, make_person(session), make_journey(session), now.date())
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    page = post(client, f"/admin/enrolments/{enrolment.id}/move", {"start_date": "08/03/2027"},
                follow_redirects=True).get_data(as_text=True)  # fmt: skip
    assert "Not moved: &#39;08/03/2027&#39; is not a date (YYYY-MM-DD)." in page
    page = post(client, f"/admin/enrolments/{enrolment.id}/move", {"start_date": "2027-03-08"},
                follow_redirects=True).get_data(as_text=True)  # fmt: skip
    assert "ada@example.com now starts on 2027-03-08" in page


def test_a_persons_history_has_every_email_completion_escalation_and_link_hit(
    settings, session, cohort, redis
):
    bob = cohort["people"]["bob"]
    enrolment = cohort["enrolments"]["bob"]
    first = sent_steps(session, enrolment)["read"]
    scanner_agent = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"
    session.add(LinkHit(at=cohort["later"], purpose="done", subject_id=first.id, method="GET",
                        user_agent=scanner_agent, ip="10.0.0.9"))  # fmt: skip
    session.commit()
    history = lookup.person_history(session, bob.id, cohort["later"])
    assert [line.status for line in history.enrolments[0].steps] == ["overdue", "overdue", "sent"]
    assert {m.kind for m in history.mail} >= {"step", "reminder"}
    assert [(e.level, d) for e, d, _ in history.escalations] == [("manager", "about them")]
    [(_hit, label, scanner)] = history.hits
    assert (label, scanner) == ("Read the one-pager", True)
    make_admin(session, cohort["later"])
    client = admin_app(settings, cohort["later"]).test_client()
    sign_in(client)
    page = client.get(f"/admin/people/{bob.id}").get_data(as_text=True)
    for text in ("Every email", "Escalations (1)", "Link hits (1)", "a mail scanner",
                 "Proofpoint URL Defense", "Audit log"):  # fmt: skip
        assert text in page
    boss = client.get(f"/admin/people/{cohort['boss'].id}").get_data(as_text=True)
    assert "sent to them" in boss and "bob@example.com" in boss


WORKSHOPS = [
    {"key": "read", "day": 0, "kind": "read", "title": "Read it", "minutes": 15},
    {"key": "workshop", "day": 0, "kind": "workshop", "title": "Workshop", "minutes": 90,
     "at": "2027-03-10T14:00"},
]  # fmt: skip


def test_calendar_emails_on_a_persons_history_show_their_subject_sent_or_not(
    settings, session, now, redis
):
    ada = make_person(session)
    enrolment = make_enrolment(session, ada, make_journey(session, steps=WORKSHOPS), now.date())
    tick(session, settings, now + timedelta(hours=2), enqueue=False)
    pause(session, enrolment, now + timedelta(hours=3))  # a cancel, sent below
    session.commit()
    ids = session.exec(select(Outbox.id).where(Outbox.state == "pending")).all()
    send_batch(session.get_bind(), settings, list(ids), now + timedelta(hours=3))
    resume(session, enrolment, now + timedelta(days=2))  # an update, still queued
    session.commit()
    later = now + timedelta(days=2, minutes=1)
    make_admin(session, later)
    client = admin_app(settings, later).test_client()
    sign_in(client)
    page = client.get(f"/admin/people/{ada.id}").get_data(as_text=True)
    assert "<td>invite-cancel</td><td>Cancelled: Workshop</td>" in page
    assert "<td>invite-update</td><td>New time for step 2: Workshop</td>" in page


def test_the_page_counts_matches_up_to_the_cap_then_says_more_than(
    session, settings, now, monkeypatch
):
    """A million enrolments are not counted on every page view."""
    journey = make_journey(session)
    for i in range(3):
        make_enrolment(session, make_person(session, f"p{i}@example.com"), journey, now.date())
    session.commit()
    assert lookup.count(session, lookup.EnrolmentFilter(), now, cap=2) == 3
    assert lookup.count(session, lookup.EnrolmentFilter(q="p1@"), now, cap=2) == 1
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    monkeypatch.setattr(lookup, "COUNT_CAP", 2)
    assert "More than 2 enrolments." in client.get("/admin/enrolments").get_data(as_text=True)
    page = client.get("/admin/enrolments?q=p1@").get_data(as_text=True)
    assert "1 enrolment matches." in page
