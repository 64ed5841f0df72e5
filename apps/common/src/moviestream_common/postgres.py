"""PostgreSQL access from the standard libpq variables (needs the `postgres` extra)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg
import sqlalchemy as sa
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool
from sqlalchemy.engine import URL, Engine

from moviestream_common.config import env_int, env_str


def postgres_url(default_database: str) -> URL:
    """The SQLAlchemy URL from PGHOST, PGPORT, PGDATABASE, PGUSER and PGPASSWORD.

    Only the database has a service default; the password has none, so
    without PGPASSWORD the server's own authentication applies (trust,
    peer, or ~/.pgpass).
    """
    return URL.create(
        "postgresql+psycopg",
        username=env_str("PGUSER", "postgres"),
        password=os.environ.get("PGPASSWORD") or None,
        host=env_str("PGHOST", "127.0.0.1"),
        port=env_int("PGPORT", 5432, minimum=1, maximum=65535),
        database=env_str("PGDATABASE", default_database),
    )


def create_engine(default_database: str, *, pool_size: int) -> Engine:
    """An engine whose pool notices connections a database restart has broken."""
    return sa.create_engine(
        postgres_url(default_database),
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": env_int("PGCONNECT_TIMEOUT", 5, minimum=1)},
    )


def create_pool(default_database: str, *, size: int) -> ConnectionPool:
    """A psycopg pool of up to `size` autocommit connections, for paths where SQLAlchemy's layers cost too much.

    Connections are not checked at every checkout (a round trip each):
    `read` retries once after a connection a restart has broken, and
    `writing` checks its connection first. A request waits at most
    PGCONNECT_TIMEOUT seconds for a connection (PoolTimeout).
    """
    url = postgres_url(default_database)
    wait = env_int("PGCONNECT_TIMEOUT", 5, minimum=1)
    conninfo = make_conninfo(
        host=url.host, port=url.port, dbname=url.database, user=url.username, password=url.password
    )
    return ConnectionPool(
        conninfo,
        # It grows to `size` as requests wait for connections, and idle ones close after ten minutes.
        min_size=1,
        max_size=size,
        kwargs={"autocommit": True, "connect_timeout": wait},
        timeout=wait,
        name=url.database,
        open=True,
    )


def read(pool: ConnectionPool, query: LiteralString | sql.Composable, params: Sequence[Any] = ()) -> list[tuple]:
    """The rows of a read-only query. A connection a database restart has broken is found out by the query
    itself; the pool then drops every broken connection and the query, harmless to repeat, runs once more."""
    conn: psycopg.Connection | None = None
    try:
        with pool.connection() as conn:
            return conn.execute(query, params).fetchall()
    except psycopg.OperationalError:
        if conn is None or not conn.broken:
            raise
        pool.check()
    with pool.connection() as conn:
        return conn.execute(query, params).fetchall()


@contextmanager
def writing(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    """A connection checked first, so a write is never sent on a connection a restart broke (nor repeated:
    whether a failed one was committed cannot be known). In autocommit: a write of one statement is atomic."""
    conn = pool.getconn()
    try:
        pool.check_connection(conn)
    except BaseException as exc:
        pool.putconn(conn)
        if not isinstance(exc, psycopg.OperationalError):
            raise
        pool.check()
        conn = pool.getconn()
    try:
        yield conn
    finally:
        pool.putconn(conn)


def describe(url: URL) -> str:
    """Where the database is, without the password, for log lines."""
    return url.render_as_string(hide_password=True)


def create_schema(engine: Engine, metadata: sa.MetaData, *, lock_key: int, extensions: tuple[str, ...] = ()) -> None:
    """Create the extensions and tables that are missing, safely when several replicas start at once.

    The transaction-scoped advisory lock makes concurrent starts run one
    after the other, and each finds what the previous one created.
    """
    with engine.begin() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key)))
        for extension in extensions:
            conn.execute(sa.text(f'CREATE EXTENSION IF NOT EXISTS "{extension}"'))
        metadata.create_all(conn, checkfirst=True)


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
