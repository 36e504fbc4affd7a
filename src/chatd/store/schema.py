"""Tables of the store (SQLAlchemy Core); Alembic migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    false,
)

metadata = MetaData()

# INTEGER PRIMARY KEY is SQLite's rowid: an autoincrementing BIGINT elsewhere.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

completions = Table(
    "completions",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("model", String(255), nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("request", JSON),
    Column("response", JSON),
    Column("deleted", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("id", name="uq_completions_id"),
    Index("ix_completions_owner_created", "owner", "created", "seq"),
    Index("ix_completions_owner_model_created", "owner", "model", "created", "seq"),
)

messages = Table(
    "completion_messages",
    metadata,
    Column(
        "completion_seq",
        SeqType,
        ForeignKey("completions.seq", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("message", JSON, nullable=False),
)

metadata_pairs = Table(
    "completion_metadata",
    metadata,
    Column(
        "completion_seq",
        SeqType,
        ForeignKey("completions.seq", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(64), primary_key=True),
    Column("value", String(512), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("created", BigInteger, nullable=False),
    Index("ix_completion_metadata_lookup", "owner", "key", "value", "created", "completion_seq"),
)

responses = Table(
    "responses",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("status", String(32), nullable=False),
    Column("response", JSON),
    Column("events", JSON),  # a background response's stream events, for replay
    Column("deleted", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("id", name="uq_responses_id"),
    Index("ix_responses_owner", "owner", "id"),
)

response_items = Table(
    "response_items",
    metadata,
    Column(
        "response_seq",
        SeqType,
        ForeignKey("responses.seq", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("item_id", String(128), nullable=False),
    Column("item", JSON, nullable=False),
    Index("ix_response_items_item", "response_seq", "item_id"),
)

# ids of responses an upstream holds (the Responses API relayed): whose, and which upstream
relayed_responses = Table(
    "relayed_responses",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("upstream", String(255), nullable=False),
    Column("created", BigInteger, nullable=False),
)
