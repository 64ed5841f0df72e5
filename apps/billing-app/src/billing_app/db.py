"""The orders table and the batch insert that makes redelivery harmless."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from moviestream_common import postgres

MESSAGE_ID_MAX = 255  # AMQP short strings hold at most 255 bytes
SCHEMA_LOCK_KEY = 0x6F7264657273  # "orders"

metadata = sa.MetaData()
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    # The broker may deliver a message again (after a crash before the ack);
    # the unique message_id turns the second insert into a no-op.
    sa.Column("message_id", sa.String(MESSAGE_ID_MAX), nullable=False, unique=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("number_of_items", sa.Integer, nullable=False),
    sa.Column("total_amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("number_of_items > 0", name="orders_items_positive"),
    sa.CheckConstraint("total_amount >= 0", name="orders_amount_not_negative"),
)


def create_schema(engine: Engine) -> None:
    postgres.create_schema(engine, metadata, lock_key=SCHEMA_LOCK_KEY)


def insert_orders(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert the rows in one statement; return the message_ids that were new."""
    if not rows:
        return set()
    statement = insert(orders).on_conflict_do_nothing(index_elements=["message_id"]).returning(orders.c.message_id)
    return set(conn.execute(statement, list(rows)).scalars())
