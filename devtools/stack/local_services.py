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


# What a service reads to find the servers and size itself; `stack.up` keeps these with the stack.
SETTINGS = (
    *DEFAULTS,
    "PGPASSWORD",
    "PGCONNECT_TIMEOUT",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "STARTUP_TIMEOUT",
    "INVENTORY_TIMEOUT",
    "INVENTORY_CONNECT_TIMEOUT",
    "BILLING_BATCH_SIZE",
    "BILLING_BATCH_WAIT_MS",
)
# What a process needs to run at all, which names no server: taken from the shell that starts it.
PROCESS = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def server_settings() -> dict[str, str]:
    """The settings of SETTINGS set now (the defaults for the local servers included)."""
    environ = dict(os.environ)
    apply_defaults(environ)
    return {name: environ[name] for name in SETTINGS if name in environ}


def process_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in PROCESS if name in os.environ}


def apply_defaults(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    for name, value in DEFAULTS.items():
        environ.setdefault(name, value)
