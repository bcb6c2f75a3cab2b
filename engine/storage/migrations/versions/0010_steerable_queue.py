"""A steerable queue: jobs can be reordered and the whole queue paused, as database facts.

Every process that starts jobs (an embedded studio, `python -m engine worker`, a `--no-worker`
front-end's worker) reads both from here, so a move or a pause made anywhere holds everywhere.

- generations.queue_order: where a queued job stands in line. NULL means "its id", so existing and
  new jobs keep first-in first-out order and a new job goes last; a move swaps these keys among
  the queued jobs. A new column only, so SQLite keeps its table (and its AUTOINCREMENT).
- queue_state: one row (id 1): whether the queue is paused, who changed it and when.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("queue_order", sa.Integer(), nullable=True))
    state = op.create_table(
        "queue_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("changed_by", sa.String(length=128), nullable=True),
        sa.Column("changed_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_queue_state_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_state")),
    )
    op.bulk_insert(state, [{"id": 1, "paused": False}])


def downgrade() -> None:
    op.drop_table("queue_state")
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("queue_order")
