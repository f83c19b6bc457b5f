"""Bulk inserts that skip rows already there and say which went in; bulk updates by id."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError
from sqlmodel import select

from nudger import bulk
from nudger.bulk import BATCH, among, insert_all, insert_ignoring, update_by_id, update_rows
from nudger.models import AuditLog, Outbox


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


def test_rows_are_stored_exactly_as_sqlalchemy_stores_them(session):
    at = datetime(2027, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
    insert_ignoring(session, Outbox.__table__, [message(1, at)], ["dedupe_key"], ["id"])
    session.add(Outbox(**{**message(2, at), "payload": message(1, at)["payload"]}))
    session.commit()
    columns = "kind, person_id, payload, state, attempts, enqueued_at, next_attempt_at, created_at"
    # Raw, as the database holds them: a different text form of a date would show here.
    mine, theirs = session.execute(text(f"SELECT {columns} FROM outbox ORDER BY dedupe_key"))
    assert tuple(mine) == tuple(theirs)


def test_returned_columns_come_back_as_their_types_read_them(session):
    at = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
    [(created,)] = insert_ignoring(
        session, Outbox.__table__, [message(1, at)], ["dedupe_key"], ["created_at"]
    )
    assert created == at  # aware UTC, as the column hands it back


def test_a_naive_time_is_refused_as_sqlalchemy_refuses_it(session):
    rows = [message(1, datetime(2027, 3, 1, 9, 30))]
    with pytest.raises((ValueError, StatementError), match="naive datetime"):
        insert_ignoring(session, Outbox.__table__, rows, ["dedupe_key"], ["id"])


def test_insert_all_inserts_every_row(session):
    at = datetime(2027, 3, 1, tzinfo=UTC)
    rows = [
        {"at": at, "actor": "tick", "action": "test", "subject_type": "x", "subject_id": i,
         "detail": {"i": i, "é": [None]}}
        for i in range(BATCH + 2)
    ]  # fmt: skip
    insert_all(session, AuditLog.__table__, rows)
    session.commit()
    stored = session.exec(select(AuditLog).order_by(AuditLog.id)).all()
    assert [(r.subject_id, r.detail, r.at) for r in stored] == [
        (i, {"i": i, "é": [None]}, at) for i in range(BATCH + 2)
    ]


def test_update_by_id_sets_each_row_to_its_own_value(session):
    at = datetime(2027, 3, 1, tzinfo=UTC)
    ids = [i for i, in insert_ignoring(session, Outbox.__table__,
                                       [message(i, at) for i in range(BATCH + 3)],
                                       ["dedupe_key"], ["id"])]  # fmt: skip
    changes = sorted((i, at + timedelta(hours=i)) for i in ids[:-1])
    update_by_id(session, Outbox.__table__, "lease_until", changes)
    session.commit()
    session.expire_all()
    leases = dict(session.exec(select(Outbox.id, Outbox.lease_until)).all())
    assert leases == {**dict(changes), ids[-1]: None}
    update_by_id(session, Outbox.__table__, "lease_until", [(ids[0], None)])
    session.commit()
    assert session.exec(select(Outbox.lease_until).where(Outbox.id == ids[0])).one() is None


def test_update_rows_sets_several_columns_with_nulls_and_text(session):
    at = datetime(2027, 3, 1, tzinfo=UTC)
    ids = [i for i, in insert_ignoring(session, Outbox.__table__,
                                       [message(i, at) for i in range(BATCH + 3)],
                                       ["dedupe_key"], ["id"])]  # fmt: skip
    error = "550 nö \"{}\" 'x'"
    rows = [
        (i, "sent" if i % 2 else "failed", None if i % 2 else error.format(i), at + timedelta(i))
        for i in ids[:-1]
    ]
    update_rows(session, Outbox.__table__, ("state", "last_error", "sent_at"), rows)
    session.commit()
    session.expire_all()
    stored = session.exec(
        select(Outbox.id, Outbox.state, Outbox.last_error, Outbox.sent_at).order_by(Outbox.id)
    ).all()
    assert [tuple(r) for r in stored] == [*rows, (ids[-1], "pending", None, None)]


def test_among_matches_the_ids_given(session):
    at = datetime(2027, 3, 1, tzinfo=UTC)
    ids = [i for i, in insert_ignoring(session, Outbox.__table__,
                                       [message(i, at) for i in range(5)],
                                       ["dedupe_key"], ["id"])]  # fmt: skip
    found = session.exec(select(Outbox.id).where(among(session, Outbox.id, ids[1:4]))).all()
    assert sorted(found) == ids[1:4]
    assert session.exec(select(Outbox.id).where(among(session, Outbox.id, []))).all() == []


def test_sqlite_without_json_each_takes_the_plain_statements(session, monkeypatch):
    if session.get_bind().dialect.name != "sqlite":
        pytest.skip("the SQLite fallback")
    monkeypatch.setattr(bulk, "SQLITE_JSON", False)
    monkeypatch.setattr(bulk, "_statements", {})
    at = datetime(2027, 3, 1, tzinfo=UTC)
    first = insert_ignoring(session, Outbox.__table__, [message(i, at) for i in range(3)],
                            ["dedupe_key"], ["id"])  # fmt: skip
    again = insert_ignoring(session, Outbox.__table__, [message(i, at) for i in range(4)],
                            ["dedupe_key"], ["id"])  # fmt: skip
    ids = [i for (i,) in first + again]
    update_by_id(session, Outbox.__table__, "lease_until", [(i, at) for i in ids])
    session.commit()
    assert len(again) == 1
    found = session.exec(select(Outbox.lease_until).where(among(session, Outbox.id, ids))).all()
    assert found == [at] * 4
