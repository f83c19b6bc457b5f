"""Create or upgrade the schema with Alembic (`nudger init`)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from nudger.config import ROOT, Settings


def alembic_config(settings: Settings) -> Config:
    """Return an Alembic config pointing at Nudger's migrations and database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings) -> None:
    """Bring the database to the newest schema."""
    command.upgrade(alembic_config(settings), "head")


def current_revision(settings: Settings) -> str | None:
    """Return the schema revision the database is at, or None if it has none."""
    from alembic.runtime.migration import MigrationContext

    from nudger.db import get_engine

    with get_engine(settings.database_url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def include_object_on(dialect_name: str):
    """Return Alembic's include_object for a dialect: what the models create there.

    A PostgreSQL-only index (`Index(...).ddl_if(dialect="postgresql")`, the
    trigram ones) is not missing from SQLite.
    """

    def include(obj, name, type_, reflected, compare_to) -> bool:
        dialect = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
        if reflected or not dialect:
            return True
        return dialect_name in ({dialect} if isinstance(dialect, str) else set(dialect))

    return include
