"""Editing a journey that people are on: shown first, then applied by one policy."""

import json
from datetime import UTC, date, datetime, timedelta

import yaml
from click.testing import CliRunner
from sqlmodel import func, select

from nudger.cli import main
from nudger.enrolments import changes as enrolments
from nudger.enrolments.journey_edits import apply_sync, plan_sync
from nudger.insights.reports import progress
from nudger.journeys.spec import JourneySpec
from nudger.models import EnrolmentStep, Journey, Outbox, Step
from nudger.progress import complete_step
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_person

A = {"key": "a", "day": 0, "kind": "read", "title": "Read A", "minutes": 15}
B = {"key": "b", "day": 5, "kind": "discuss", "title": "Discuss B", "minutes": 20}
C = {"key": "c", "day": 10, "kind": "reflect", "title": "Reflect C"}
X = {"key": "x", "day": 3, "kind": "practice", "title": "Practise X"}
WORKSHOP = {"key": "workshop", "day": 0, "kind": "workshop", "title": "Workshop", "minutes": 90,
            "at": "2027-03-17T14:00"}  # fmt: skip


MARCH_1 = date(2027, 3, 1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def spec(steps: list[dict], **schedule) -> JourneySpec:
    return JourneySpec.model_validate(
        {
            "slug": "feedback",
            "title": "Giving feedback",
            "goal": ["Gives feedback within two days"],
            "schedule": {"send_time": "09:00", **schedule},
            "steps": steps,
        }
    )


def setup(session, settings, steps=(A, B, C)) -> tuple:
    """Load the journey; enrol Ada (from 1 March) and Bo (from 8 March); tick to 9 March."""
    apply_sync(session, spec(list(steps)), utc(2027, 2, 1))
    session.commit()
    journey = session.exec(select(Journey)).one()
    ada = make_enrolment(session, make_person(session, "ada@example.com"), journey, MARCH_1)
    bo = make_enrolment(session, make_person(session, "bo@example.com"), journey, date(2027, 3, 8))
    tick_until(session, settings, utc(2027, 3, 1), utc(2027, 3, 9, 10))
    return journey, ada, bo


def tick_until(session, settings, start: datetime, end: datetime) -> None:
    """Tick every three hours from `start` (on the hour: 09:00 is always one of them)."""
    now = start
    while now <= end:
        tick(session, settings, now, enqueue=False)
        now += timedelta(hours=3)


def rows(session, enrolment) -> dict[str, tuple[str, datetime | None]]:
    found = session.exec(
        select(Step.key, EnrolmentStep.status, EnrolmentStep.sent_at)
        .join(Step, Step.id == EnrolmentStep.step_id)
        .where(EnrolmentStep.enrolment_id == enrolment.id)
    ).all()
    return {key: (status, sent_at) for key, status, sent_at in found}


def effects(change) -> dict[str, dict]:
    return {
        e.key: {k: v for k, v in e.__dict__.items() if v and k not in ("key", "day", "old_day")}
        for e in change.effects
    }


def edited() -> JourneySpec:
    """Add x (day 3), move b to day 6, remove c, reword a."""
    return spec([{**A, "title": "Read A, again"}, {**B, "day": 6}, X])


def test_dry_run_shows_what_changes_for_live_enrolments_and_writes_nothing(session, settings):
    journey, ada, bo = setup(session, settings)
    assert set(rows(session, ada)) == {"a", "b"} and set(rows(session, bo)) == {"a"}
    before = session.exec(select(func.count()).select_from(EnrolmentStep)).one()
    change = plan_sync(session, edited(), utc(2027, 3, 9, 10))
    assert (change.added, change.moved, change.removed, change.reworded) == (
        ["x"],
        ["b"],
        ["c"],
        ["a"],
    )
    assert change.live_enrolments == 2
    assert effects(change) == {
        # Ada's day 3 was 4 March: past. Bo's is 11 March: ahead.
        "x": {"change": "added", "scheduled": 1, "skipped": 1},
        "b": {"change": "moved", "kept": 1, "scheduled": 1},
        "c": {"change": "removed", "cancelled": 2},
        "a": {"change": "reworded", "kept": 2},
    }
    text = change.describe()
    added = "added x (day 3): scheduled for 1 person who has not reached it; skipped for 1 person"
    moved = "moved b (day 5 -> 6): already sent to 1 person: stays as it was; scheduled for 1"
    assert added in text and moved in text
    assert "removed c: cancelled for 2 people who had not received it" in text
    session.rollback()
    assert session.exec(select(func.count()).select_from(EnrolmentStep)).one() == before
    assert session.exec(select(Step.key).where(Step.journey_id == journey.id)).all() == [
        "a",
        "b",
        "c",
    ]


def test_sync_never_sends_a_step_late_or_twice(session, settings):
    _, ada, bo = setup(session, settings)
    apply_sync(session, edited(), utc(2027, 3, 9, 10))
    session.commit()
    tick_until(session, settings, utc(2027, 3, 9, 12), utc(2027, 4, 2))
    assert rows(session, ada) == {
        "a": ("sent", utc(2027, 3, 1, 9)),
        "b": ("sent", utc(2027, 3, 8, 9)),
        "x": ("cancelled", None),  # skipped: its day had passed when it was added
    }
    assert rows(session, bo) == {
        "a": ("sent", utc(2027, 3, 8, 9)),
        "x": ("sent", utc(2027, 3, 11, 9)),  # day 3
        "b": ("sent", utc(2027, 3, 16, 9)),  # day 6, its new day
    }
    step_emails = session.exec(select(Outbox).where(Outbox.kind == "step")).all()
    assert len(step_emails) == 5  # Ada: a, b. Bo: a, x, b. Nothing resent, nothing late.


def test_report_shows_a_skipped_step_as_cancelled(session, settings):
    setup(session, settings)
    apply_sync(session, edited(), utc(2027, 3, 9, 10))
    session.commit()
    report = {r["email"]: r["steps"] for r in progress(session, utc(2027, 3, 9, 11))}
    ada_steps = {s["key"]: (s["status"], s["sent_at"]) for s in report["ada@example.com"]}
    assert ada_steps["x"] == ("cancelled", None)
    assert "c" not in ada_steps  # removed before it reached her


def test_an_enrolment_completes_when_every_step_left_was_skipped(session, settings):
    _, ada, _ = setup(session, settings)
    apply_sync(session, edited(), utc(2027, 3, 9, 10))
    session.commit()
    for key in ("a", "b"):
        es = session.exec(
            select(EnrolmentStep)
            .join(Step, Step.id == EnrolmentStep.step_id)
            .where(EnrolmentStep.enrolment_id == ada.id, Step.key == key)
        ).one()
        complete_step(session, es.id, utc(2027, 3, 9, 12))
    session.refresh(ada)
    assert ada.status == "completed"


def test_a_new_step_before_one_already_sent_is_skipped(session, settings):
    _, ada, bo = setup(session, settings)
    # b, which Ada has, moves to day 20; z arrives at day 10: ahead in time, behind her in order.
    z = {"key": "z", "day": 10, "kind": "reflect", "title": "Z"}
    change = apply_sync(session, spec([A, {**B, "day": 20}, C, z]), utc(2027, 3, 9, 10))
    session.commit()
    assert effects(change)["z"] == {"change": "added", "scheduled": 1, "skipped": 1}
    assert rows(session, ada)["z"] == ("cancelled", None)
    assert "z" not in rows(session, bo)


def test_a_removed_step_already_sent_stays_and_its_invite_ahead_is_cancelled(session, settings):
    _, ada, bo = setup(session, settings, steps=(A, WORKSHOP, B, C))
    workshop = session.exec(
        select(EnrolmentStep)
        .join(Step, Step.id == EnrolmentStep.step_id)
        .where(EnrolmentStep.enrolment_id == ada.id, Step.key == "workshop")
    ).one()
    change = apply_sync(session, spec([A, B, C]), utc(2027, 3, 9, 10))
    session.commit()
    assert effects(change)["workshop"] == {"change": "removed", "kept": 2, "invite_cancels": 2}
    cancels = session.exec(select(Outbox).where(Outbox.kind == "invite-cancel")).all()
    assert sorted(c.enrolment_id for c in cancels) == sorted([ada.id, bo.id])
    session.refresh(workshop)
    assert (workshop.status, workshop.invite_sequence) == ("sent", 1)


def test_moving_a_workshop_updates_the_invites_already_sent(session, settings):
    _, ada, bo = setup(session, settings, steps=(A, WORKSHOP, B, C))
    enrolments.pause(session, bo, utc(2027, 3, 9, 10))
    session.commit()
    moved = {**WORKSHOP, "at": "2027-03-18T15:30"}
    change = apply_sync(session, spec([A, moved, B, C]), utc(2027, 3, 9, 11))
    session.commit()
    assert change.reworded == ["workshop"]
    assert effects(change)["workshop"] == {"change": "reworded", "kept": 2, "invite_updates": 1}
    es = {
        e.enrolment_id: e
        for e in session.exec(
            select(EnrolmentStep)
            .join(Step, Step.id == EnrolmentStep.step_id)
            .where(Step.key == "workshop")
        )
    }
    # 15:30 in London on 18 March is 15:30 UTC; both learners' rows move.
    assert es[ada.id].invite_start == es[bo.id].invite_start == utc(2027, 3, 18, 15, 30)
    updates = session.exec(select(Outbox).where(Outbox.kind == "invite-update")).all()
    assert [(u.enrolment_id, u.payload["enrolment_step_ids"]) for u in updates] == [
        (ada.id, [es[ada.id].id])
    ]
    assert updates[0].dedupe_key == f"invite-update:{ada.id}:{es[ada.id].id}.1"
    # Bo is paused: his invite was cancelled at the pause and comes back, moved, on resume.
    enrolments.resume(session, bo, utc(2027, 3, 10, 10))
    session.commit()
    latest = session.exec(select(Outbox).order_by(Outbox.id.desc())).first()
    assert (latest.kind, latest.enrolment_id) == ("invite-update", bo.id)


def test_a_schedule_change_retimes_unsent_steps(session, settings):
    apply_sync(session, spec([A, B]), utc(2027, 2, 1))
    session.commit()
    journey = session.exec(select(Journey)).one()
    ada = make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    tick(session, settings, utc(2027, 3, 1, 8), enqueue=False)
    change = apply_sync(session, spec([A, B], send_time="08:00"), utc(2027, 3, 1, 8, 30))
    session.commit()
    assert change.schedule_changed and (change.retimed, change.due_now) == (1, 1)
    assert "re-times unsent steps for 1 enrolment; 1 has a step whose new time has passed" in (
        change.describe()
    )
    tick(session, settings, utc(2027, 3, 1, 8, 31), enqueue=False)
    assert rows(session, ada)["a"] == ("sent", utc(2027, 3, 1, 8, 31))


def test_unchanged_journey_changes_nothing(session, settings):
    setup(session, settings)
    change = apply_sync(session, spec([A, B, C]), utc(2027, 3, 9, 10))
    assert change.unchanged and change.describe() == "feedback: unchanged"


def test_cli_sync_dry_run_then_sync_print_the_same_summary(session, settings, tmp_path):
    setup(session, settings)
    folder = tmp_path / "journeys"
    folder.mkdir()
    data = edited().model_dump(mode="json", exclude_none=True)
    (folder / "feedback.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    env = {
        "NUDGER_DATABASE_URL": settings.database_url,
        "NUDGER_INSTANCE_PATH": str(tmp_path),
        "NUDGER_SECRET_KEY": settings.secret_key,
    }
    runner = CliRunner()
    args = ["journeys", "sync", str(folder), "--now", "2027-03-09T10:00:00Z"]
    dry = runner.invoke(main, [*args, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines()[-1] == "Dry run: nothing written."
    added = "  added x (day 3): scheduled for 1 person who has not reached it; skipped for 1"
    assert added in dry.output
    as_json = json.loads(runner.invoke(main, [*args, "--dry-run", "--json"], env=env).output)
    [feedback] = as_json["journeys"]
    assert {e["key"]: e["skipped"] for e in feedback["effects"]}["x"] == 1
    real = runner.invoke(main, args, env=env)
    assert real.exit_code == 0, real.output
    assert real.output.splitlines() == dry.output.splitlines()[:-1]
    again = runner.invoke(main, args, env=env)
    assert again.output.strip() == "feedback: unchanged"
