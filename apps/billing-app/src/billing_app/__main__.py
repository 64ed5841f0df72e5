"""`billing-app`: run the consumer until SIGTERM, reconnecting with backoff, with health probes on PORT."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from pika import exceptions as amqp_exc
from sqlalchemy import exc as sa_exc

from billing_app import db
from billing_app.consumer import DEFAULT_BATCH_SIZE, BatchConsumer
from billing_app.health import create_health_app, serve_health
from moviestream_common import postgres
from moviestream_common.config import ConfigError, env_int, env_str
from moviestream_common.logs import configure_logging
from moviestream_common.rabbitmq import BillingQueue, RabbitSettings
from moviestream_common.retry import Backoff

DEFAULT_DATABASE = "billing_db"
# What a lost broker or database looks like; anything else is a bug and should crash loudly.
TRANSIENT_ERRORS = (amqp_exc.AMQPError, sa_exc.OperationalError, sa_exc.InterfaceError, OSError)

log = logging.getLogger("billing_app")


def main() -> int:
    configure_logging("billing-app")
    try:
        port = env_int("PORT", 8080, minimum=1, maximum=65535)
        host = env_str("HOST", "0.0.0.0")  # noqa: S104 (the probes come from the kubelet; the local stack says 127.0.0.1)
        batch_size = env_int("BILLING_BATCH_SIZE", DEFAULT_BATCH_SIZE, minimum=1, maximum=10_000)
        max_wait_ms = env_int("BILLING_BATCH_WAIT_MS", 50, minimum=0, maximum=60_000)
        rabbit = RabbitSettings.from_env()
        queue = BillingQueue.from_env()
        engine = postgres.create_engine(DEFAULT_DATABASE, pool_size=2)
    except ConfigError as exc:
        log.error("bad configuration", extra={"error": str(exc)})
        return 2

    stopping = threading.Event()
    consumer = BatchConsumer(
        engine, rabbit, queue, batch_size=batch_size, max_wait_s=max_wait_ms / 1000, stopping=stopping
    )

    def readiness() -> dict[str, str]:
        problems = {}
        try:
            postgres.ping(engine)
        except sa_exc.SQLAlchemyError as exc:
            problems["postgres"] = type(exc).__name__
        if not consumer.connected.is_set():
            problems["rabbitmq"] = "not consuming"
        return problems

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping: finishing the batch in hand", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    server = serve_health(create_health_app(readiness), port, host)
    log.info("health probes listening", extra={"port": port, "database": postgres.describe(engine.url)})

    # Reset only once a batch is stored: a broker that accepts the connection
    # while PostgreSQL is down must not turn the backoff into a tight loop.
    backoff = Backoff()
    schema_ready = False
    while not stopping.is_set():
        try:
            if not schema_ready:
                db.create_schema(engine)
                schema_ready = True
            # Before taking a prefetch of messages from the broker, which a lost database would only hand back.
            postgres.ping(engine)
            consumer.consume(on_stored=backoff.reset)
        except TRANSIENT_ERRORS as exc:
            delay = backoff.next_delay()
            log.warning(
                "lost the broker or the database; unacknowledged messages return to the queue",
                extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": round(delay, 2)},
            )
            stopping.wait(delay)
    server.shutdown()
    engine.dispose()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
