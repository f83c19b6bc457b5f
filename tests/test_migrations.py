"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from nudger.db import get_engine
from nudger.migrate import current_revision, include_object_on, upgrade


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
