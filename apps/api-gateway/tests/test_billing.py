from __future__ import annotations

import json
import os

import pika
import pytest

from devtools.testing.aiohttp_server import BackgroundServer
from devtools.testing.tcp_proxy import TcpProxy
from devtools.waiting import wait_for
from moviestream_common.rabbitmq import RabbitSettings

ORDER = {"user_id": "3", "number_of_items": "5", "total_amount": "180"}


def test_order_is_published_persistent_with_a_fresh_message_id(gateway: BackgroundServer, queue_reader) -> None:
    assert gateway.post("/api/billing", json=ORDER).json() == {"message": "Message posted"}
    response = gateway.post("/api/billing", json={"user_id": 4, "number_of_items": 1, "total_amount": 9.99})
    assert response.status == 200
    [(first, first_body), (second, second_body)] = queue_reader()
    assert json.loads(first_body) == {"user_id": 3, "number_of_items": 5, "total_amount": "180.00"}
    assert json.loads(second_body) == {"user_id": 4, "number_of_items": 1, "total_amount": "9.99"}
    assert first.delivery_mode == 2
    assert first.content_type == "application/json"
    assert len(first.message_id) == 32
    assert first.message_id != second.message_id


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{oops", "body is not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"user_id": "3", "number_of_items": "5"}', "missing field(s): total_amount"),
        (b'{"user_id": "3", "number_of_items": "5", "total_amount": "-1"}', "must not be negative"),
        (b'{"user_id": "3", "number_of_items": "five", "total_amount": "1"}', "whole number"),
        (b'{"user_id": "1e5", "number_of_items": "5", "total_amount": "1"}', "user_id must be a whole number"),
        (
            b'{"user_id": "3", "number_of_items": "1_000", "total_amount": "1"}',
            "number_of_items must be a whole number",
        ),
        (b'{"user_id": "3", "number_of_items": "5", "total_amount": "1_0.5"}', "total_amount must be an amount"),
        (b'{"user_id": "+3", "number_of_items": "5", "total_amount": "1"}', "user_id must be a whole number"),
        (b'{"user_id": "3", "number_of_items": 0, "total_amount": "1"}', "between 1 and"),
        (b'{"user_id": "3", "number_of_items": 1, "total_amount": "1.005"}', "two decimal places"),
        (b'{"user_id": "3", "number_of_items": 1, "total_amount": "1", "coupon": "x"}', "unknown field(s): coupon"),
        (b'{"user_id": "3", "number_of_items": 1, "total_amount": Infinity}', "body is not valid JSON"),
    ],
)
def test_invalid_order_answers_400_and_publishes_nothing(
    gateway: BackgroundServer, queue_reader, body, message
) -> None:
    response = gateway.post("/api/billing", body=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert message in response.json()["error"]
    assert queue_reader() == []


def test_oversized_order_answers_413(gateway: BackgroundServer, queue_reader) -> None:
    response = gateway.post("/api/billing", body=b" " * 20_000 + json.dumps(ORDER).encode())
    assert response.status == 413
    assert "error" in response.json()
    assert queue_reader() == []


def test_broker_down_answers_503_then_recovers_by_itself(gateway_for, inventory_url, queue_reader) -> None:
    proxy = TcpProxy(int(os.environ["RABBITMQ_PORT"])).start()
    client: BackgroundServer = gateway_for(inventory_url, RABBITMQ_PORT=str(proxy.port))
    assert client.post("/api/billing", json=ORDER).status == 200
    proxy.cut()
    response = client.post("/api/billing", json=ORDER)
    assert response.status == 503
    assert response.json()["error"].startswith("order not accepted")
    assert client.get("/readyz").json()["problems"].keys() == {"rabbitmq"}
    proxy.start()
    wait_for(lambda: client.post("/api/billing", json=ORDER).status == 200, timeout=15, what="a 200 again")
    assert len(queue_reader()) == 2


def test_an_order_the_broker_cannot_route_answers_503_not_posted(gateway: BackgroundServer, billing_queue) -> None:
    assert gateway.post("/api/billing", json=ORDER).status == 200  # the gateway has connected and declared the queue
    connection = pika.BlockingConnection(RabbitSettings.from_env().parameters())
    connection.channel().queue_delete(billing_queue)  # the mandatory publish now comes back unroutable
    connection.close()
    response = gateway.post("/api/billing", json=ORDER)
    assert response.status == 503
    assert response.json() == {"error": "order not accepted: the broker refused the message: PublishError"}
