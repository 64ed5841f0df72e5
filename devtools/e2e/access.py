"""Reaching the billing database and the broker directly, the same way on every platform."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pika
import psycopg
from pika.adapters.blocking_connection import BlockingChannel

from devtools.waiting import wait_for
from moviestream_common.rabbitmq import REASON_HEADER, BillingQueue

LOCK_ORDERS = "LOCK TABLE orders IN EXCLUSIVE MODE"  # readers pass, billing-app's inserts wait
WAITING_ON_ORDERS = "SELECT pid FROM pg_locks WHERE relation = 'orders'::regclass AND NOT granted"


class OrdersDatabase:
    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self.connect = connect

    def count(self, user_id: int) -> int:
        with self.connect() as conn:
            return conn.execute("SELECT count(*) FROM orders WHERE user_id = %s", [user_id]).fetchone()[0]

    def write_gate(self, timeout: float = 30) -> OrderWriteGate:
        return OrderWriteGate(self.connect, timeout)


class OrderWriteGate:
    """Holds billing-app's writes, then lets exactly one of its transactions commit and holds the next.

    Polling the row count and then taking a lock races a consumer that stores
    a backlog in a few milliseconds. PostgreSQL grants a table's lock requests
    in the order they queue, so: `first` holds the table; billing-app's insert
    queues; `second` queues behind that insert; releasing `first` lets the
    insert through, and `second` holds the table from that commit on.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection], timeout: float) -> None:
        self.connect = connect
        self.timeout = timeout
        self.held: list[psycopg.Connection] = []
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="order-write-gate")
        self.queued: Future[object] | None = None  # the second lock request, once made

    def __enter__(self) -> OrderWriteGate:
        self._hold().execute(LOCK_ORDERS)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.queued is not None and not self.queued.done():
            self.held[-1].cancel_safe()  # a lock request still queued would keep close() waiting
        for conn in self.held:
            conn.close()
        self.pool.shutdown()

    def let_one_commit_through(self) -> None:
        first = self.held[0]
        wait_for(lambda: self._waiting(first), timeout=self.timeout, what="an insert waiting on the orders lock")
        second = self._hold()
        self.queued = self.pool.submit(second.execute, LOCK_ORDERS)
        pid = second.info.backend_pid
        wait_for(lambda: pid in self._waiting(first), timeout=self.timeout, what="the second lock to queue")
        first.rollback()
        self.queued.result(timeout=self.timeout)

    def _hold(self) -> psycopg.Connection:
        conn = self.connect()
        conn.autocommit = False  # the lock lasts as long as the transaction
        self.held.append(conn)
        return conn

    @staticmethod
    def _waiting(conn: psycopg.Connection) -> set[int]:
        return {pid for (pid,) in conn.execute(WAITING_ON_ORDERS)}


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
