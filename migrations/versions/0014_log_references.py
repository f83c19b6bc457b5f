"""the ledger and the event log refer to people and enrolments by id, without foreign keys

Revision ID: 0014_log_references
Revises: 0013_redundant_indexes
Create Date: 2026-12-07

Both are history written in bulk from rows the same transaction has just read,
and people and enrolments are never deleted (erasure blanks them): the key
checked and locked per row cost a third of writing forty thousand digests.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0014_log_references'
down_revision: str | None = '0013_redundant_indexes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PostgreSQL's names for the keys 0001 and 0008 made; SQLite's unnamed ones get the same
# names from this convention when batch mode reads the table.
NAMES = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}
KEYS = [
    ('outbox', 'person_id', 'person'),
    ('outbox', 'enrolment_id', 'enrolment'),
    ('event', 'enrolment_id', 'enrolment'),
]


def upgrade() -> None:
    for table, column, _referred in KEYS:
        with op.batch_alter_table(table, schema=None, naming_convention=NAMES) as batch_op:
            batch_op.drop_constraint(f'{table}_{column}_fkey', type_='foreignkey')


def downgrade() -> None:
    for table, column, referred in KEYS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(f'{table}_{column}_fkey', referred, [column], ['id'])
