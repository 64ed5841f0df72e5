"""The gateway's /metrics: requests by route and status, orders published, confirmed and refused."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pika

from devtools.testing.aiohttp_server import BackgroundServer
from devtools.testing.prometheus import Samples, parse, value
from devtools.testing.tcp_proxy import TcpProxy
from moviestream_common.rabbitmq import RabbitSettings

ORDER = {"user_id": "3", "number_of_items": "5", "total_amount": "180"}


def scrape(gateway: BackgroundServer) -> Samples:
    response = gateway.get("/metrics")
    assert response.status == 200
    return parse(response.data.decode())


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_confirmed_order_is_counted_published_and_confirmed(gateway: BackgroundServer) -> None:
    before = scrape(gateway)
    assert gateway.post("/api/billing", json=ORDER).status == 200
    assert gateway.post("/api/billing/", json=ORDER).status == 200  # the same endpoint, and the same series
    after = scrape(gateway)
    assert moved(before, after, "moviestream_orders_published_total") == 2
    assert moved(before, after, "moviestream_orders_confirmed_total") == 2
    assert (
        moved(before, after, "moviestream_http_requests_total", route="/api/billing", method="POST", status="200") == 2
    )


def test_invalid_orders_are_refused_as_invalid_and_never_published(gateway: BackgroundServer) -> None:
    before = scrape(gateway)
    assert gateway.post("/api/billing", body=b"{oops").status == 400
    assert gateway.post("/api/billing", body=b"x" * 200_000).status == 413
    after = scrape(gateway)
    assert moved(before, after, "moviestream_orders_refused_total", reason="invalid") == 2
    assert moved(before, after, "moviestream_orders_refused_total", reason="unavailable") == 0
    assert moved(before, after, "moviestream_orders_published_total") == 0


def test_an_order_while_the_broker_is_down_is_refused_as_unavailable_and_not_published(
    gateway_for: Callable[..., BackgroundServer], inventory_url: str
) -> None:
    proxy = TcpProxy(int(os.environ["RABBITMQ_PORT"])).start()
    gateway = gateway_for(inventory_url, RABBITMQ_PORT=str(proxy.port))
    proxy.cut()
    try:
        before = scrape(gateway)
        assert gateway.post("/api/billing", json=ORDER).status == 503
        after = scrape(gateway)
    finally:
        proxy.start()  # the queue fixture's clean-up goes through this port too
    assert moved(before, after, "moviestream_orders_refused_total", reason="unavailable") == 1
    assert moved(before, after, "moviestream_orders_published_total") == 0


def test_an_order_the_broker_refuses_is_published_and_refused_as_unavailable(
    gateway: BackgroundServer, billing_queue: str
) -> None:
    assert gateway.post("/api/billing", json=ORDER).status == 200  # connected, queue declared
    connection = pika.BlockingConnection(RabbitSettings.from_env().parameters())
    connection.channel().queue_delete(billing_queue)  # the mandatory publish now comes back unroutable
    connection.close()
    before = scrape(gateway)
    assert gateway.post("/api/billing", json=ORDER).status == 503
    after = scrape(gateway)
    assert moved(before, after, "moviestream_orders_published_total") == 1
    assert moved(before, after, "moviestream_orders_refused_total", reason="unavailable") == 1
    assert moved(before, after, "moviestream_orders_confirmed_total") == 0


def test_both_refusal_reasons_are_exposed_before_any_order(gateway: BackgroundServer) -> None:
    samples = scrape(gateway)
    for reason in ("invalid", "unavailable"):
        assert ("moviestream_orders_refused_total", frozenset({("reason", reason)})) in samples


def test_proxied_and_unmatched_requests_are_counted_by_route_template(gateway: BackgroundServer) -> None:
    before = scrape(gateway)
    assert gateway.get("/api/movies/12345").status == 404
    assert gateway.get("/no/such/path").status == 404
    after = scrape(gateway)
    assert (
        moved(before, after, "moviestream_http_requests_total", route="/api/movies/{rest}", method="GET", status="404")
        == 1
    )
    assert moved(before, after, "moviestream_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert not any(("route", "/metrics") in labels for _, labels in after)


def test_a_request_the_parser_refuses_is_counted_with_the_status_the_client_got(gateway: BackgroundServer) -> None:
    before = scrape(gateway)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as client:
        client.sendall(b"GET /api/movies HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
        answer = client.recv(65536)
    assert answer.split(b" ", 2)[1] == b"400"
    after = scrape(gateway)
    # aiohttp does not say what the method of a request it could not parse was.
    assert moved(before, after, "moviestream_http_requests_total", route="unmatched", method="other", status="400") == 1
