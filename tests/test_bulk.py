"""Bulk inserts that skip rows already there and say which went in."""

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from nudger.bulk import BATCH, insert_ignoring
from nudger.models import Outbox


def message(i: int, at: datetime) -> dict:
    return {
        "dedupe_key": f"test:{i}",
        "kind": "test",
        "to_email": f"p{i}@example.com",
        "person_id": None,
        "enrolment_id": None,
        "payload": {"n": i, "names": ["a", "é"], "none": None},
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": at,
        "enqueued_at": None,
        "created_at": at,
    }


def test_only_rows_not_already_there_are_inserted_and_returned(session):
    at = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
    table = Outbox.__table__
    first = insert_ignoring(session, table, [message(i, at) for i in range(3)], ["dedupe_key"],
                            ["id", "dedupe_key"])  # fmt: skip
    again = insert_ignoring(session, table, [message(i, at) for i in range(1, 5)], ["dedupe_key"],
                            ["id", "dedupe_key"])  # fmt: skip
    session.commit()
    assert [key for _, key in first] == ["test:0", "test:1", "test:2"]
    assert sorted(key for _, key in again) == ["test:3", "test:4"]
    assert len(session.exec(select(Outbox)).all()) == 5


def test_values_round_trip_with_their_column_types(session):
    at = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
    rows = [message(7, at)]
    [(new_id,)] = insert_ignoring(session, Outbox.__table__, rows, ["dedupe_key"], ["id"])
    session.commit()
    row = session.get(Outbox, new_id)
    assert row.payload == {"n": 7, "names": ["a", "é"], "none": None}
    assert (row.created_at, row.enqueued_at, row.person_id) == (at, None, None)


def test_more_rows_than_one_batch(session):
    at = datetime(2027, 3, 1, tzinfo=UTC)
    rows = [message(i, at + timedelta(seconds=i)) for i in range(BATCH + 5)]
    inserted = insert_ignoring(session, Outbox.__table__, rows, ["dedupe_key"], ["id"])
    session.commit()
    assert len(inserted) == BATCH + 5
    assert insert_ignoring(session, Outbox.__table__, [], ["dedupe_key"], ["id"]) == []
