from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
import sqlalchemy as sa

from billing_app import db
from billing_app.consumer import BatchConsumer
from moviestream_common import postgres
from moviestream_common.rabbitmq import BillingQueue, RabbitSettings


class Broker:
    """Publishes to and inspects the test's own queue, as the gateway and an operator would."""

    def __init__(self, queue: BillingQueue) -> None:
        self.queue = queue
        self.connection = pika.BlockingConnection(RabbitSettings.from_env().parameters())
        self.channel = self.connection.channel()
        queue.declare(self.channel)
        self.channel.confirm_delivery()

    def publish(self, body: bytes, message_id: str | None = "auto") -> str | None:
        if message_id == "auto":
            message_id = uuid.uuid4().hex
        self.channel.basic_publish(
            "",
            self.queue.name,
            body,
            pika.BasicProperties(delivery_mode=2, message_id=message_id, content_type="application/json"),
            mandatory=True,
        )
        return message_id

    def publish_order(self, user_id: Any = "3", items: Any = "5", amount: Any = "180") -> str | None:
        return self.publish(json.dumps({"user_id": user_id, "number_of_items": items, "total_amount": amount}).encode())

    def depth(self, name: str | None = None) -> int:
        return self.channel.queue_declare(name or self.queue.name, passive=True).method.message_count

    def dead_letters(self) -> list[tuple[pika.BasicProperties, bytes]]:
        letters = []
        while True:
            method, properties, body = self.channel.basic_get(self.queue.dead_letter, auto_ack=True)
            if method is None:
                return letters
            letters.append((properties, body))

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def queue(billing_queue: str) -> BillingQueue:
    return BillingQueue(billing_queue)


@pytest.fixture
def broker(queue: BillingQueue) -> Iterator[Broker]:
    broker = Broker(queue)
    yield broker
    broker.close()


@pytest.fixture
def engine(database: str) -> Iterator[sa.Engine]:
    engine = postgres.create_engine("unused", pool_size=2)
    db.create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def stored(engine: sa.Engine) -> Callable[[], list[dict[str, Any]]]:
    """Every row of the orders table, oldest first."""

    def rows() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(sa.select(db.orders).order_by(db.orders.c.id)).mappings()]

    return rows


class RunningConsumer:
    def __init__(self, consumer: BatchConsumer) -> None:
        self.consumer = consumer
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.consumer.consume()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def stop(self) -> None:
        self.consumer.stopping.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


@pytest.fixture
def run_consumer(engine: sa.Engine, queue: BillingQueue) -> Iterator[Callable[..., RunningConsumer]]:
    running: list[RunningConsumer] = []

    def start(batch_size: int = 100, max_wait_s: float = 0.05, use_engine: sa.Engine | None = None) -> RunningConsumer:
        consumer = BatchConsumer(
            use_engine or engine,
            RabbitSettings.from_env(),
            queue,
            batch_size=batch_size,
            max_wait_s=max_wait_s,
            stopping=threading.Event(),
        )
        handle = RunningConsumer(consumer)
        handle.thread.start()
        running.append(handle)
        return handle

    yield start
    for handle in running:
        handle.consumer.stopping.set()
        handle.thread.join(timeout=15)
