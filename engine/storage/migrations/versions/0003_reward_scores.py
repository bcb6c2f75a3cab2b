"""Reward-model scores of history clips.

Adds one table and touches no earlier one. A score is derived data (it can always be computed
again from the clip and the reward checkpoint), so it goes with its clip: the foreign key
cascades when a history entry is deleted. One row per clip and reward model (`model_key` is the
checkpoint's name and a hash of its head weights), replaced when the clip is scored again.

- reward_scores: the combined reward, the failure / intentional-deformation probabilities (as
  columns, so the gallery can sort and filter by them) and the details as JSON (per-dimension
  scores and 1-5 estimates, per-segment classes, warnings).

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reward_scores",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True, nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.Column("model_key", sa.Text(), nullable=False),
        sa.Column("reward", sa.Float(), nullable=False),
        sa.Column("p_failure", sa.Float(), nullable=False),
        sa.Column("p_intentional", sa.Float(), nullable=False),
        sa.Column("details_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["generation_id"], ["generations.id"], ondelete="CASCADE",
                                name=op.f("fk_reward_scores_generation_id_generations")),
        sa.CheckConstraint("p_failure >= 0 AND p_failure <= 1 AND p_intentional >= 0 AND p_intentional <= 1",
                           name=op.f("ck_reward_scores_probabilities")),
        sa.UniqueConstraint("generation_id", "model_key", name=op.f("uq_reward_scores_generation_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_scores")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_reward_scores_model_key"), "reward_scores", ["model_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_reward_scores_model_key"), table_name="reward_scores")
    op.drop_table("reward_scores")
