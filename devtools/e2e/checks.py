"""The end-to-end checks. Each takes a Platform and raises CheckFailed (or waiting.Timeout) with what it saw."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devtools.e2e.platform import Platform
from devtools.waiting import wait_for

BACKLOG = 2000


class CheckFailed(AssertionError):
    pass


def expect(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def call(platform: Platform, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    if not platform.gateway_url.startswith(("http://", "https://")):
        raise CheckFailed(f"the gateway URL must be http(s): {platform.gateway_url!r}")
    data = None if body is None else json.dumps(body).encode()
    url = platform.gateway_url + path
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def order(user_id: int) -> dict[str, str]:
    return {"user_id": str(user_id), "number_of_items": "2", "total_amount": "19.90"}


def new_user_id() -> int:
    return secrets.randbelow(10**12) + 10**12


def check_movie_crud_round_trip(platform: Platform) -> None:
    title = f"E2E {secrets.token_hex(4)}"
    status, movie = call(platform, "POST", "/api/movies", {"title": title, "description": "first cut"})
    expect(status == 201 and movie["title"] == title, f"POST /api/movies answered {status} {movie}")
    path = f"/api/movies/{movie['id']}"
    status, found = call(platform, "GET", f"/api/movies?title={title.lower().replace(' ', '%20')}")
    expect(status == 200 and found == [movie], f"search for {title!r} answered {status} {found}")
    status, updated = call(platform, "PUT", path, {"description": "director's cut"})
    expect(status == 200 and updated["description"] == "director's cut", f"PUT answered {status} {updated}")
    status, fetched = call(platform, "GET", path)
    expect(status == 200 and fetched == updated, f"GET after PUT answered {status} {fetched}")
    status, deleted = call(platform, "DELETE", path)
    expect(status == 200 and deleted == {"deleted": 1}, f"DELETE answered {status} {deleted}")
    status, missing = call(platform, "GET", path)
    expect(status == 404 and "error" in missing, f"GET after DELETE answered {status} {missing}")


def check_order_posted_while_billing_is_down_is_stored_after_restart(platform: Platform) -> None:
    user = new_user_id()
    platform.stop_billing()
    try:
        status, body = call(platform, "POST", "/api/billing", order(user))
        expect(status == 200 and body == {"message": "Message posted"}, f"POST /api/billing answered {status} {body}")
        time.sleep(1)
        expect(platform.count_orders(user) == 0, "the order was stored while billing-app was stopped")
    finally:
        platform.start_billing()
    wait_for(
        lambda: platform.count_orders(user) == 1,
        timeout=30,
        what="the order after billing-app restarted",
    )


def check_billing_killed_mid_backlog_stores_every_order_exactly_once(platform: Platform) -> None:
    user = new_user_id()
    platform.stop_billing()
    try:
        with platform.order_write_gate() as gate:
            with ThreadPoolExecutor(max_workers=8) as pool:
                posted = pool.map(lambda _: call(platform, "POST", "/api/billing", order(user))[0], range(BACKLOG))
                statuses = list(posted)
            expect(statuses == [200] * BACKLOG, f"{BACKLOG - statuses.count(200)} orders were not accepted")
            platform.start_billing()
            gate.let_one_commit_through()
            stored_before_kill = platform.count_orders(user)
            platform.kill_billing()
    finally:
        platform.start_billing()
    expect(0 < stored_before_kill < BACKLOG, f"billing-app was not killed mid-backlog ({stored_before_kill} stored)")
    wait_for(
        lambda: platform.count_orders(user) >= BACKLOG,
        timeout=60,
        what=f"{BACKLOG} orders after the restart",
    )
    time.sleep(1)
    stored = platform.count_orders(user)
    expect(stored == BACKLOG, f"{stored} orders stored for {BACKLOG} posted")


def check_poison_message_is_dead_lettered_and_the_next_order_is_stored(platform: Platform) -> None:
    user = new_user_id()
    poison_id = f"poison-{secrets.token_hex(8)}"
    platform.publish_raw(b'{"user_id": "1", "number_of_items": "-4"}', poison_id)
    status, _ = call(platform, "POST", "/api/billing", order(user))
    expect(status == 200, f"POST /api/billing answered {status}")
    wait_for(lambda: platform.count_orders(user) == 1, timeout=30, what="the order after the poison message")
    reasons = platform.dead_letter_reasons(poison_id)
    expect(len(reasons) == 1 and "missing field(s): total_amount" in reasons[0], f"dead letter reasons: {reasons}")


def check_broker_unreachable_gives_503_then_recovers(platform: Platform) -> None:
    platform.stop_broker()
    try:
        status, body = call(platform, "POST", "/api/billing", order(new_user_id()))
        expect(status == 503 and "error" in body, f"with RabbitMQ unreachable POST /api/billing answered {status}")
    finally:
        platform.start_broker()
    wait_for(
        lambda: call(platform, "POST", "/api/billing", order(new_user_id()))[0] == 200,
        timeout=30,
        what="a 200 after the broker returned",
    )


CHECKS = [
    check_movie_crud_round_trip,
    check_order_posted_while_billing_is_down_is_stored_after_restart,
    check_billing_killed_mid_backlog_stores_every_order_exactly_once,
    check_poison_message_is_dead_lettered_and_the_next_order_is_stored,
    check_broker_unreachable_gives_503_then_recovers,
]
