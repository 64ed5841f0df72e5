"""The write gate of the mid-backlog check, against a real PostgreSQL and a writer as fast as billing-app's."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from devtools.e2e.access import OrdersDatabase
from devtools.waiting import Timeout, wait_for

ROWS_PER_COMMIT = 50


@pytest.fixture
def orders(database: str) -> OrdersDatabase:
    with psycopg.connect(dbname=database, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL)")
    return OrdersDatabase(lambda: psycopg.connect(dbname=database, autocommit=True))  # as the platforms connect


@pytest.fixture
def start_writer(orders: OrdersDatabase) -> Iterator[Callable[[], None]]:
    """Commit ROWS_PER_COMMIT rows per transaction, back to back, until the test ends."""
    stopping = threading.Event()
    threads: list[threading.Thread] = []

    def write() -> None:
        with orders.connect() as conn:
            while not stopping.is_set():
                with conn.transaction():
                    conn.execute("INSERT INTO orders (user_id) SELECT 7 FROM generate_series(1, %s)", [ROWS_PER_COMMIT])

    def start() -> None:
        threads.append(threading.Thread(target=write, daemon=True))
        threads[-1].start()

    yield start
    stopping.set()
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive(), "the writer stayed blocked after the gate closed"


def test_exactly_one_transaction_commits_and_the_next_is_held(
    orders: OrdersDatabase, start_writer: Callable[[], None]
) -> None:
    with orders.write_gate(timeout=10) as gate:
        start_writer()
        time.sleep(0.2)
        assert orders.count(7) == 0
        gate.let_one_commit_through()
        assert orders.count(7) == ROWS_PER_COMMIT
        time.sleep(0.3)
        assert orders.count(7) == ROWS_PER_COMMIT
    wait_for(lambda: orders.count(7) > ROWS_PER_COMMIT, timeout=10, what="the writer to go on after the gate")


def test_without_a_writer_the_gate_times_out_and_releases_the_table(orders: OrdersDatabase) -> None:
    with pytest.raises(Timeout, match="an insert waiting on the orders lock"), orders.write_gate(timeout=0.3) as gate:
        gate.let_one_commit_through()
    with orders.connect() as conn:
        conn.execute("SET lock_timeout = '2s'")
        conn.execute("INSERT INTO orders (user_id) VALUES (8)")
    assert orders.count(8) == 1
