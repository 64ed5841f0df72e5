"""Are the local PostgreSQL and RabbitMQ reachable? Says exactly what is missing and how to get it.

`python -m devtools.stack.preflight` exits 0 when both answer, 1 otherwise.
"""

from __future__ import annotations

import os
import sys

import pika
import psycopg
from pika import exceptions as amqp_exc

from devtools.stack.local_services import apply_defaults
from moviestream_common.rabbitmq import RabbitSettings


def postgres_problem() -> str | None:
    try:
        psycopg.connect(dbname="postgres", connect_timeout=3).close()
    except psycopg.Error as exc:
        where = f"{os.environ['PGUSER']}@{os.environ['PGHOST']}:{os.environ['PGPORT']}"
        return f"PostgreSQL does not answer as {where}: {str(exc).strip()}\n" + postgres_hint(str(exc))
    return None


def postgres_hint(message: str) -> str:
    if "password" in message:
        # A server installed by Debian asks for one over TCP, and its postgres role has none.
        return (
            "  The server answers but wants a password: set PGPASSWORD (after e.g.\n"
            "  `sudo -u postgres psql -c \"ALTER ROLE postgres PASSWORD '<choose one>'\"`), or let postgres in\n"
            "  from 127.0.0.1 without one: a line `host all postgres 127.0.0.1/32 trust` at the top of\n"
            "  pg_hba.conf, then `sudo pg_ctlcluster <version> main reload`."
        )
    return (
        "  Start a local server (Debian: pg_ctlcluster <version> main start), or run\n"
        "  `docker compose -f tests/compose.yaml up -d`, or point PGHOST, PGPORT, PGUSER\n"
        "  and PGPASSWORD at a server where that user may create databases."
    )


def rabbitmq_problem() -> str | None:
    settings = RabbitSettings.from_env()
    try:
        pika.BlockingConnection(settings.parameters()).close()
    except (amqp_exc.AMQPError, OSError) as exc:
        return (
            f"RabbitMQ does not answer at {settings.describe()} as {settings.user}: {exc!r}\n"
            "  Start a local broker (Debian: rabbitmq-server -detached), or run\n"
            "  `docker compose -f tests/compose.yaml up -d`, or point RABBITMQ_HOST, RABBITMQ_PORT,\n"
            "  RABBITMQ_USER and RABBITMQ_PASSWORD at a broker."
        )
    return None


def problems() -> list[str]:
    apply_defaults()
    return [problem for problem in (postgres_problem(), rabbitmq_problem()) if problem]


def main() -> int:
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
