"""The platform as local processes: its own stack, databases and queue, torn down afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from devtools.e2e.access import Broker, OrdersDatabase
from devtools.local_services import apply_defaults
from devtools.stack import Stack, StackConfig
from devtools.tcp_proxy import TcpProxy
from moviestream_common.rabbitmq import BillingQueue, RabbitSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalPlatform:
    """Starts the three services on free ports; the gateway reaches RabbitMQ through a proxy the checks can cut."""

    def __init__(self, state_dir: Path | None = None) -> None:
        apply_defaults()
        suffix = uuid.uuid4().hex[:8]
        self.broker_proxy = TcpProxy(int(os.environ["RABBITMQ_PORT"]), os.environ["RABBITMQ_HOST"]).start()
        config = StackConfig(
            state_dir=state_dir or Path(tempfile.mkdtemp(prefix="e2e-stack-")),
            gateway_port=_free_port(),
            inventory_port=_free_port(),
            billing_port=_free_port(),
            inventory_database=f"e2e_movies_{suffix}",
            billing_database=f"e2e_billing_{suffix}",
            queue=f"billing_queue_e2e_{suffix}",
            extra_env={
                "api-gateway": {"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": str(self.broker_proxy.port)},
                # Small batches make a 2,000-order backlog take long enough to be interrupted.
                "billing-app": {"BILLING_BATCH_SIZE": "20"},
            },
        )
        self.stack = Stack(config)
        self.queue = BillingQueue(config.queue)
        self.gateway_url = f"http://127.0.0.1:{config.gateway_port}"
        self.orders = OrdersDatabase(self._billing_db)
        self.broker = Broker(lambda: RabbitSettings.from_env().parameters(), self.queue)

    def __enter__(self) -> LocalPlatform:
        try:
            self.stack.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.stack.down()
        self.broker_proxy.cut()
        with self._admin() as conn:
            for name in (self.stack.config.inventory_database, self.stack.config.billing_database):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        with self.broker.channel() as channel:
            channel.queue_delete(self.queue.name)
            channel.queue_delete(self.queue.dead_letter)

    # -- levers -------------------------------------------------------------

    def stop_billing(self) -> None:
        self.stack.stop("billing-app")

    def start_billing(self) -> None:
        self.stack.start("billing-app")

    def kill_billing(self) -> None:
        self.stack.kill("billing-app")

    def stop_broker(self) -> None:
        self.broker_proxy.cut()

    def start_broker(self) -> None:
        self.broker_proxy.start()

    def count_orders(self, user_id: int) -> int:
        return self.orders.count(user_id)

    def blocking_order_writes(self) -> contextlib.AbstractContextManager[None]:
        return self.orders.blocking_writes()

    def publish_raw(self, body: bytes, message_id: str) -> None:
        self.broker.publish_raw(body, message_id)

    def dead_letter_reasons(self, message_id: str) -> list[str]:
        return self.broker.dead_letter_reasons(message_id)

    # -- connections --------------------------------------------------------

    @staticmethod
    def _admin() -> psycopg.Connection:
        return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5)

    def _billing_db(self) -> psycopg.Connection:
        return psycopg.connect(dbname=self.stack.config.billing_database, autocommit=True, connect_timeout=5)
