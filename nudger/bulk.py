"""Insert many rows at once, skipping those whose unique key exists, and say which went in.

On PostgreSQL the rows travel as one array per column through `unnest`: one
short statement, parsed and planned once, whatever the number of rows. A
multi-row VALUES list (SQLAlchemy's "insertmanyvalues") has a placeholder per
value, which psycopg re-parses on every call: for a thousand rows that costs
more than the insert itself. SQLite, whose driver does not parse placeholders
in Python, uses the multi-row VALUES list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Table, text
from sqlalchemy.engine import Row
from sqlmodel import Session

from nudger.db import upsert_ignore

BATCH = 1000  # rows per statement

_statements: dict[tuple, Any] = {}


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
    key = (dialect.name, table.name, columns, tuple(unique), tuple(returning))
    stmt = _statements.get(key)
    if stmt is None:
        stmt = _statements[key] = (
            _unnest_insert(dialect, table, columns, unique, returning)
            if dialect.name == "postgresql"
            else upsert_ignore(session, table, list(unique)).returning(
                *(table.c[name] for name in returning)
            )
        )
    found: list[Row] = []
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        if dialect.name == "postgresql":
            found += session.execute(stmt, _arrays(dialect, table, columns, batch)).all()
        else:
            found += session.execute(stmt, batch).all()
    return found


def _unnest_insert(dialect, table: Table, columns, unique, returning):
    """Build INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING."""
    quote = dialect.identifier_preparer.quote
    arrays, picks = [], []
    for i, name in enumerate(columns):
        column = table.c[name]
        if isinstance(column.type, JSON):
            # JSON goes in as text and is cast back: psycopg has no array-of-json dumper.
            arrays.append(f"CAST(:c{i} AS TEXT[])")
            picks.append(f"CAST(t.c{i} AS JSON)")
        else:
            arrays.append(f"CAST(:c{i} AS {column.type.compile(dialect=dialect)}[])")
            picks.append(f"t.c{i}")
    aliases = ", ".join(f"c{i}" for i in range(len(columns)))
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT {', '.join(picks)} FROM unnest({', '.join(arrays)}) AS t({aliases}) "
        f"ON CONFLICT ({', '.join(quote(c) for c in unique)}) DO NOTHING "
        f"RETURNING {', '.join(quote(c) for c in returning)}"
    )
    return text(sql)


def _arrays(dialect, table: Table, columns, rows: Sequence[dict]) -> dict[str, list]:
    """Return one list per column, each value processed as its column type binds it."""
    params = {}
    for i, name in enumerate(columns):
        column_type = table.c[name].type
        values = [row[name] for row in rows]
        if isinstance(column_type, JSON):
            params[f"c{i}"] = [json.dumps(v) for v in values]  # None is JSON null, as in SQLAlchemy
            continue
        process = column_type.bind_processor(dialect)
        params[f"c{i}"] = [process(v) for v in values] if process else values
    return params
