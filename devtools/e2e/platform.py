"""What the checks need from wherever the platform runs: a gateway URL and a few levers."""

from __future__ import annotations

from typing import Protocol

from devtools.e2e.access import OrderWriteGate


class Platform(Protocol):
    gateway_url: str

    def stop_billing(self) -> None:
        """Stop billing-app gracefully and wait until it is gone."""

    def start_billing(self) -> None:
        """Start billing-app and wait until it is ready."""

    def kill_billing(self) -> None:
        """Kill billing-app without warning (SIGKILL) and wait until it is gone."""

    def stop_broker(self) -> None:
        """Make RabbitMQ unreachable from the gateway."""

    def start_broker(self) -> None:
        """Make RabbitMQ reachable again."""

    def count_orders(self, user_id: int) -> int:
        """How many rows the orders table holds for this user."""

    def order_write_gate(self) -> OrderWriteGate:
        """Locks on the orders table that hold billing-app's commits and let exactly one through."""

    def publish_raw(self, body: bytes, message_id: str) -> None:
        """Publish a message straight to billing_queue, as a misbehaving producer would."""

    def dead_letter_reasons(self, message_id: str) -> list[str]:
        """The rejection reasons of dead letters with this message_id (consumed)."""
