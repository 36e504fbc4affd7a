"""Stored completions, their input messages and their metadata pairs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "completions",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("request", sa.JSON),
        sa.Column("response", sa.JSON),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("id", name="uq_completions_id"),
    )
    op.create_index("ix_completions_owner_created", "completions", ["owner", "created", "seq"])
    op.create_index(
        "ix_completions_owner_model_created", "completions", ["owner", "model", "created", "seq"]
    )
    op.create_table(
        "completion_messages",
        sa.Column(
            "completion_seq",
            Seq,
            sa.ForeignKey("completions.seq", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("message", sa.JSON, nullable=False),
    )
    op.create_table(
        "completion_metadata",
        sa.Column(
            "completion_seq",
            Seq,
            sa.ForeignKey("completions.seq", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(512), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_completion_metadata_lookup",
        "completion_metadata",
        ["owner", "key", "value", "created", "completion_seq"],
    )


def downgrade() -> None:
    op.drop_table("completion_metadata")
    op.drop_table("completion_messages")
    op.drop_table("completions")
