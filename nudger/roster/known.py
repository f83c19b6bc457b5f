"""Who the database already knows of the people a file names, read in chunks."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from sqlalchemy import ARRAY, Connection, Row, any_, bindparam, select

from nudger.models import Person

T = TypeVar("T")

CHUNK = 1000  # keys per IN (...), far below every driver's parameter limit


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def key_list(conn: Connection, column: Any) -> Any:
    """Return `column IN (:keys)`; on PostgreSQL `column = ANY(:keys)`, one array parameter.

    An expanding IN has a placeholder per key, which SQLAlchemy renders and
    psycopg parses again for every chunk: for a million keys, seconds.
    """
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam("keys", type_=ARRAY(column.type)))
    return column.in_(bindparam("keys", expanding=True))


def key_chunk(conn: Connection) -> int:
    """Keys per statement: an array is one parameter, so PostgreSQL takes many more."""
    return 20 * CHUNK if conn.dialect.name == "postgresql" else CHUNK


class KnownPeople:
    """The people the file names who are already in the database, and their managers."""

    def __init__(self, conn: Connection, emails: Iterable[str]) -> None:
        t = Person.__table__
        columns = (t.c.id, t.c.email, t.c.name, t.c.timezone, t.c.country, t.c.manager_id,
                   t.c.undeliverable_at)  # fmt: skip
        keys = key_list(conn, t.c.email)
        self.by_email: dict[str, Row] = {}
        self.by_id: dict[int, Row] = {}
        self._load(conn, select(*columns).where(keys), emails)
        # Walk up the reporting lines, so a loop closed through the database shows.
        while missing := {r.manager_id for r in self.by_id.values()} - self.by_id.keys() - {None}:
            ids = key_list(conn, t.c.id)
            self._load(conn, select(*columns).where(ids), missing)

    def _load(self, conn: Connection, stmt: Any, keys: Iterable) -> None:
        for chunk in chunks(keys, key_chunk(conn)):
            for r in conn.execute(stmt, {"keys": chunk}):
                self.by_email[r.email] = self.by_id[r.id] = r

    def manager_email(self, email: str) -> str:
        """Return the email of the manager the database has for `email`, or ""."""
        row = self.by_email.get(email)
        manager = self.by_id.get(row.manager_id) if row is not None and row.manager_id else None
        return manager.email if manager is not None else ""
