"""Create the generations table: the GPU job queue and the clip history in one.

A row is queued by the UI or CLI, moves to running when the GPU worker takes it, and ends done
(with its video), failed or cancelled. Ids use AUTOINCREMENT so they are never reused.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "generations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("narrative", sa.Text(), nullable=False),
        sa.Column("tags_json", sa.Text(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("compiled_prompt", sa.Text(), nullable=True),
        sa.Column("video_path", sa.Text(), nullable=True),
        sa.Column("poster_path", sa.Text(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("num_frames", sa.Integer(), nullable=True),
        sa.Column("fps", sa.Integer(), nullable=True),
        sa.Column("timings_json", sa.Text(), nullable=False),
        sa.Column("peak_memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("engine_version", sa.String(length=32), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled')",
            name=op.f("ck_generations_status"),
        ),
        sa.CheckConstraint(
            "status != 'done' OR video_path IS NOT NULL",
            name=op.f("ck_generations_done_has_video"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generations")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_generations_status"), "generations", ["status"])
    op.create_index(op.f("ix_generations_created_at"), "generations", ["created_at"])
    op.create_index(op.f("ix_generations_model"), "generations", ["model"])


def downgrade() -> None:
    op.drop_index(op.f("ix_generations_model"), table_name="generations")
    op.drop_index(op.f("ix_generations_created_at"), table_name="generations")
    op.drop_index(op.f("ix_generations_status"), table_name="generations")
    op.drop_table("generations")
