"""Owners and batches: who a job belongs to, and which run it was made for.

- generations.owner: the signed-in user ("user:NAME"), a per-browser anonymous id ("anon:…")
  when the studio runs without sign-in, "cli" for the command line; NULL for rows from before
  this revision, which every user of a private studio keeps seeing (see SECURITY.md).
- generations.batch: a run the clip belongs to ("eval:NAME", "best-of-n:…"), NULL for a lone clip.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("batch", sa.String(length=128), nullable=True))
        batch.create_index("ix_generations_owner", ["owner"])
        batch.create_index("ix_generations_batch", ["batch"])


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_index("ix_generations_batch")
        batch.drop_index("ix_generations_owner")
        batch.drop_column("batch")
        batch.drop_column("owner")
