"""drop indexes that repeat the first column of another: written on every step sent for nothing

Revision ID: 0013_redundant_indexes
Revises: 0012_digest_queue
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0013_redundant_indexes'
down_revision: str | None = '0012_digest_queue'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, index, column): each column leads another index that serves the same lookups.
REDUNDANT = [
    ('enrolmentstep', 'ix_enrolmentstep_enrolment_id', 'enrolment_id'),  # (enrolment_id, step_id)
    ('enrolmentstep', 'ix_enrolmentstep_step_id', 'step_id'),  # ix_enrolmentstep_step_status
    # the unique (enrolment_step_id, level, recipient_email)
    ('escalationevent', 'ix_escalationevent_enrolment_step_id', 'enrolment_step_id'),
]


def upgrade() -> None:
    for table, index, _column in REDUNDANT:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(index)


def downgrade() -> None:
    for table, index, column in REDUNDANT:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(index, [column], unique=False)
