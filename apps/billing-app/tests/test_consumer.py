from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from devtools.testing.tcp_proxy import TcpProxy
from devtools.waiting import wait_for
from moviestream_common.rabbitmq import REASON_HEADER


def test_backlog_waiting_at_start_is_drained_into_orders(broker, run_consumer, stored) -> None:
    ids = [broker.publish_order(user_id=n, items=n, amount=f"{n}.50") for n in range(1, 251)]
    running = run_consumer(batch_size=100)
    wait_for(lambda: len(stored()) == 250, timeout=20, what="250 orders")
    running.stop()
    rows = stored()
    assert [row["message_id"] for row in rows] == ids
    assert rows[9] | {"id": 0, "created_at": None} == {
        "id": 0,
        "message_id": ids[9],
        "user_id": 10,
        "number_of_items": 10,
        "total_amount": Decimal("10.50"),
        "created_at": None,
    }
    assert broker.depth() == 0


def test_strings_and_numbers_are_both_accepted(broker, run_consumer, stored) -> None:
    broker.publish_order(user_id="3", items="5", amount="180")
    broker.publish_order(user_id=3, items=5, amount=180.25)
    run_consumer()
    wait_for(lambda: len(stored()) == 2, timeout=10, what="2 orders")
    assert [(r["user_id"], r["number_of_items"], r["total_amount"]) for r in stored()] == [
        (3, 5, Decimal("180.00")),
        (3, 5, Decimal("180.25")),
    ]


def test_redelivered_message_id_is_stored_once(broker, run_consumer, stored) -> None:
    body = b'{"user_id": 1, "number_of_items": 1, "total_amount": 9}'
    broker.publish(body, message_id="same-id")
    broker.publish(body, message_id="same-id")
    running = run_consumer()
    wait_for(lambda: broker.depth() == 0 and len(stored()) == 1, timeout=10, what="the queue to drain")
    broker.publish(body, message_id="same-id")
    wait_for(lambda: broker.depth() == 0, timeout=10, what="the third copy to be consumed")
    running.stop()
    assert [row["message_id"] for row in stored()] == ["same-id"]


@pytest.mark.parametrize(
    ("body", "message_id", "reason"),
    [
        (b"not json at all", "auto", "not valid JSON"),
        (b"[1, 2, 3]", "auto", "must be a JSON object"),
        (b'{"user_id": 1, "number_of_items": 2}', "auto", "missing field(s): total_amount"),
        (b'{"user_id": 1, "number_of_items": -2, "total_amount": 5}', "auto", "number_of_items must be between"),
        (b'{"user_id": 1, "number_of_items": 2, "total_amount": "-5"}', "auto", "must not be negative"),
        (b'{"user_id": 1, "number_of_items": 2, "total_amount": "lots"}', "auto", "ASCII digits"),
        (b'{"user_id": 1, "number_of_items": 2, "total_amount": "1e5"}', "auto", "ASCII digits"),
        (b'{"user_id": "\xd9\xa3", "number_of_items": 2, "total_amount": 5}', "auto", "user_id must be a whole number"),
        (b'{"user_id": 1, "number_of_items": 2.5, "total_amount": 5}', "auto", "whole number"),
        (b'{"user_id": 1, "number_of_items": 2, "total_amount": 1e40}', "auto", "ASCII digits"),
        (b'{"user_id": 1, "number_of_items": 2, "total_amount": 10000000000}', "auto", "at most"),
        (b'{"user_id": true, "number_of_items": 2, "total_amount": 5}', "auto", "must be a JSON integer"),
        (b'{"user_id": 1, "number_of_items": 2, "total_amount": 5}', None, "no message_id"),
    ],
)
def test_poison_message_is_dead_lettered_with_its_reason_and_the_next_one_is_stored(
    broker, run_consumer, stored, body, message_id, reason
) -> None:
    poison_id = broker.publish(body, message_id=message_id)
    good_id = broker.publish_order()
    running = run_consumer()
    wait_for(lambda: len(stored()) == 1, timeout=10, what="the good order")
    wait_for(lambda: broker.depth(broker.queue.dead_letter) == 1, timeout=10, what="the dead letter")
    running.stop()
    assert [row["message_id"] for row in stored()] == [good_id]
    assert broker.depth() == 0
    [(properties, dead_body)] = broker.dead_letters()
    assert dead_body == body
    assert properties.message_id == poison_id
    assert reason in properties.headers[REASON_HEADER]


def test_nothing_is_acknowledged_while_the_database_is_down(broker, run_consumer, engine, unused_port) -> None:
    for _ in range(5):
        broker.publish_order()
    unreachable = sa.create_engine(engine.url.set(port=unused_port), connect_args={"connect_timeout": 2})
    running = run_consumer(use_engine=unreachable)
    running.thread.join(timeout=15)
    assert isinstance(running.error, sa.exc.OperationalError)
    assert broker.depth() == 5


def test_consumer_resumes_where_it_stopped_after_the_database_connection_is_cut(
    broker, run_consumer, engine, stored
) -> None:
    proxy = TcpProxy(engine.url.port).start()
    via_proxy = sa.create_engine(engine.url.set(port=proxy.port), pool_pre_ping=True)
    for _ in range(20):
        broker.publish_order()
    first = run_consumer(use_engine=via_proxy, batch_size=5)
    wait_for(lambda: len(stored()) == 20, timeout=10, what="20 orders")
    proxy.cut()
    for _ in range(20):
        broker.publish_order()
    first.thread.join(timeout=15)
    assert first.error is not None
    assert len(stored()) == 20
    proxy.start()
    second = run_consumer(use_engine=via_proxy, batch_size=5)
    wait_for(lambda: len(stored()) == 40, timeout=15, what="40 orders")
    second.stop()
    assert len({row["message_id"] for row in stored()}) == 40
