"""Publishing orders to billing_queue: persistent, confirmed by the broker, one connection per thread.

pika's BlockingConnection must not be shared between threads, so each
gunicorn thread keeps its own. A broker that cannot be reached is not
tried again by that thread until its backoff delay has passed, so while
RabbitMQ is down requests answer 503 at once instead of waiting.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid

import pika
from pika import exceptions as amqp_exc

from moviestream_common.orders import Order
from moviestream_common.rabbitmq import BillingQueue, RabbitSettings
from moviestream_common.retry import Backoff

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker did not confirm the message; the order must not be reported as taken."""


class _ThreadState(threading.local):
    connection: pika.BlockingConnection | None = None
    channel: pika.adapters.blocking_connection.BlockingChannel | None = None
    retry_at: float = 0.0

    def __init__(self) -> None:
        self.backoff = Backoff(first=0.25, cap=5.0)


class OrderPublisher:
    def __init__(self, rabbit: RabbitSettings, queue: BillingQueue) -> None:
        self.rabbit = rabbit
        self.queue = queue
        self._state = _ThreadState()

    def publish(self, order: Order) -> str:
        """Publish and wait for the broker's confirm; return the message_id or raise BrokerUnavailable.

        A publish interrupted by a lost connection is sent once more on a new
        one with the same message_id, which billing-app stores only once.
        """
        message_id = uuid.uuid4().hex
        body = order.to_json()
        for attempt in (1, 2):
            channel = self._channel()
            try:
                channel.basic_publish(
                    exchange="",
                    routing_key=self.queue.name,
                    body=body,
                    properties=pika.BasicProperties(
                        content_type="application/json",
                        delivery_mode=pika.DeliveryMode.Persistent,
                        message_id=message_id,
                    ),
                    mandatory=True,
                )
                return message_id
            except (amqp_exc.NackError, amqp_exc.UnroutableError) as exc:
                raise BrokerUnavailable(f"the broker refused the message: {type(exc).__name__}") from None
            except (amqp_exc.AMQPError, OSError) as exc:
                self._drop(exc)
                if attempt == 2:
                    raise BrokerUnavailable("lost the connection to the broker") from None
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """Raise BrokerUnavailable unless this thread holds an open channel."""
        self._channel()

    def _channel(self) -> pika.adapters.blocking_connection.BlockingChannel:
        state = self._state
        if state.channel is not None and state.channel.is_open:
            try:
                # Services heartbeats and notices a connection the broker closed meanwhile.
                state.connection.process_data_events(time_limit=0)
                return state.channel
            except (amqp_exc.AMQPError, OSError) as exc:
                self._drop(exc)
        if time.monotonic() < state.retry_at:
            raise BrokerUnavailable("the broker is unreachable, retrying shortly")
        try:
            connection = pika.BlockingConnection(self.rabbit.parameters())
            channel = connection.channel()
            self.queue.declare(channel)
            channel.confirm_delivery()
        except (amqp_exc.AMQPError, OSError) as exc:
            state.retry_at = time.monotonic() + state.backoff.next_delay()
            log.warning("cannot reach the broker", extra={"broker": self.rabbit.describe(), "error": repr(exc)})
            raise BrokerUnavailable("the broker is unreachable") from None
        state.connection, state.channel = connection, channel
        state.backoff.reset()
        state.retry_at = 0.0
        log.info("connected to the broker", extra={"broker": self.rabbit.describe()})
        return channel

    def _drop(self, exc: BaseException) -> None:
        state = self._state
        log.warning("broker connection lost", extra={"error": repr(exc)})
        if state.connection is not None and state.connection.is_open:
            with contextlib.suppress(amqp_exc.AMQPError, OSError):
                state.connection.close()
        state.connection = state.channel = None

    def close(self) -> None:
        if self._state.connection is not None and self._state.connection.is_open:
            self._state.connection.close()
