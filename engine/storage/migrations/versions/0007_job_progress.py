"""Job progress in the database: where a running job is, for studios that do not run it.

A studio started with `--no-worker` (a hosted rating front-end, say) queues jobs that a
`python -m engine worker` on another machine runs; the page still shows "step 12 of 30". The
worker writes its stage and step here (at most about once a second, and at each new stage),
which also renews its lease.

- generations.progress_stage: loading, encoding, denoising or decoding (NULL before it starts).
- generations.progress_step / progress_total: the denoising step and the steps in all.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("progress_stage", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("progress_step", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("progress_total", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("progress_total")
        batch.drop_column("progress_step")
        batch.drop_column("progress_stage")
