"""Fixtures every suite shares: real PostgreSQL databases and RabbitMQ queues, made per test run and removed after."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pika
import psycopg
import pytest

from devtools.stack.local_services import apply_defaults
from devtools.stack.local_stack import free_port

apply_defaults()


def _admin() -> psycopg.Connection:
    return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def make_database() -> Iterator[Callable[[str], str]]:
    """Create an empty database named after `prefix`; every one is dropped at the end."""
    created: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with _admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return name

    yield make
    with _admin() as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database(make_database: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database, named in PGDATABASE for the code under test."""
    name = make_database("test")
    monkeypatch.setenv("PGDATABASE", name)
    return name


def rabbit_parameters() -> pika.ConnectionParameters:
    from moviestream_common.rabbitmq import RabbitSettings

    return RabbitSettings.from_env().parameters()


@pytest.fixture
def billing_queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A queue name of this test's own, in BILLING_QUEUE; it and its dead-letter queue are deleted after."""
    name = f"billing_queue_test_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("BILLING_QUEUE", name)
    yield name
    connection = pika.BlockingConnection(rabbit_parameters())
    try:
        channel = connection.channel()
        channel.queue_delete(name)
        channel.queue_delete(name + ".dead-letter")
    finally:
        connection.close()


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    return free_port()
