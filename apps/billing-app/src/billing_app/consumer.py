"""The batch consumer: prefetch a batch, store it in one transaction, acknowledge it with one multiple-ack.

A message is acknowledged only after its row is committed (or after it is
confirmed in the dead-letter queue), so a crash at any point means
redelivery, never loss; the unique message_id makes redelivery harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import BasicProperties
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from billing_app import db
from moviestream_common import metrics
from moviestream_common.orders import InvalidOrder, parse_order_body
from moviestream_common.rabbitmq import REASON_HEADER, BillingQueue, RabbitSettings

log = logging.getLogger("billing_app.consumer")
IDLE_POLL_S = 0.05
DEFAULT_BATCH_SIZE = 500  # orders per transaction; prefetch is twice this


@dataclass(frozen=True)
class Delivery:
    tag: int
    properties: BasicProperties
    body: bytes


@dataclass
class Batch:
    deliveries: list[Delivery] = field(default_factory=list)
    deadline: float = 0.0

    def add(self, delivery: Delivery, max_wait: float) -> None:
        if not self.deliveries:
            self.deadline = time.monotonic() + max_wait
        self.deliveries.append(delivery)


class BatchConsumer:
    def __init__(
        self,
        engine: Engine,
        rabbit: RabbitSettings,
        queue: BillingQueue,
        *,
        batch_size: int,
        max_wait_s: float,
        stopping: threading.Event,
    ) -> None:
        self.engine = engine
        self.rabbit = rabbit
        self.queue = queue
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.stopping = stopping
        self.connected = threading.Event()

    def consume(self, on_stored: Callable[[], None] | None = None) -> None:
        """Consume until `stopping` is set; errors from the broker or the database propagate.

        `on_stored` is called after each batch is committed and acknowledged:
        only that, not a connection, shows that both servers work again.
        """
        connection = pika.BlockingConnection(self.rabbit.parameters())
        try:
            channel = connection.channel()
            self.queue.declare(channel)
            channel.confirm_delivery()  # dead-letter publishes must be confirmed before the ack
            channel.basic_qos(prefetch_count=self.batch_size * 2)
            self.connected.set()
            log.info("consuming", extra={"queue": self.queue.name, "broker": self.rabbit.describe()})
            self._loop(channel, on_stored or (lambda: None))
        finally:
            self.connected.clear()
            if connection.is_open:
                connection.close()

    def _loop(self, channel: BlockingChannel, on_stored: Callable[[], None]) -> None:
        batch = Batch()
        for method, properties, body in channel.consume(self.queue.name, inactivity_timeout=IDLE_POLL_S):
            if method is not None:
                batch.add(Delivery(method.delivery_tag, properties, body), self.max_wait_s)
            full = len(batch.deliveries) >= self.batch_size
            due = method is None or time.monotonic() >= batch.deadline
            if batch.deliveries and (full or due or self.stopping.is_set()):
                self._flush(channel, batch.deliveries)
                on_stored()
                batch = Batch()
            if self.stopping.is_set():
                break
        channel.cancel()

    def _flush(self, channel: BlockingChannel, deliveries: list[Delivery]) -> None:
        rows: list[dict[str, Any]] = []
        for delivery in deliveries:
            try:
                rows.append(_order_row(delivery))
            except InvalidOrder as exc:
                self._dead_letter(channel, delivery, str(exc))
        stored = self._store(channel, rows, deliveries)
        channel.basic_ack(delivery_tag=deliveries[-1].tag, multiple=True)
        metrics.batch_done(messages=len(deliveries), valid=len(rows), stored=len(stored))
        # One line per batch: a line per order cost a quarter of the throughput at thousands of orders a second.
        ids = [row["message_id"] for row in rows]
        log.info(
            "orders stored",
            extra={
                "stored": len(stored),
                "message_ids": [i for i in ids if i in stored],
                "already_stored": [i for i in ids if i not in stored],
            },
        )

    def _store(self, channel: BlockingChannel, rows: list[dict[str, Any]], deliveries: list[Delivery]) -> set[str]:
        try:
            with self.engine.begin() as conn:
                return db.insert_orders(conn, rows)
        except (sa_exc.DataError, sa_exc.IntegrityError):
            # Validation should make this unreachable; if the database still
            # refuses a row, find it and dead-letter it rather than retry forever.
            log.warning("batch refused by the database, storing row by row")
        by_id = {d.properties.message_id: d for d in deliveries}
        stored: set[str] = set()
        with self.engine.begin() as conn:
            for row in list(rows):
                try:
                    with conn.begin_nested():
                        stored |= db.insert_orders(conn, [row])
                except (sa_exc.DataError, sa_exc.IntegrityError) as exc:
                    rows.remove(row)
                    self._dead_letter(channel, by_id[row["message_id"]], f"database refused it: {exc.orig}")
        return stored

    def _dead_letter(self, channel: BlockingChannel, delivery: Delivery, reason: str) -> None:
        properties = delivery.properties
        channel.basic_publish(
            exchange="",
            routing_key=self.queue.dead_letter,
            body=delivery.body,
            properties=BasicProperties(
                content_type=properties.content_type,
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=properties.message_id,
                headers={**(properties.headers or {}), REASON_HEADER: reason},
            ),
            mandatory=True,
        )
        log.warning("message dead-lettered", extra={"message_id": properties.message_id, "reason": reason})


def _order_row(delivery: Delivery) -> dict[str, Any]:
    message_id = delivery.properties.message_id
    if not message_id:
        raise InvalidOrder("the message has no message_id property")
    order = parse_order_body(delivery.body)
    return {
        "message_id": message_id,
        "user_id": order.user_id,
        "number_of_items": order.number_of_items,
        "total_amount": order.total_amount,
    }
