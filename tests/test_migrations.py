"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from nudger.db import get_engine
from nudger.migrate import alembic_config, current_revision, include_object_on, upgrade


def _empty(engine) -> None:
    SQLModel.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


def test_upgrade_creates_the_schema_of_the_models(settings):
    engine = get_engine(settings.database_url)
    _empty(engine)
    try:
        upgrade(settings)
        with engine.connect() as conn:
            # PostgreSQL-only indexes (trigram search) are compared on PostgreSQL only.
            only_here = {"include_object": include_object_on(conn.dialect.name)}
            context = MigrationContext.configure(conn, opts=only_here)
            diff = compare_metadata(context, SQLModel.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        _empty(engine)


def test_upgrade_twice_changes_nothing(settings):
    engine = get_engine(settings.database_url)
    _empty(engine)
    try:
        upgrade(settings)
        first = current_revision(settings)
        upgrade(settings)
        assert current_revision(settings) == first is not None
    finally:
        _empty(engine)


def test_the_digest_queue_starts_with_the_events_no_digest_carried(settings):
    """0012: open events without a digest wait in the queue; carried or resolved ones do not."""
    engine = get_engine(settings.database_url)
    _empty(engine)
    try:
        command.upgrade(alembic_config(settings), "0011_ledger_bounced")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO person (id, email, name, timezone, country, digest_every,"
                " created_at, updated_at) VALUES (1, 'a@example.com', 'A', 'UTC', '', NULL,"
                " '2027-03-01', '2027-03-01')"
            ))  # fmt: skip
            conn.execute(text(
                "INSERT INTO journey (id, slug, title, owner, spec, checksum, version, source,"
                " synced_at) VALUES (1, 'j', 'J', '', '{}', 'x', 1, '', '2027-03-01')"
            ))  # fmt: skip
            conn.execute(text(
                "INSERT INTO step (id, journey_id, key, position, day, kind, title, minutes,"
                " removed) VALUES (1, 1, 's', 0, 0, 'read', 'S', 0, false)"
            ))  # fmt: skip
            conn.execute(text(
                "INSERT INTO enrolment (id, person_id, journey_id, status, start_date,"
                " shift_days, reminders_muted, checkins_planned, created_at, updated_at)"
                " VALUES (1, 1, 1, 'active', '2027-03-01', 0, false, false, '2027-03-01',"
                " '2027-03-01')"
            ))  # fmt: skip
            conn.execute(text(
                "INSERT INTO enrolmentstep (id, enrolment_id, step_id, status, note_shared,"
                " note_for_others, awaiting_confirmation, invite_sequence, reminders_sent,"
                " escalation_level) VALUES (1, 1, 1, 'sent', true, false, false, 0, 0, 1)"
            ))  # fmt: skip
            conn.execute(text(
                "INSERT INTO outbox (id, dedupe_key, kind, to_email, payload, state, attempts,"
                " next_attempt_at, created_at) VALUES (1, 'digest:m', 'digest', 'm@example.com',"
                " '{}', 'sent', 1, '2027-03-02', '2027-03-02')"
            ))  # fmt: skip
            for event_id, recipient, resolved, digest in (
                (1, "m@example.com", None, None),  # waiting for a digest
                (2, "s@example.com", None, 1),  # carried
                (3, "o@example.com", "2027-03-03", None),  # resolved
            ):
                conn.execute(
                    text(
                        "INSERT INTO escalationevent (id, enrolment_step_id, enrolment_id,"
                        " level, recipient_email, created_at, resolved_at, digest_outbox_id)"
                        " VALUES (:id, 1, 1, 'manager', :to, '2027-03-02', :resolved, :digest)"
                    ),
                    {"id": event_id, "to": recipient, "resolved": resolved, "digest": digest},
                )
        upgrade(settings)
        with engine.connect() as conn:
            queued = conn.execute(text("SELECT event_id FROM digestqueue")).scalars().all()
        assert queued == [1]
    finally:
        _empty(engine)
