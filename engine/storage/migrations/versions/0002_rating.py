"""Animator rating: raters, pairs of clips, servings, judgements, clip scores, deformation labels.

Adds seven tables and touches none of 0001's. Generations referenced by a pair cannot be deleted
while the pair exists (plain foreign keys, no cascade): animators' judgements are the expensive
part of the data and must never vanish because a clip was removed from the gallery.

- raters: accounts (scrypt hash, per-user salt and the cost parameters used).
- playback_clips: each clip re-encoded to a pair's common fps / frame count / size.
- comparisons: a pair of generations in canonical order (a < b), unique per pair.
- gold_answers: known answers of hidden gold pairs, per dimension.
- assignments: one serving of a pair to a rater (placement, hidden repeat flag, draft, time).
- judgements: one verdict per dimension, in terms of the winning generation.
- clip_scores, deformation_labels: absolute 1-5 scores and frame-range labels per clip.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the allowed values as they were at this revision (never import them from the
# models: a later change there must come with its own migration).
_ROLES = "'rater', 'admin'"
_DIMENSIONS = "'prompt_understanding', 'artistic_motion', 'style_fidelity', 'visual_quality', 'character_consistency'"
_OUTCOMES = "'winner', 'tie', 'both_bad'"
_KINDS = "'same_seed', 'picked'"
_STATUSES = "'pending', 'submitted', 'skipped'"
_DEFORMATIONS = ("'smear', 'squash_and_stretch', 'multiples', 'chibi_shift', 'impact_frame', "
                 "'limb_break', 'face_melt', 'identity_drift', 'flicker', 'other'")
_INTENTS = "'intentional', 'failure'"


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True, nullable=False)


def _fk(table: str, column: str, target: str, *, nullable: bool = False, ondelete: str | None = None) -> sa.Column:
    ref_table = target.split(".")[0]
    return sa.Column(column, sa.Integer(),
                     sa.ForeignKey(target, name=op.f(f"fk_{table}_{column}_{ref_table}"), ondelete=ondelete),
                     nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "raters",
        _id(),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("experience", sa.Text(), nullable=False),
        sa.Column("experience_years", sa.Integer(), nullable=True),
        sa.Column("kdf", sa.String(length=16), nullable=False),
        sa.Column("kdf_n", sa.Integer(), nullable=False),
        sa.Column("kdf_r", sa.Integer(), nullable=False),
        sa.Column("kdf_p", sa.Integer(), nullable=False),
        sa.Column("password_salt", sa.LargeBinary(), nullable=False),
        sa.Column("password_hash", sa.LargeBinary(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("raters", "created_by", "raters.id", nullable=True),
        sa.CheckConstraint(f"role IN ({_ROLES})", name=op.f("ck_raters_role")),
        sa.CheckConstraint("experience_years IS NULL OR (experience_years >= 0 AND experience_years <= 80)",
                           name=op.f("ck_raters_experience_years")),
        sa.UniqueConstraint("name", name=op.f("uq_raters_name")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raters")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "playback_clips",
        _id(),
        _fk("playback_clips", "generation_id", "generations.id"),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("fps", sa.Integer(), nullable=False),
        sa.Column("num_frames", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("source_fps", sa.Float(), nullable=False),
        sa.Column("source_frames", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("fps > 0 AND num_frames > 0 AND width > 0 AND height > 0",
                           name=op.f("ck_playback_clips_positive")),
        sa.UniqueConstraint("path", name=op.f("uq_playback_clips_path")),
        sa.UniqueConstraint("generation_id", "fps", "num_frames", "width", "height",
                            name=op.f("uq_playback_clips_spec")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playback_clips")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "comparisons",
        _id(),
        _fk("comparisons", "generation_a_id", "generations.id"),
        _fk("comparisons", "generation_b_id", "generations.id"),
        _fk("comparisons", "playback_a_id", "playback_clips.id"),
        _fk("comparisons", "playback_b_id", "playback_clips.id"),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("comparisons", "created_by", "raters.id", nullable=True),
        sa.CheckConstraint("generation_a_id < generation_b_id", name=op.f("ck_comparisons_ordered")),
        sa.CheckConstraint(f"kind IN ({_KINDS})", name=op.f("ck_comparisons_kind")),
        sa.UniqueConstraint("generation_a_id", "generation_b_id", name=op.f("uq_comparisons_pair")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparisons")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_comparisons_generation_b_id"), "comparisons", ["generation_b_id"])
    op.create_table(
        "gold_answers",
        _id(),
        _fk("gold_answers", "comparison_id", "comparisons.id", ondelete="CASCADE"),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        _fk("gold_answers", "winner_generation_id", "generations.id", nullable=True),
        _fk("gold_answers", "set_by", "raters.id", nullable=True),
        sa.Column("set_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(f"dimension IN ({_DIMENSIONS})", name=op.f("ck_gold_answers_dimension")),
        sa.CheckConstraint(f"outcome IN ({_OUTCOMES})", name=op.f("ck_gold_answers_outcome")),
        sa.CheckConstraint("(outcome = 'winner') = (winner_generation_id IS NOT NULL)",
                           name=op.f("ck_gold_answers_winner_iff_outcome")),
        sa.UniqueConstraint("comparison_id", "dimension", name=op.f("uq_gold_answers_dimension")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gold_answers")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "assignments",
        _id(),
        _fk("assignments", "comparison_id", "comparisons.id"),
        _fk("assignments", "rater_id", "raters.id"),
        _fk("assignments", "left_generation_id", "generations.id"),
        sa.Column("is_repeat", sa.Boolean(), nullable=False),
        _fk("assignments", "repeat_of_id", "assignments.id", nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("served_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=True),
        sa.Column("time_spent_s", sa.Float(), nullable=False),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.Column("draft_json", sa.Text(), nullable=True),
        sa.Column("skip_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name=op.f("ck_assignments_status")),
        sa.CheckConstraint("is_repeat = (repeat_of_id IS NOT NULL)", name=op.f("ck_assignments_repeat_has_original")),
        sa.CheckConstraint("time_spent_s >= 0 AND replays >= 0", name=op.f("ck_assignments_non_negative")),
        sa.UniqueConstraint("rater_id", "comparison_id", "is_repeat", name=op.f("uq_assignments_once")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_assignments_comparison_id"), "assignments", ["comparison_id"])
    op.create_index(op.f("ix_assignments_rater_status"), "assignments", ["rater_id", "status"])
    op.create_table(
        "judgements",
        _id(),
        _fk("judgements", "assignment_id", "assignments.id", ondelete="CASCADE"),
        _fk("judgements", "comparison_id", "comparisons.id"),
        _fk("judgements", "rater_id", "raters.id"),
        sa.Column("is_repeat", sa.Boolean(), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        _fk("judgements", "winner_generation_id", "generations.id", nullable=True),
        sa.Column("strength", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(f"dimension IN ({_DIMENSIONS})", name=op.f("ck_judgements_dimension")),
        sa.CheckConstraint(f"outcome IN ({_OUTCOMES})", name=op.f("ck_judgements_outcome")),
        sa.CheckConstraint("(outcome = 'winner') = (winner_generation_id IS NOT NULL)",
                           name=op.f("ck_judgements_winner_iff_outcome")),
        sa.CheckConstraint("strength IS NULL OR (outcome = 'winner' AND strength BETWEEN 1 AND 3)",
                           name=op.f("ck_judgements_strength")),
        sa.UniqueConstraint("comparison_id", "rater_id", "dimension", "is_repeat", name=op.f("uq_judgements_once")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_judgements")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_judgements_assignment_id"), "judgements", ["assignment_id"])
    op.create_index(op.f("ix_judgements_rater_id"), "judgements", ["rater_id"])
    op.create_table(
        "clip_scores",
        _id(),
        _fk("clip_scores", "judgement_id", "judgements.id", ondelete="CASCADE"),
        _fk("clip_scores", "generation_id", "generations.id"),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name=op.f("ck_clip_scores_score")),
        sa.UniqueConstraint("judgement_id", "generation_id", name=op.f("uq_clip_scores_clip")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clip_scores")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "deformation_labels",
        _id(),
        _fk("deformation_labels", "assignment_id", "assignments.id", ondelete="CASCADE"),
        _fk("deformation_labels", "generation_id", "generations.id"),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("intent", sa.String(length=16), nullable=False),
        sa.Column("start_frame", sa.Integer(), nullable=False),
        sa.Column("end_frame", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(f"kind IN ({_DEFORMATIONS})", name=op.f("ck_deformation_labels_kind")),
        sa.CheckConstraint(f"intent IN ({_INTENTS})", name=op.f("ck_deformation_labels_intent")),
        sa.CheckConstraint("start_frame >= 0 AND start_frame <= end_frame",
                           name=op.f("ck_deformation_labels_frame_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deformation_labels")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_deformation_labels_assignment_id"), "deformation_labels", ["assignment_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_deformation_labels_assignment_id"), table_name="deformation_labels")
    op.drop_table("deformation_labels")
    op.drop_table("clip_scores")
    op.drop_index(op.f("ix_judgements_rater_id"), table_name="judgements")
    op.drop_index(op.f("ix_judgements_assignment_id"), table_name="judgements")
    op.drop_table("judgements")
    op.drop_index(op.f("ix_assignments_rater_status"), table_name="assignments")
    op.drop_index(op.f("ix_assignments_comparison_id"), table_name="assignments")
    op.drop_table("assignments")
    op.drop_table("gold_answers")
    op.drop_index(op.f("ix_comparisons_generation_b_id"), table_name="comparisons")
    op.drop_table("comparisons")
    op.drop_table("playback_clips")
    op.drop_table("raters")
