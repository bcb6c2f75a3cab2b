"""Blind playback per serving, and time measured by the server.

- served_clips: each serving's own copy of each of its two clips (random name, no metadata).
  Rows from before this revision have none; a serving gets its copies the next time it is shown,
  so old pending servings keep working. The shared playback_clips files stay as they are (they
  are the pair's reference for frame ranges and are never handed to a rater any more).
- assignments.server_time_s: served_at to the first submit or skip, measured by the server.
  Finished rows from before get it from their own timestamps (submitted_at, else updated_at).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "served_clips",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True, nullable=False),
        sa.Column("assignment_id", sa.Integer(),
                  sa.ForeignKey("assignments.id", name=op.f("fk_served_clips_assignment_id_assignments"),
                                ondelete="CASCADE"), nullable=False),
        sa.Column("generation_id", sa.Integer(),
                  sa.ForeignKey("generations.id", name=op.f("fk_served_clips_generation_id_generations")),
                  nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_served_clips")),
        sa.UniqueConstraint("path", name=op.f("uq_served_clips_path")),
        sa.UniqueConstraint("assignment_id", "generation_id", name=op.f("uq_served_clips_assignment_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("server_time_s", sa.Float(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE assignments SET server_time_s = GREATEST(0.0, EXTRACT(EPOCH FROM "
                   "(COALESCE(submitted_at, updated_at) - served_at))) WHERE status != 'pending'")
    else:  # SQLite: timestamps are naive UTC text, which julianday() reads
        op.execute("UPDATE assignments SET server_time_s = MAX(0.0, (julianday(COALESCE(submitted_at, updated_at)) "
                   "- julianday(served_at)) * 86400.0) WHERE status != 'pending'")


def downgrade() -> None:
    with op.batch_alter_table("assignments") as batch:
        batch.drop_column("server_time_s")
    op.drop_table("served_clips")
