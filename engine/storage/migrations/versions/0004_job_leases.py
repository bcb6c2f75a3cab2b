"""Job leases: which worker runs a job, and when it last said it is alive.

A studio starting on a data folder used to fail every running job, including one a CLI
`generate` or another studio was running. With a lease, only jobs whose worker is gone are failed:
no worker recorded (rows from before this revision), a heartbeat older than the lease, or a worker
on this machine whose process no longer exists.

- generations.worker: "host:pid:nonce" of the process running the job (NULL while queued).
- generations.heartbeat_at: the worker's last heartbeat (every few seconds while it runs).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("worker", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("worker")
