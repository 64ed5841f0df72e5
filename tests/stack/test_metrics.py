"""/metrics of the three services running as processes, gateway and inventory with two gunicorn workers each."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict

from devtools.e2e.access import Broker
from devtools.stack.local_stack import ScratchStack
from devtools.testing.prometheus import scrape, value
from devtools.waiting import wait_for
from moviestream_common.rabbitmq import RabbitSettings

pytestmark = pytest.mark.stack

TWO_WORKERS = {"WEB_CONCURRENCY": "2"}
REQUESTS = "moviestream_http_requests_total"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchStack]:
    extra_env = {"api-gateway": TWO_WORKERS, "inventory-app": TWO_WORKERS}
    with ScratchStack("metrics", extra_env=extra_env, state_dir=tmp_path_factory.mktemp("metrics")) as running:
        yield running


@pytest.fixture(scope="module")
def broker(scratch: ScratchStack) -> Broker:
    return Broker(lambda: RabbitSettings.from_env().parameters(), scratch.queue)


def billing_url(scratch: ScratchStack) -> str:
    return f"http://127.0.0.1:{scratch.config.billing_port}"


def billing_value(scratch: ScratchStack, name: str) -> float:
    return value(scrape(billing_url(scratch)), name)


def wait_until_billing_counts(scratch: ScratchStack, name: str, expected: float) -> None:
    wait_for(lambda: billing_value(scratch, name) == expected, timeout=20, what=f"{name} to reach {expected}")


def post_order(scratch: ScratchStack, user_id: int) -> None:
    body = json.dumps({"user_id": str(user_id), "number_of_items": "1", "total_amount": "9.99"}).encode()
    request = urllib.request.Request(f"{scratch.gateway_url}/api/billing", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_posted_order_is_published_confirmed_then_stored(scratch: ScratchStack) -> None:
    gateway_before = scrape(scratch.gateway_url)
    stored_before = billing_value(scratch, "moviestream_orders_stored_total")
    post_order(scratch, 424242)
    gateway_after = scrape(scratch.gateway_url)
    for name in ("moviestream_orders_published_total", "moviestream_orders_confirmed_total"):
        assert value(gateway_after, name) == value(gateway_before, name) + 1, name
    wait_until_billing_counts(scratch, "moviestream_orders_stored_total", stored_before + 1)
    assert billing_value(scratch, "moviestream_billing_batch_size_count") >= 1


def test_a_redelivered_order_is_counted_as_duplicate_not_stored(scratch: ScratchStack, broker: Broker) -> None:
    post_order(scratch, 515151)
    wait_for(lambda: order_515151_stored(scratch), timeout=20, what="the order to be stored")
    with scratch.connect(scratch.config.billing_database) as conn:
        message_id, body = conn.execute(
            "SELECT message_id, json_build_object('user_id', user_id::text, 'number_of_items', number_of_items::text,"
            " 'total_amount', total_amount::text)::text FROM orders WHERE user_id = 515151"
        ).fetchone()
    stored = billing_value(scratch, "moviestream_orders_stored_total")
    duplicate = billing_value(scratch, "moviestream_orders_duplicate_total")
    broker.publish_raw(body.encode(), message_id)
    wait_until_billing_counts(scratch, "moviestream_orders_duplicate_total", duplicate + 1)
    assert billing_value(scratch, "moviestream_orders_stored_total") == stored


def order_515151_stored(scratch: ScratchStack) -> bool:
    with scratch.connect(scratch.config.billing_database) as conn:
        return conn.execute("SELECT count(*) FROM orders WHERE user_id = 515151").fetchone()[0] == 1


def test_a_poison_message_is_counted_as_dead_lettered(scratch: ScratchStack, broker: Broker) -> None:
    dead_lettered = billing_value(scratch, "moviestream_orders_dead_lettered_total")
    message_id = uuid.uuid4().hex
    broker.publish_raw(b"{not an order", message_id)
    wait_until_billing_counts(scratch, "moviestream_orders_dead_lettered_total", dead_lettered + 1)
    assert broker.dead_letter_reasons(message_id)


def per_process_counts(directory: Path, route: str) -> dict[str, float]:
    """What each gunicorn worker wrote for `route`'s requests, from its own file."""
    counts: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        for key, count, _timestamp, _ in MmapedDict.read_all_values_from_file(str(path)):
            if f'"{route}"' in key and "moviestream_http_requests_total" in key:
                counts[path.name] = counts.get(path.name, 0) + count
    return counts


def test_requests_by_route_and_status_add_up_across_both_workers(scratch: ScratchStack) -> None:
    inventory = scratch.inventory_url
    route, labels = "/api/movies/{raw_id}", {"method": "GET", "status": "404"}
    before = value(scrape(inventory), REQUESTS, route=route, **labels)
    # Each request on a connection of its own, so the kernel hands them to either worker.
    sent = 0
    directory = scratch.config.state_dir / "metrics" / "inventory-app"
    while sent < 40 or len([c for c in per_process_counts(directory, route).values() if c]) < 2:
        assert status_of(f"{inventory}/api/movies/{10**9 + sent}") == 404
        sent += 1
        assert sent < 2000, "one worker took every request"
    counts = scrape(inventory)
    assert value(counts, REQUESTS, route=route, **labels) == before + sent
    assert value(counts, "moviestream_http_request_duration_seconds_count", route=route, method="GET") >= sent
    assert sum(per_process_counts(directory, route).values()) == before + sent


def test_every_service_serves_metrics_without_counting_the_scrapes(scratch: ScratchStack) -> None:
    for url in (scratch.gateway_url, scratch.inventory_url, billing_url(scratch)):
        scrape(url)
        samples = scrape(url)
        assert not any(("route", "/metrics") in labels for _, labels in samples), url
        assert value(samples, REQUESTS, route="/readyz", method="GET", status="200") >= 1, url
