"""Pause, resume and withdraw: pending steps move by the pause, invites follow."""

import json
from datetime import UTC, date, datetime, timedelta

from click.testing import CliRunner
from sqlmodel import select

from nudger.cli import main
from nudger.enrolments import changes as enrolments
from nudger.models import AuditLog, CapturedMail, EnrolmentStep, Outbox, Step
from nudger.outbox.sending import send_batch
from nudger.progress import complete_step
from nudger.tick.run import stale_pending, tick
from tests.factories import make_enrolment, make_journey, make_person

WORKSHOP = [
    {"key": "read", "day": 0, "kind": "read", "title": "Read it", "minutes": 15},
    {"key": "workshop", "day": 0, "kind": "workshop", "title": "Workshop", "minutes": 90,
     "at": "2027-03-10T14:00"},
    {"key": "practise", "day": 0, "kind": "practice", "title": "Practise", "minutes": 20,
     "at": "2027-03-12T11:00"},
    {"key": "reflect", "day": 6, "kind": "reflect", "title": "Reflect", "minutes": 10},
]  # fmt: skip


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def run(session, settings, now):
    return tick(session, settings, now, enqueue=False)


def step_sends(session, enrolment) -> dict[str, datetime]:
    rows = session.exec(
        select(Step.key, EnrolmentStep.sent_at)
        .join(Step, Step.id == EnrolmentStep.step_id)
        .where(EnrolmentStep.enrolment_id == enrolment.id)
    ).all()
    return dict(rows)


def tick_daily(session, settings, first: datetime, days: int) -> None:
    """Tick every 30 minutes for `days` days from `first`."""
    for half_hours in range(days * 48):
        run(session, settings, first + timedelta(minutes=30 * half_hours))


def row(session, enrolment, key: str) -> EnrolmentStep:
    return session.exec(
        select(EnrolmentStep)
        .join(Step, Step.id == EnrolmentStep.step_id)
        .where(EnrolmentStep.enrolment_id == enrolment.id, Step.key == key)
    ).one()


def invite_messages(session) -> list[tuple[str, str, list[int]]]:
    kinds = ["invite-update", "invite-cancel"]
    rows = session.exec(select(Outbox).where(Outbox.kind.in_(kinds)).order_by(Outbox.id))
    return [(r.kind, r.dedupe_key, r.payload["enrolment_step_ids"]) for r in rows]


def test_resume_moves_pending_steps_by_the_working_days_paused(session, settings):
    journey = make_journey(session)  # days 0, 2 and 5
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    run(session, settings, utc(2027, 3, 1, 9))
    assert enrolments.pause(session, enrolment, utc(2027, 3, 2, 12))  # Tuesday noon
    session.commit()
    tick_daily(session, settings, utc(2027, 3, 2, 12), 3)  # nothing while paused
    assert enrolments.resume(session, enrolment, utc(2027, 3, 5, 12))  # Friday noon
    session.commit()
    # Wednesday, Thursday and Friday 09:00 passed during the pause: three working days.
    assert enrolment.shift_days == 3
    tick_daily(session, settings, utc(2027, 3, 5, 12), 8)
    assert step_sends(session, enrolment) == {
        "read": utc(2027, 3, 1, 9),
        "discuss": utc(2027, 3, 8, 9),  # was Wednesday 3rd
        "reflect": utc(2027, 3, 11, 9),  # was Monday 8th
    }


def test_a_pause_between_two_send_times_moves_nothing(session, settings):
    journey = make_journey(session)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    run(session, settings, utc(2027, 3, 1, 9))
    enrolments.pause(session, enrolment, utc(2027, 3, 1, 10))
    enrolments.resume(session, enrolment, utc(2027, 3, 2, 8))
    session.commit()
    assert enrolment.shift_days == 0
    tick_daily(session, settings, utc(2027, 3, 2, 8), 2)
    assert step_sends(session, enrolment)["discuss"] == utc(2027, 3, 3, 9)


def test_a_pause_over_good_friday_and_the_clock_change_counts_working_days(session, settings):
    journey = make_journey(session)
    person = make_person(session, country="GB-ENG")
    enrolment = make_enrolment(session, person, journey, date(2027, 3, 22))
    run(session, settings, utc(2027, 3, 22, 9))
    enrolments.pause(session, enrolment, utc(2027, 3, 23, 12))  # Tuesday
    # Resumed Wednesday 31 March, 12:00 BST. Passed: Wed 24, Thu 25, (Good
    # Friday 26), (the weekend, clocks forward), (Easter Monday 29), Tue 30, Wed 31.
    enrolments.resume(session, enrolment, utc(2027, 3, 31, 11))
    session.commit()
    assert enrolment.shift_days == 4
    tick_daily(session, settings, utc(2027, 3, 31, 11), 3)
    # "discuss" was day 2 (Wednesday 24th); four working days later is Thursday 1 April, 09:00 BST.
    assert step_sends(session, enrolment)["discuss"] == utc(2027, 4, 1, 8)


def test_a_pause_across_the_us_clock_change_keeps_nine_local(session, settings):
    journey = make_journey(session)
    person = make_person(session, timezone="America/Los_Angeles", country="US")
    enrolment = make_enrolment(session, person, journey, date(2027, 3, 10))
    run(session, settings, utc(2027, 3, 10, 17))  # Wednesday 09:00 PST
    enrolments.pause(session, enrolment, utc(2027, 3, 11, 18))  # Thursday 10:00 PST
    enrolments.resume(session, enrolment, utc(2027, 3, 16, 17))  # Tuesday 10:00 PDT
    session.commit()
    assert enrolment.shift_days == 3  # Friday 12, Monday 15, Tuesday 16
    tick_daily(session, settings, utc(2027, 3, 16, 17), 3)
    # "discuss" was Friday 12th (day 2); three working days later: Wednesday 17th, 09:00 PDT.
    assert step_sends(session, enrolment)["discuss"] == utc(2027, 3, 17, 16)


def test_resume_moves_due_dates_of_open_steps_by_the_pause(session, settings):
    journey = make_journey(session, due_after=2)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    run(session, settings, utc(2027, 3, 1, 9))
    assert row(session, enrolment, "read").due_at == utc(2027, 3, 3, 9)
    enrolments.pause(session, enrolment, utc(2027, 3, 1, 12))
    enrolments.resume(session, enrolment, utc(2027, 3, 4, 12))  # Tue, Wed, Thu passed
    session.commit()
    assert row(session, enrolment, "read").due_at == utc(2027, 3, 8, 9)


def test_pausing_twice_or_resuming_an_active_enrolment_changes_nothing(session, now):
    journey = make_journey(session)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    assert not enrolments.resume(session, enrolment, now)
    assert enrolments.pause(session, enrolment, now)
    assert not enrolments.pause(session, enrolment, now + timedelta(days=1))
    assert enrolment.paused_at == now


def test_withdraw_cancels_open_steps_and_invites_still_ahead(session, settings):
    journey = make_journey(session, steps=WORKSHOP)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    run(session, settings, utc(2027, 3, 1, 9))
    practise = row(session, enrolment, "practise")
    complete_step(session, practise.id, utc(2027, 3, 1, 12))
    assert enrolments.withdraw(session, enrolment, utc(2027, 3, 2, 9))
    session.commit()
    workshop = row(session, enrolment, "workshop")
    # "read"'s invite (Monday 10:00) is past; "practise" is done: only the workshop is called off.
    assert invite_messages(session) == [
        ("invite-cancel", f"invite-cancel:{enrolment.id}:{workshop.id}.1", [workshop.id])
    ]
    assert workshop.invite_sequence == 1
    statuses = {k: row(session, enrolment, k).status for k in ("read", "workshop", "practise")}
    assert statuses == {"read": "cancelled", "workshop": "cancelled", "practise": "done"}
    assert enrolment.next_action_at is None
    assert not enrolments.withdraw(session, enrolment, utc(2027, 3, 3, 9))
    assert len(invite_messages(session)) == 1


def test_invite_messages_wait_for_the_next_tick_to_be_enqueued(session, settings):
    journey = make_journey(session, steps=WORKSHOP)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    run(session, settings, utc(2027, 3, 1, 9))
    enrolments.withdraw(session, enrolment, utc(2027, 3, 2, 9))
    session.commit()
    cancel = session.exec(select(Outbox).where(Outbox.kind == "invite-cancel")).one()
    assert (cancel.state, cancel.enqueued_at) == ("pending", None)
    assert cancel.to_email == "ada@example.com"
    assert cancel.id in stale_pending(session, utc(2027, 3, 2, 9, 1))


def test_pause_cancels_invites_ahead_and_resume_sends_them_again(session, settings):
    journey = make_journey(session, steps=WORKSHOP)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    run(session, settings, utc(2027, 3, 1, 9))
    workshop, practise = row(session, enrolment, "workshop"), row(session, enrolment, "practise")
    enrolments.pause(session, enrolment, utc(2027, 3, 2, 9))
    enrolments.resume(session, enrolment, utc(2027, 3, 4, 9))  # both events still ahead
    session.commit()
    ids = sorted([workshop.id, practise.id])
    marks = ",".join(f"{i}.{{}}" for i in ids)
    assert invite_messages(session) == [
        ("invite-cancel", f"invite-cancel:{enrolment.id}:{marks.format(1, 1)}", ids),
        ("invite-update", f"invite-update:{enrolment.id}:{marks.format(2, 2)}", ids),
    ]
    enrolments.pause(session, enrolment, utc(2027, 3, 11, 9))  # the workshop is over
    enrolments.resume(session, enrolment, utc(2027, 3, 15, 9))  # so is the practice
    session.commit()
    assert [m[2] for m in invite_messages(session)][2:] == [[practise.id]]
    assert invite_messages(session)[2][0] == "invite-cancel"


def test_resume_is_audited_with_the_shift(session, settings):
    journey = make_journey(session)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    enrolments.pause(session, enrolment, utc(2027, 3, 1, 8), actor="admin@example.com")
    enrolments.resume(session, enrolment, utc(2027, 3, 2, 12), actor="admin@example.com")
    session.commit()
    audit = session.exec(select(AuditLog).where(AuditLog.action == "enrolment.resume")).one()
    assert (audit.actor, audit.detail["shift_days"]) == ("admin@example.com", 2)


def test_cli_pause_resume_and_withdraw(session, settings, tmp_path):
    journey = make_journey(session)
    make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    env = {
        "NUDGER_DATABASE_URL": settings.database_url,
        "NUDGER_INSTANCE_PATH": str(tmp_path),
        "NUDGER_SECRET_KEY": settings.secret_key,
    }
    runner = CliRunner()

    def cli(*args: str) -> dict:
        result = runner.invoke(main, [*args, "--json"], env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    assert cli("pause", "ADA@example.com") == {
        "email": "ADA@example.com",
        "changed": True,
        "status": "paused",
    }
    assert cli("pause", "ada@example.com")["changed"] is False
    assert cli("resume", "ada@example.com")["status"] == "active"
    assert cli("withdraw", "ada@example.com")["status"] == "withdrawn"
    missing = runner.invoke(main, ["pause", "nobody@example.com"], env=env)
    assert missing.exit_code == 1
    assert "no enrolment for nobody@example.com" in missing.output


def test_pausing_before_the_start_delays_it_by_the_journey_days_missed(session, settings):
    journey = make_journey(session)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 8))
    enrolments.pause(session, enrolment, utc(2027, 3, 1, 12))  # a week before the start
    enrolments.resume(session, enrolment, utc(2027, 3, 9, 12))  # Monday 8 and Tuesday 9 missed
    session.commit()
    assert enrolment.shift_days == 2
    tick_daily(session, settings, utc(2027, 3, 9, 12), 2)
    assert step_sends(session, enrolment) == {"read": utc(2027, 3, 10, 9)}


def send_pending(session, settings, now) -> None:
    """Send every pending row due at `now` as the worker would, into the capture outbox."""
    ids = session.exec(
        select(Outbox.id).where(Outbox.state == "pending", Outbox.next_attempt_at <= now)
    ).all()
    send_batch(session.get_bind(), settings, list(ids), now)
    session.expire_all()


def captured_invites(session) -> list[tuple[str, str]]:
    kinds = ["invite-update", "invite-cancel"]
    rows = session.exec(select(CapturedMail).where(CapturedMail.kind.in_(kinds)))
    return [(m.kind, m.subject) for m in rows]


def test_pause_then_resume_at_once_sends_no_calendar_email(session, settings):
    journey = make_journey(session, steps=WORKSHOP)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    run(session, settings, utc(2027, 3, 1, 9))
    send_pending(session, settings, utc(2027, 3, 1, 9))
    enrolments.pause(session, enrolment, utc(2027, 3, 2, 10))
    session.commit()
    enrolments.resume(session, enrolment, utc(2027, 3, 2, 10, 1))  # nothing shifted
    session.commit()
    run(session, settings, utc(2027, 3, 2, 10, 2))
    send_pending(session, settings, utc(2027, 3, 2, 10, 2))
    assert captured_invites(session) == []
    cancel = session.exec(select(Outbox).where(Outbox.kind == "invite-cancel")).one()
    assert cancel.state == "cancelled"


def test_a_pause_whose_cancel_went_out_restores_the_invites_with_their_subjects(session, settings):
    journey = make_journey(session, steps=WORKSHOP)
    enrolment = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    run(session, settings, utc(2027, 3, 1, 9))
    enrolments.pause(session, enrolment, utc(2027, 3, 2, 10))
    session.commit()
    send_pending(session, settings, utc(2027, 3, 2, 10, 1))  # the cancel goes out
    enrolments.resume(session, enrolment, utc(2027, 3, 2, 10, 5))
    session.commit()
    send_pending(session, settings, utc(2027, 3, 2, 10, 6))
    assert captured_invites(session) == [
        ("invite-cancel", "Cancelled: 2 calendar holds for Giving Feedback"),
        ("invite-update", "New times for 2 steps in Giving Feedback"),
    ]
    rows = session.exec(select(Outbox).where(Outbox.kind.like("invite-%"))).all()
    assert [r.subject for r in rows] == [s for _, s in captured_invites(session)]
