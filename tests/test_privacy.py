"""Erasing a person's personal data, and pruning stored mail after the retention period."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, func, select

from nudger import privacy
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
    TickRun,
)
from nudger.outbox.sending import send_batch
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person
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
    privacy.erase_person(session, team["zoe"].id, actor="admin@example.com", now=ERASED_AT)

    assert cells_mentioning(session, ZOE) == []


def test_erasure_keeps_the_dashboard_and_report_counts(session, team):
    before = counts(session, team["journey"], ERASED_AT)

    privacy.erase_person(session, team["zoe"].id, actor="admin@example.com", now=ERASED_AT)

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

    done = privacy.erase_person(session, zoe.id, actor="admin@example.com", now=ERASED_AT)
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

    done = privacy.erase_person(session, zoe.id, actor="cli", now=ERASED_AT)
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
    privacy.erase_person(session, zoe.id, actor="cli", now=ERASED_AT)
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
    done = privacy.erase_person(session, team["zoe"].id, actor="cli", now=ERASED_AT)
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
    privacy.erase_person(session, team["zoe"].id, actor="cli", now=ERASED_AT)
    session.expire_all()
    assert session.get(Person, team["kit"].id).manager_id == team["zoe"].id


def test_the_audit_entry_of_the_erasure_says_who_and_names_no_one(session, team):
    zoe = team["zoe"]
    privacy.erase_person(session, zoe.id, actor="admin@example.com", now=ERASED_AT)
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
    privacy.erase_person(session, team["zoe"].id, actor="cli", now=ERASED_AT)
    assert session.exec(open_events).one() == 0


def test_erasing_twice_changes_nothing_the_second_time(session, team):
    first = privacy.erase_person(session, team["zoe"].id, actor="cli", now=ERASED_AT)
    second = privacy.erase_person(session, team["zoe"].id, actor="cli", now=day(17, 10))
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
    plan = privacy.describe_erasure(session, team["zoe"].id)
    session.commit()
    assert (plan.email, plan.name, plan.notes, plan.reports) == (ZOE_EMAIL, ZOE_NAME, 1, 1)
    assert plan.mail_cancelled >= 1 and plan.link_hits == 3
    assert cells_mentioning(session, ZOE) == before


# Retention


def old_and_new_mail(session: Session, settings, now: datetime) -> tuple[list[int], list[int]]:
    """Mail sent 200 days before `now` and mail sent yesterday; return their outbox ids."""
    journey = make_journey(session)
    ids: list[list[int]] = []
    settings = dataclasses.replace(settings, retain_mail_days=0)  # these ticks prune nothing
    for email, ago in (("old@example.com", 200), ("new@example.com", 1)):
        person = make_person(session, email, email.split("@")[0].title())
        start = (now - timedelta(days=ago)).date()
        start -= timedelta(days=start.weekday())  # that week's Monday
        at = datetime.combine(start, datetime.min.time(), UTC) + timedelta(hours=10)
        make_enrolment(session, person, journey, start)
        tick(session, settings, at, enqueue=False)
        send_due(session, settings, at + timedelta(minutes=5))
        # The capture transport stamps the wall clock; these were captured when sent.
        session.execute(
            update(CapturedMail).where(CapturedMail.to_email.contains(email)).values(at=at)
        )
        session.commit()
        ids.append([i for i in session.exec(select(Outbox.id)) if not any(i in s for s in ids)])
    return ids[0], ids[1]


def test_retention_prunes_old_bodies_and_keeps_the_ledger_rows(session, settings):
    now = day(10, 9)
    old_ids, new_ids = old_and_new_mail(session, settings, now)
    assert old_ids and new_ids
    ledger = {
        r.id: (r.state, r.kind, r.person_id, r.to_email, r.sent_at, r.created_at, r.last_error)
        for r in session.exec(select(Outbox))
    }

    pruned = privacy.prune_mail(session, now, 180)

    session.expire_all()
    rows = {r.id: r for r in session.exec(select(Outbox))}
    assert {
        i: (r.state, r.kind, r.person_id, r.to_email, r.sent_at, r.created_at, r.last_error)
        for i, r in rows.items()
    } == ledger
    assert all(rows[i].subject is None for i in old_ids)
    assert all(rows[i].subject for i in new_ids)
    kept = set(session.exec(select(CapturedMail.message_id)))
    assert kept == {rows[i].message_id for i in new_ids}
    assert (pruned.stored_copies, pruned.subjects) == (len(old_ids), len(old_ids))
    assert privacy.prune_mail(session, now, 180).total == 0


def test_retention_of_zero_days_keeps_everything(session, settings):
    now = day(10, 9)
    old_and_new_mail(session, settings, now)
    stored = session.exec(select(func.count()).select_from(CapturedMail)).one()
    assert privacy.prune_mail(session, now, 0).total == 0
    assert session.exec(select(func.count()).select_from(CapturedMail)).one() == stored


def test_retention_works_in_bounded_batches(session, settings, monkeypatch):
    now = day(10, 9)
    old_ids, _ = old_and_new_mail(session, settings, now)
    monkeypatch.setattr(privacy, "PRUNE_BATCH", 1)

    first = privacy.prune_mail(session, now, 180, max_batches=1)
    assert (first.stored_copies, first.subjects) == (1, 1)
    rest = privacy.prune_mail(session, now, 180)
    assert rest.stored_copies == len(old_ids) - 1


def test_the_tick_prunes_at_most_once_an_hour(session, settings):
    now = day(10, 9, 0)
    old_ids, _ = old_and_new_mail(session, settings, now)
    session.execute(update(TickRun).values(now=now - timedelta(minutes=30)))  # last hour's
    session.commit()

    assert tick(session, settings, now, enqueue=False).get("pruned") == 2 * len(old_ids)

    # Within the same hour, the tick does not prune again.
    session.add(CapturedMail(at=now - timedelta(days=365), to_email="x@example.com", raw=b"x"))
    session.commit()
    assert "pruned" not in tick(session, settings, now + timedelta(minutes=1), enqueue=False)
    assert tick(session, settings, now + timedelta(hours=1), enqueue=False)["pruned"] == 1
