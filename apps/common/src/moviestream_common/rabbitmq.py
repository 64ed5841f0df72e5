"""The billing queue: connection settings and the one declaration that publisher and consumer share.

A queue redeclared with different arguments makes RabbitMQ close the
channel (PRECONDITION_FAILED), so the gateway and billing-app both take
the declarations from here and can never disagree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote

import pika
from pika.adapters.blocking_connection import BlockingChannel

from moviestream_common.config import env_int, env_str

DEFAULT_QUEUE = "billing_queue"
DEAD_LETTER_SUFFIX = ".dead-letter"
REASON_HEADER = "x-rejection-reason"
HEARTBEAT_SECONDS = 30


@dataclass(frozen=True)
class BillingQueue:
    name: str = DEFAULT_QUEUE

    @property
    def dead_letter(self) -> str:
        return self.name + DEAD_LETTER_SUFFIX

    @classmethod
    def from_env(cls) -> BillingQueue:
        return cls(env_str("BILLING_QUEUE", DEFAULT_QUEUE))

    def declarations(self) -> list[tuple[str, dict[str, str]]]:
        """(queue, arguments) in the order to declare them: the dead-letter queue, then the work queue routing to it.

        Every queue is durable. A pika channel takes these through `declare()`; the gateway's aiormq channel
        declares the same list.
        """
        return [
            (self.dead_letter, {}),
            (
                self.name,
                {
                    "x-queue-type": "classic",
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.dead_letter,
                },
            ),
        ]

    def declare(self, channel: BlockingChannel) -> None:
        for queue, arguments in self.declarations():
            channel.queue_declare(queue=queue, durable=True, arguments=arguments or None)


@dataclass(frozen=True)
class RabbitSettings:
    host: str
    port: int
    user: str
    password: str
    vhost: str

    @classmethod
    def from_env(cls) -> RabbitSettings:
        return cls(
            host=env_str("RABBITMQ_HOST", "127.0.0.1"),
            port=env_int("RABBITMQ_PORT", 5672, minimum=1, maximum=65535),
            user=env_str("RABBITMQ_USER", "guest"),
            password=os.environ.get("RABBITMQ_PASSWORD", ""),
            vhost=env_str("RABBITMQ_VHOST", "/"),
        )

    def parameters(self, *, heartbeat: int = HEARTBEAT_SECONDS) -> pika.ConnectionParameters:
        return pika.ConnectionParameters(
            host=self.host,
            port=self.port,
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials(self.user, self.password),
            heartbeat=heartbeat,
            blocked_connection_timeout=30,
            connection_attempts=1,
            socket_timeout=5,
            stack_timeout=10,
        )

    def describe(self) -> str:
        """Where the broker is, without the credentials, for log lines."""
        return f"amqp://{self.host}:{self.port}/{quote(self.vhost, safe='')}"
