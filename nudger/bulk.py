"""Many rows in one statement: inserts (that may skip existing keys), updates by id, and
the `IN` of a chunk of ids.

On PostgreSQL the rows travel as one array per column through `unnest`: one
short statement, parsed and planned once, whatever the number of rows. A
multi-row VALUES list (SQLAlchemy's "insertmanyvalues") has a placeholder per
value, which psycopg re-parses on every call: for a thousand rows that costs
more than the insert itself. The arrays go in psycopg's binary format: as text,
quoting every timestamp and JSON document costs more client time than the
server spends on the rows. SQLite gets the same shape: the rows travel as one
JSON text read by `json_each`, so SQLite, not Python, takes them apart (a
multi-row VALUES list costs SQLAlchemy Python work for every value).

Either way each value is first turned into what its column type binds, as
SQLAlchemy would have done it (each distinct date or time once: a tick's rows
share a few instants), so the rows stored are the same.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    ColumnElement,
    Date,
    DateTime,
    String,
    Table,
    Time,
    TypeDecorator,
    any_,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect, Row
from sqlmodel import Session

from nudger.db import upsert_ignore

BATCH = 1000  # rows per statement
# json_each is built into SQLite from 3.38; older ones take the plain SQLAlchemy statements.
SQLITE_JSON = sqlite3.sqlite_version_info >= (3, 38)

_statements: dict[tuple, Any] = {}


def among(
    session: Session, column: ColumnElement, ids: Sequence[int] | Sequence[str]
) -> ColumnElement[bool]:
    """Return `column IN ids` as one parameter: an array (PostgreSQL) or a JSON text (SQLite).

    An IN list has a placeholder per id, which SQLAlchemy renders and the
    driver parses again on every call: for 500 ids, a few milliseconds. Ids
    may be numbers or strings (email addresses, say).
    """
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(column.type)))
    if name == "sqlite" and SQLITE_JSON:
        values = func.json_each(bindparam(None, json.dumps(list(ids)), type_=String))
        return column.in_(select(values.table_valued("value").c.value))
    return column.in_(ids)


def insert_ignoring(
    session: Session,
    table: Table,
    rows: Sequence[dict],
    unique: Sequence[str],
    returning: Sequence[str],
) -> list[Row]:
    """Insert `rows` (dicts with the same keys) unless their `unique` columns clash.

    Returns the `returning` columns of the rows actually inserted: a row another
    transaction got in first is skipped, silently, and not returned.
    """
    if not rows:
        return []
    dialect = session.get_bind().dialect
    columns = tuple(rows[0])
    key = ("insert", dialect.name, table.name, columns, tuple(unique), tuple(returning))
    stmt = _statements.get(key)
    if stmt is None:
        stmt = _statements[key] = _insert(session, table, columns, unique, returning)
    found: list[Row] = []
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        values = [[row[name] for row in batch] for name in columns]
        found += _run(session, table, stmt, columns, values, batch)
    if dialect.name == "postgresql":
        found = _processed(dialect, table, returning, found)
    return found


def insert_all(session: Session, table: Table, rows: Sequence[dict]) -> None:
    """Insert `rows` (dicts with the same keys); a clash of unique keys raises, as usual."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    columns = tuple(rows[0])
    key = ("insert", dialect.name, table.name, columns, None, ())
    stmt = _statements.get(key)
    if stmt is None:
        stmt = _statements[key] = _insert(session, table, columns, None, ())
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        values = [[row[name] for row in batch] for name in columns]
        _run(session, table, stmt, columns, values, batch, fetch=False)


def update_by_id(
    session: Session, table: Table, column: str, changes: Sequence[tuple[int, Any]]
) -> None:
    """Set `column` of each row to its value: `changes` holds (id, value) pairs, in id order.

    On PostgreSQL the rows are locked in that order first, so two transactions
    updating the same rows wait for each other instead of deadlocking.
    """
    update_rows(session, table, (column,), changes)


def update_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[tuple]
) -> None:
    """Set `columns` of each row: `rows` holds (id, value, value, ...) tuples, in id order.

    One statement per thousand rows, locked in id order on PostgreSQL first.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect
    columns = tuple(columns)
    key = ("update", dialect.name, table.name, columns)
    stmt = _statements.get(key)
    if stmt is None:
        stmt = _statements[key] = _update(session, table, columns)
    names = ("id", *columns)
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        values = [list(column) for column in zip(*batch, strict=True)]
        if dialect.name == "postgresql":
            lock, set_values = stmt
            connection = session.connection()
            ids = _pg_arrays(dialect, table, ("id",), values[:1])
            connection.exec_driver_sql(lock, ids).close()
            connection.exec_driver_sql(set_values, _pg_arrays(dialect, table, names, values))
        elif dialect.name == "sqlite" and SQLITE_JSON:
            session.execute(stmt, _json_rows(dialect, table, names, values))
        else:
            session.execute(stmt, [{f"b_{i}": v for i, v in enumerate(row)} for row in batch])


def _insert(session: Session, table: Table, columns, unique, returning):
    """Build the INSERT for the session's database.

    With `unique`, rows whose key exists are skipped (ON CONFLICT DO NOTHING);
    with `returning`, the inserted rows' columns come back.
    """
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    tail = ""
    if unique is not None:
        tail += f" ON CONFLICT ({', '.join(quote(c) for c in unique)}) DO NOTHING"
    if returning:
        tail += f" RETURNING {', '.join(quote(c) for c in returning)}"
    into = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
    if dialect.name == "postgresql":
        source, picks = _pg_unnest(dialect, table, columns)
        return f"{into}SELECT {', '.join(picks)} {source}{tail}"
    if dialect.name == "sqlite" and SQLITE_JSON:
        picks = ", ".join(f"json_extract(j.value, '$[{i}]')" for i in range(len(columns)))
        # "WHERE true" tells SQLite's parser that ON CONFLICT belongs to the INSERT.
        sql = f"{into}SELECT {picks} FROM json_each(:rows) AS j WHERE true{tail}"
        return text(sql).columns(*(table.c[name] for name in returning))
    stmt = insert(table) if unique is None else upsert_ignore(session, table, list(unique))
    return stmt.returning(*(table.c[name] for name in returning)) if returning else stmt


def _update(session: Session, table: Table, columns: tuple[str, ...]):
    """Build the UPDATE of some columns from (id, value, ...) rows for the session's database."""
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    name, id_ = quote(table.name), quote("id")
    if dialect.name == "postgresql":
        lock = (
            f"SELECT 1 FROM {name} WHERE {id_} = ANY(CAST(%(c0)b AS "
            f"{table.c.id.type.compile(dialect=dialect)}[])) ORDER BY {id_} FOR NO KEY UPDATE"
        )
        source, picks = _pg_unnest(dialect, table, ("id", *columns))
        sets = ", ".join(f"{quote(c)} = {pick}" for c, pick in zip(columns, picks[1:], strict=True))
        return lock, f"UPDATE {name} SET {sets} {source} WHERE {name}.{id_} = t.c0"
    if dialect.name == "sqlite" and SQLITE_JSON:
        sets = ", ".join(
            f"{quote(c)} = json_extract(j.value, '$[{i}]')" for i, c in enumerate(columns, 1)
        )
        return text(
            f"UPDATE {name} SET {sets} "
            f"FROM json_each(:rows) AS j WHERE {name}.{id_} = json_extract(j.value, '$[0]')"
        )
    return (
        update(table)
        .where(table.c.id == bindparam("b_0"))
        .values({c: bindparam(f"b_{i}") for i, c in enumerate(columns, 1)})
    )


def _run(
    session: Session, table: Table, stmt, columns, values: list[list], batch, fetch: bool = True
) -> list:
    """Execute a built insert with one batch of rows; return the rows it returns."""
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        # psycopg's own placeholders (%(c0)b: binary), past SQLAlchemy's text().
        result = session.connection().exec_driver_sql(
            stmt, _pg_arrays(dialect, table, columns, values)
        )
    elif dialect.name == "sqlite" and SQLITE_JSON:
        result = session.execute(stmt, _json_rows(dialect, table, columns, values))
    else:
        result = session.execute(stmt, batch)
    return result.all() if fetch else []


def _processed(dialect: Dialect, table: Table, returning, rows: list) -> list:
    """Return rows read past SQLAlchemy as its column types would have handed them back."""
    processors = [
        table.c[name].type.dialect_impl(dialect).result_processor(dialect, None)
        for name in returning
    ]
    if not any(processors):
        return rows
    return [tuple(p(v) if p else v for p, v in zip(processors, row, strict=True)) for row in rows]


def _pg_unnest(dialect: Dialect, table: Table, columns) -> tuple[str, list[str]]:
    """Return "FROM unnest(arrays) AS t(c0, c1, ...)", each array cast to its column's
    type, and the expression that reads each column's value from t."""
    arrays, aliases, picks = [], [], []
    for i, name in enumerate(columns):
        column = table.c[name]
        if isinstance(column.type, JSON):
            # JSON goes in as text and is cast back: psycopg has no array-of-json dumper.
            arrays.append(f"CAST(%(c{i})b AS TEXT[])")
            picks.append(f"CAST(t.c{i} AS JSON)")
        else:
            arrays.append(f"CAST(%(c{i})b AS {column.type.compile(dialect=dialect)}[])")
            picks.append(f"t.c{i}")
        aliases.append(f"c{i}")
    return f"FROM unnest({', '.join(arrays)}) AS t({', '.join(aliases)})", picks


def _pg_arrays(dialect: Dialect, table: Table, columns, values: list[list]) -> dict[str, list]:
    """Return one list per column, each value processed as its column type binds it."""
    params = {}
    for i, (name, column_values) in enumerate(zip(columns, values, strict=True)):
        column_type = table.c[name].type
        if isinstance(column_type, JSON):
            # None is JSON null, as in SQLAlchemy.
            params[f"c{i}"] = [json.dumps(v) for v in column_values]
        else:
            params[f"c{i}"] = _bound(column_type, dialect, column_values)
    return params


def _json_rows(dialect: Dialect, table: Table, columns, values: list[list]) -> dict[str, str]:
    """Return the rows as one JSON array of arrays, each value as its column type binds it.

    What SQLite stores for a bound value (text, integer, real or NULL) is what
    json_extract hands back for its JSON form, so the rows come out the same.
    (A binary column's bytes have no JSON form: such a table is not for this path.)
    """
    bound = [
        _bound(table.c[name].type, dialect, column_values)
        for name, column_values in zip(columns, values, strict=True)
    ]
    return {"rows": json.dumps(list(zip(*bound, strict=True)), ensure_ascii=False)}


def _bound(column_type, dialect: Dialect, values: list) -> list:
    """Return `values` as `column_type` binds them; each distinct date or time processed once."""
    process: Callable | None = column_type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return values
    if not _is_temporal(column_type):
        return [process(v) for v in values]
    done: dict = {}
    out = []
    for v in values:
        if v not in done:
            done[v] = process(v)
        out.append(done[v])
    return out


def _is_temporal(column_type) -> bool:
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    return isinstance(column_type, (Date, DateTime, Time))


# --- COPY (PostgreSQL): the fastest way in for a large, new set of rows --------------------------


def new_ids(session: Session, table: Table, count: int) -> list[range]:
    """Take `count` ids from the table's id sequence (PostgreSQL), as runs in increasing order.

    Rows written by COPY cannot hand their ids back as INSERT ... RETURNING does:
    taking the ids first lets the caller write rows that refer to them (a
    manager's id, an event's enrolment) in the same pass. Other transactions may
    take ids meanwhile, so the ids need not be consecutive: the server hands back
    the runs of consecutive ids (usually one), not a million rows.
    """
    if count <= 0:
        return []
    sql = (
        "SELECT min(id), max(id) FROM (SELECT id, id - row_number() OVER (ORDER BY id) AS run"
        " FROM (SELECT nextval(pg_get_serial_sequence(%(t)s, 'id')) AS id"
        " FROM generate_series(1, %(n)s)) AS taken) AS numbered GROUP BY run ORDER BY 1"
    )
    runs = session.connection().exec_driver_sql(sql, {"t": table.name, "n": count}).all()
    return [range(low, high + 1) for low, high in runs]


def copy_rows(session: Session, table: Table, columns: Sequence[str], rows: Iterable) -> int:
    """Write `rows` (tuples in `columns` order) with one COPY (PostgreSQL); return how many.

    The rows stream to the server as they are made, so no list of them is kept.
    Date-time values go through their column type as SQLAlchemy would bind them
    (each distinct one once); a JSON column's values must be JSON text already.
    Columns left out take their server defaults, not SQLAlchemy's Python ones.
    """
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    processors = {}
    for i, name in enumerate(columns):
        column_type = table.c[name].type
        if _is_temporal(column_type):
            process = column_type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors[i] = (process, {})
    sql = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    raw = session.connection().connection.driver_connection
    n = 0
    with raw.cursor() as cursor, cursor.copy(sql) as copy:
        for row in rows:
            if processors:
                row = list(row)
                for i, (process, done) in processors.items():
                    v = row[i]
                    if v not in done:
                        done[v] = process(v)
                    row[i] = done[v]
            copy.write_row(row)
            n += 1
    return n
