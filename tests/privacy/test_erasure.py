"""Erasing a person's personal data: gone everywhere, the counts kept, nothing sent again."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import update
from sqlmodel import Session, func, select

from nudger.insights.dashboard import journey_stats, overview
from nudger.insights.reports import progress
from nudger.models import (
    AuditLog,
    CapturedMail,
    Enrolment,
    EnrolmentStep,
    EscalationEvent,
    LinkHit,
    Outbox,
    Person,
)
from nudger.outbox.sending import send_batch
from nudger.privacy import erasure
from nudger.tick.run import tick
from tests.pagekit import sent_steps
from tests.privacykit import (
    ADA,
    ERASED_AT,
    ZOE,
    ZOE_EMAIL,
    ZOE_NAME,
    a_team_with_history,
    cells_mentioning,
    day,
    send_due,
)


def counts(session: Session, journey, now: datetime) -> tuple:
    """What the dashboard and `nudger report` show, without who."""
    session.expire_all()
    stats = overview(session, now)
    detail = journey_stats(session, journey, now)
    report = sorted(
        (r["journey"], r["status"], json.dumps(r["steps"])) for r in progress(session, now)
    )
    return stats, detail, report


@pytest.fixture
def team(session, settings):
    return a_team_with_history(session, settings)


def test_the_history_names_her_everywhere_before_she_is_erased(session, team):
    tables = {t for t, _, _ in cells_mentioning(session, ZOE)}
    # The scenario reaches every place personal data lives, or the test below proves little.
    assert tables >= {"person", "enrolmentstep", "outbox", "capturedmail", "escalationevent",
                      "auditlog"}  # fmt: skip


def test_after_erasure_no_column_anywhere_holds_her_address_or_name(session, team):
    erasure.erase_person(session, team["zoe"].id, actor="admin@example.com", now=ERASED_AT)

    assert cells_mentioning(session, ZOE) == []


def test_erasure_keeps_the_dashboard_and_report_counts(session, team):
    before = counts(session, team["journey"], ERASED_AT)

    erasure.erase_person(session, team["zoe"].id, actor="admin@example.com", now=ERASED_AT)

    assert counts(session, team["journey"], ERASED_AT) == before


def test_erasure_removes_notes_link_details_and_stored_mail_but_keeps_the_rows(session, team):
    zoe, enrolment = team["zoe"], team["enrolments"][ZOE_EMAIL]
    steps_before = session.exec(
        select(func.count())
        .select_from(EnrolmentStep)
        .where(EnrolmentStep.enrolment_id == enrolment.id)
    ).one()
    mail_before = session.exec(
        select(func.count()).select_from(Outbox).where(Outbox.person_id == zoe.id)
    ).one()

    done = erasure.erase_person(session, zoe.id, actor="admin@example.com", now=ERASED_AT)
    session.expire_all()

    person = session.get(Person, zoe.id)
    assert person.name == "" and person.email == done.placeholder
    assert person.email.startswith("erased-") and person.email.endswith("@invalid")
    assert person.erased_at == ERASED_AT
    notes = session.exec(
        select(EnrolmentStep.note).where(EnrolmentStep.enrolment_id == enrolment.id)
    ).all()
    assert len(notes) == steps_before and set(notes) == {None}
    assert done.notes == 1
    hits = session.exec(select(LinkHit)).all()
    assert len(hits) == 3 and {(h.ip, h.user_agent) for h in hits} == {("", "")}
    rows = session.exec(select(Outbox).where(Outbox.person_id == zoe.id)).all()
    assert len(rows) == mail_before
    assert {r.to_email for r in rows} == {done.placeholder}
    assert done.stored_copies > 0 and done.digests_about_them > 0
    # Ada's mail is not touched.
    assert (
        session.exec(
            select(func.count())
            .select_from(CapturedMail)
            .where(CapturedMail.to_email.contains(ADA))
        ).one()
        > 0
    )


def test_pending_mail_to_her_is_cancelled_and_nothing_reaches_her_afterwards(
    session, settings, team
):
    zoe = team["zoe"]
    pending = session.exec(
        select(Outbox.id).where(Outbox.person_id == zoe.id, Outbox.state == "pending")
    ).all()
    assert pending, "the scenario leaves an email to her waiting"

    done = erasure.erase_person(session, zoe.id, actor="cli", now=ERASED_AT)
    assert done.mail_cancelled == len(pending)
    session.expire_all()
    assert {session.get(Outbox, i).state for i in pending} == {"cancelled"}
    # Bea's digest, waiting with Zoë in it, goes without her (here: with nothing left).
    send_due(session, settings, day(16, 11))
    assert (
        session.exec(
            select(func.count()).select_from(CapturedMail).where(CapturedMail.at > ERASED_AT)
        ).one()
        == 0
    )

    # Two more weeks: Kit's overdue steps still escalate to his (erased) manager.
    for n in (17, 18, 19, 22, 23, 24, 25, 26):
        tick(session, settings, day(n), enqueue=False)
        send_due(session, settings, day(n, 9, 30))
    to_her = session.exec(
        select(Outbox).where(Outbox.to_email == done.placeholder, Outbox.state == "sent")
    ).all()
    assert [r for r in to_her if r.created_at > ERASED_AT] == []
    assert (
        session.exec(
            select(func.count())
            .select_from(CapturedMail)
            .where(CapturedMail.to_email.contains("@invalid"))
        ).one()
        == 0
    )
    assert cells_mentioning(session, ZOE) == []


def test_a_journey_edit_that_reschedules_her_sends_her_nothing(session, settings, team):
    zoe, enrolment = team["zoe"], team["enrolments"][ZOE_EMAIL]
    erasure.erase_person(session, zoe.id, actor="cli", now=ERASED_AT)
    steps_before = len(sent_steps(session, enrolment))
    # What `journeys sync` does to live enrolments: look at it again at the next tick.
    session.execute(
        update(Enrolment).where(Enrolment.id == enrolment.id).values(next_action_at=day(16))
    )
    session.commit()

    tick(session, settings, day(19), enqueue=False)

    session.expire_all()
    assert len(sent_steps(session, enrolment)) == steps_before
    assert session.get(Enrolment, enrolment.id).next_action_at is None
    assert (
        session.exec(
            select(func.count())
            .select_from(Outbox)
            .where(Outbox.enrolment_id == enrolment.id, Outbox.created_at > ERASED_AT)
        ).one()
        == 0
    )


def test_mail_to_a_placeholder_address_is_cancelled_at_sending(session, settings, team):
    done = erasure.erase_person(session, team["zoe"].id, actor="cli", now=ERASED_AT)
    row = Outbox(dedupe_key="x", kind="step", to_email=done.placeholder,
                 payload={"enrolment_step_ids": []}, next_attempt_at=day(16))  # fmt: skip
    session.add(row)
    session.commit()

    counts = send_batch(session.get_bind(), settings, [row.id], day(16, 11))

    session.expire_all()
    assert counts.get("sent", 0) == 0 and counts["cancelled"] == 1
    assert session.get(Outbox, row.id).state == "cancelled"
    assert "erased" in session.get(Outbox, row.id).last_error


def test_her_reports_keep_a_manager_link_to_the_anonymised_record(session, team):
    erasure.erase_person(session, team["zoe"].id, actor="cli", now=ERASED_AT)
    session.expire_all()
    assert session.get(Person, team["kit"].id).manager_id == team["zoe"].id


def test_the_audit_entry_of_the_erasure_says_who_and_names_no_one(session, team):
    zoe = team["zoe"]
    erasure.erase_person(session, zoe.id, actor="admin@example.com", now=ERASED_AT)
    entry = session.exec(select(AuditLog).where(AuditLog.action == "person.erase")).one()
    assert (entry.actor, entry.subject_type, entry.subject_id) == (
        "admin@example.com",
        "person",
        zoe.id,
    )
    assert entry.detail["notes"] == 1
    assert all(isinstance(v, int) for v in entry.detail.values())


def test_open_escalations_about_her_are_resolved_so_no_digest_talks_about_her(session, team):
    enrolment = team["enrolments"][ZOE_EMAIL]
    open_events = (
        select(func.count())
        .select_from(EscalationEvent)
        .where(EscalationEvent.enrolment_id == enrolment.id, EscalationEvent.resolved_at.is_(None))
    )
    assert session.exec(open_events).one() > 0
    erasure.erase_person(session, team["zoe"].id, actor="cli", now=ERASED_AT)
    assert session.exec(open_events).one() == 0


def test_erasing_twice_changes_nothing_the_second_time(session, team):
    first = erasure.erase_person(session, team["zoe"].id, actor="cli", now=ERASED_AT)
    second = erasure.erase_person(session, team["zoe"].id, actor="cli", now=day(17, 10))
    assert second.already_erased and second.erased_at == ERASED_AT
    assert session.get(Person, team["zoe"].id).email == first.placeholder
    assert (
        session.exec(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "person.erase")
        ).one()
        == 1
    )


def test_describing_an_erasure_changes_nothing(session, team):
    before = cells_mentioning(session, ZOE)
    plan = erasure.describe_erasure(session, team["zoe"].id)
    session.commit()
    assert (plan.email, plan.name, plan.notes, plan.reports) == (ZOE_EMAIL, ZOE_NAME, 1, 1)
    assert plan.mail_cancelled >= 1 and plan.link_hits == 3
    assert cells_mentioning(session, ZOE) == before
