"""Where the local PostgreSQL and RabbitMQ are, for the local stack and the tests.

These defaults name the servers' own factory accounts on loopback only:
PostgreSQL's `postgres` role under trust authentication (no password) and
RabbitMQ's built-in `guest` user, which the broker refuses from any
address but localhost. They are not secrets of this project; a variable
already set in the environment always wins.
"""

from __future__ import annotations

import os

DEFAULTS = {
    "PGHOST": "127.0.0.1",
    "PGPORT": "5432",
    "PGUSER": "postgres",
    "RABBITMQ_HOST": "127.0.0.1",
    "RABBITMQ_PORT": "5672",
    "RABBITMQ_USER": "guest",
    "RABBITMQ_PASSWORD": "guest",
    "RABBITMQ_VHOST": "/",
}


def apply_defaults(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    for name, value in DEFAULTS.items():
        environ.setdefault(name, value)
