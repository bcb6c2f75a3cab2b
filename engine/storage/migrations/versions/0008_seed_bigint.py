"""Seeds as 64-bit integers: a seed is 0..2**32-1, which PostgreSQL's 32-bit INTEGER cannot hold.

SQLite's INTEGER is 64-bit anyway, so only a shared PostgreSQL studio was affected: every random
seed above 2**31-1 (about half of them) was refused when the job was queued.

- generations.seed: INTEGER -> BIGINT on PostgreSQL. SQLite is left as it is: its INTEGER holds
  64 bits, and rebuilding the table (SQLite's only way to change a type) would drop its
  AUTOINCREMENT, letting a deleted entry's id be given out again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("generations", "seed", existing_type=sa.Integer(), type_=sa.BigInteger(),
                        existing_nullable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("generations", "seed", existing_type=sa.BigInteger(), type_=sa.Integer(),
                        existing_nullable=True)
