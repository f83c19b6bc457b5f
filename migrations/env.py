"""Alembic environment: the URL and metadata come from Nudger, not alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from nudger import models  # noqa: F401  (registers the tables)
from nudger.db import get_engine
from nudger.migrate import include_object_on

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    connectable = config.attributes.get("connection") or get_engine(url)
    if hasattr(connectable, "connect"):
        with connectable.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table by copying and dropping it, and with foreign keys on
        # SQLite refuses to drop one that other rows refer to (the ledger, say). Off for the
        # migration only (outside a transaction, where the pragma takes effect), then checked.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object_on(connection.dialect.name),
    )
    try:
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration left references to no row: {broken}")
        if connection.in_transaction():
            connection.commit()
    finally:
        if sqlite:  # on again even after a failure: the pooled connection is used after this
            if connection.in_transaction():
                connection.rollback()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


run_migrations_online()
