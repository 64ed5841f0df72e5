"""Reaching the billing database and the broker directly, the same way on every platform."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pika
import psycopg
from pika.adapters.blocking_connection import BlockingChannel

from moviestream_common.rabbitmq import REASON_HEADER, BillingQueue

LOCK_APPLICATION = "e2e-order-lock"


class OrdersDatabase:
    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self.connect = connect

    def count(self, user_id: int) -> int:
        with self.connect() as conn:
            return conn.execute("SELECT count(*) FROM orders WHERE user_id = %s", [user_id]).fetchone()[0]

    @contextlib.contextmanager
    def blocking_writes(self) -> Iterator[None]:
        """Hold a lock that lets readers in and keeps billing-app from committing."""
        with self.connect() as conn, conn.transaction():
            conn.execute("LOCK TABLE orders IN EXCLUSIVE MODE")
            yield


class Broker:
    def __init__(self, parameters: Callable[[], pika.ConnectionParameters], queue: BillingQueue) -> None:
        self.parameters = parameters
        self.queue = queue

    @contextlib.contextmanager
    def channel(self) -> Iterator[BlockingChannel]:
        connection = pika.BlockingConnection(self.parameters())
        try:
            yield connection.channel()
        finally:
            if connection.is_open:
                connection.close()

    def publish_raw(self, body: bytes, message_id: str) -> None:
        with self.channel() as channel:
            self.queue.declare(channel)
            channel.confirm_delivery()
            properties = pika.BasicProperties(delivery_mode=2, message_id=message_id)
            channel.basic_publish("", self.queue.name, body, properties, mandatory=True)

    def dead_letter_reasons(self, message_id: str) -> list[str]:
        """Take the dead letters with this message_id and return their reasons; leave the others."""
        reasons = []
        with self.channel() as channel:
            while True:
                method, properties, _ = channel.basic_get(self.queue.dead_letter, auto_ack=False)
                if method is None:
                    return reasons
                if properties.message_id == message_id:
                    reasons.append((properties.headers or {}).get(REASON_HEADER, ""))
                    channel.basic_ack(method.delivery_tag)
