"""Stored responses (the Responses API) and their input items.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("response", sa.JSON),
        sa.Column("events", sa.JSON),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("id", name="uq_responses_id"),
    )
    op.create_index("ix_responses_owner", "responses", ["owner", "id"])
    op.create_table(
        "response_items",
        sa.Column(
            "response_seq",
            Seq,
            sa.ForeignKey("responses.seq", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("item", sa.JSON, nullable=False),
    )
    op.create_index("ix_response_items_item", "response_items", ["response_seq", "item_id"])


def downgrade() -> None:
    op.drop_table("response_items")
    op.drop_table("responses")
