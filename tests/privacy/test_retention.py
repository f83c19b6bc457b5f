"""Stored mail is pruned after the retention period; the ledger rows stay."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, func, select

from nudger.models import CapturedMail, Outbox, TickRun
from nudger.privacy import retention
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person
from tests.privacykit import day, send_due


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

    pruned = retention.prune_mail(session, now, 180)

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
    assert retention.prune_mail(session, now, 180).total == 0


def test_retention_of_zero_days_keeps_everything(session, settings):
    now = day(10, 9)
    old_and_new_mail(session, settings, now)
    stored = session.exec(select(func.count()).select_from(CapturedMail)).one()
    assert retention.prune_mail(session, now, 0).total == 0
    assert session.exec(select(func.count()).select_from(CapturedMail)).one() == stored


def test_retention_works_in_bounded_batches(session, settings, monkeypatch):
    now = day(10, 9)
    old_ids, _ = old_and_new_mail(session, settings, now)
    monkeypatch.setattr(retention, "PRUNE_BATCH", 1)

    first = retention.prune_mail(session, now, 180, max_batches=1)
    assert (first.stored_copies, first.subjects) == (1, 1)
    rest = retention.prune_mail(session, now, 180)
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


def test_history_past_retention_goes_in_batches_and_a_digest_an_event_names_stays(
    session, settings, monkeypatch
):
    """Ledger rows and link hits do not grow without end; nothing still in play is deleted."""
    from nudger.models import EnrolmentStep, EscalationEvent, LinkHit

    now = day(10, 9)
    old, recent = now - timedelta(days=800), now - timedelta(days=5)
    journey = make_journey(session)
    enrolment = make_enrolment(session, make_person(session), journey, old.date())
    rows = {
        "old-sent": Outbox(dedupe_key="a", kind="step", to_email="a@example.com", state="sent",
                           created_at=old),
        "old-failed": Outbox(dedupe_key="b", kind="step", to_email="a@example.com",
                             state="failed", created_at=old),
        "old-pending": Outbox(dedupe_key="c", kind="step", to_email="a@example.com",
                              state="pending", created_at=old),
        "old-digest": Outbox(dedupe_key="d", kind="digest", to_email="m@example.com",
                             state="sent", created_at=old),
        "recent": Outbox(dedupe_key="e", kind="step", to_email="a@example.com", state="sent",
                         created_at=recent),
    }  # fmt: skip
    session.add_all(rows.values())
    session.add_all(LinkHit(at=at, purpose="step", subject_id=1, method="GET")
                    for at in (old, old, old, recent))  # fmt: skip
    session.flush()
    step = EnrolmentStep(enrolment_id=enrolment.id, step_id=1, status="sent", sent_at=old)
    session.add(step)
    session.flush()
    digest_id = rows["old-digest"].id
    session.add(EscalationEvent(enrolment_step_id=step.id, enrolment_id=enrolment.id,
                                level="manager", recipient_email="m@example.com",
                                created_at=old, digest_outbox_id=digest_id))  # fmt: skip
    session.commit()
    monkeypatch.setattr(retention, "PRUNE_BATCH", 1)

    first = retention.prune_history(session, now, 730, max_batches=1)
    rest = retention.prune_history(session, now, 730)

    assert (first.ledger_rows, first.link_hits) == (1, 1)  # one batch of one, per table
    assert (rest.ledger_rows, rest.link_hits) == (1, 2)
    kept = set(session.exec(select(Outbox.dedupe_key)))
    assert kept == {"c", "d", "e"}  # still pending; named by an event; recent
    assert [h.at for h in session.exec(select(LinkHit))] == [recent]
    assert retention.prune_history(session, now, 0).total == 0


def test_history_past_retention_goes_with_the_mail_received_about_it(session, settings):
    """A reply or bounce to an old email keeps its row (what was done); the email goes."""
    from nudger.models import InboundMessage

    now = day(10, 9)
    old = now - timedelta(days=800)
    sent = Outbox(dedupe_key="a", kind="step", to_email="a@example.com", state="sent",
                  created_at=old)  # fmt: skip
    session.add(sent)
    session.flush()
    session.add(InboundMessage(message_key="<r@example.com>", raw=b"", kind="reply", state="done",
                               outcome="completed 'Read'", outbox_id=sent.id,
                               received_at=old))  # fmt: skip
    session.commit()

    pruned = retention.prune_history(session, now, 730)

    assert pruned.ledger_rows == 1
    session.expire_all()
    assert session.exec(select(Outbox)).all() == []
    (reply,) = session.exec(select(InboundMessage)).all()
    assert (reply.outbox_id, reply.outcome) == (None, "completed 'Read'")
