"""the ledger's bounced rows from one index: failed for good when sent, or bounced later

Revision ID: 0011_ledger_bounced
Revises: 0010_scale
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_ledger_bounced'
down_revision: str | None = '0010_scale'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAILED = "state = 'failed' AND last_error LIKE '5__ %'"
# A bounce that came back as mail marks its row "bounced": the ledger's "Bounced" filter asks
# for both, and with only the first in the index PostgreSQL sorted every bounced row by hand.
BOUNCED = "(state = 'failed' AND last_error LIKE '5__ %') OR state = 'bounced'"


def _replace(where: str) -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_bounced')
        batch_op.create_index(
            'ix_outbox_bounced', ['id'], unique=False,
            sqlite_where=sa.text(where), postgresql_where=sa.text(where),
        )


def upgrade() -> None:
    _replace(BOUNCED)


def downgrade() -> None:
    _replace(FAILED)
