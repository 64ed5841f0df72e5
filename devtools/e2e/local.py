"""The platform as local processes: its own stack, databases and queue, torn down afterwards."""

from __future__ import annotations

import os
from pathlib import Path

from devtools.e2e.access import Broker, OrdersDatabase, OrderWriteGate
from devtools.stack.local_services import apply_defaults
from devtools.stack.local_stack import ScratchStack
from devtools.testing.tcp_proxy import TcpProxy
from moviestream_common.rabbitmq import RabbitSettings


class LocalPlatform:
    """Starts the three services on free ports; the gateway reaches RabbitMQ through a proxy the checks can cut."""

    def __init__(self, state_dir: Path | None = None) -> None:
        apply_defaults()
        self.broker_proxy = TcpProxy(int(os.environ["RABBITMQ_PORT"]), os.environ["RABBITMQ_HOST"]).start()
        self.scratch = ScratchStack(
            "e2e",
            state_dir=state_dir,
            extra_env={
                "api-gateway": {"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": str(self.broker_proxy.port)},
                # Small batches make a 2,000-order backlog take long enough to be interrupted.
                "billing-app": {"BILLING_BATCH_SIZE": "20"},
            },
        )
        self.stack = self.scratch.stack
        self.queue = self.scratch.queue
        self.gateway_url = self.scratch.gateway_url
        self.orders = OrdersDatabase(lambda: self.scratch.connect(self.scratch.config.billing_database))
        self.broker = Broker(lambda: RabbitSettings.from_env().parameters(), self.queue)

    def __enter__(self) -> LocalPlatform:
        try:
            self.scratch.__enter__()
        except BaseException:
            self.broker_proxy.cut()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.scratch.close()
        finally:
            self.broker_proxy.cut()

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

    def order_write_gate(self) -> OrderWriteGate:
        return self.orders.write_gate()

    def publish_raw(self, body: bytes, message_id: str) -> None:
        self.broker.publish_raw(body, message_id)

    def dead_letter_reasons(self, message_id: str) -> list[str]:
        return self.broker.dead_letter_reasons(message_id)
