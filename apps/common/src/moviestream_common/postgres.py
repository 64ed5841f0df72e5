"""PostgreSQL access from the standard libpq variables (needs the `postgres` extra)."""

from __future__ import annotations

import os

import sqlalchemy as sa
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
