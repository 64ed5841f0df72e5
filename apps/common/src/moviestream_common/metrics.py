"""The services' Prometheus metrics, named and labelled as the dashboards expect, and their /metrics text.

Under gunicorn every worker is a process of its own, so when
PROMETHEUS_MULTIPROC_DIR is set prometheus_client keeps each process's
values in files there and /metrics adds them up. That directory outlives
the processes (an emptyDir outlives a restarted container), so it is
emptied when a service starts and only then: by the gunicorn master before
it forks (`on_starting`), or, for a service that is one process
(billing-app), when it first loads this module.

The orders' metrics of each service are made when that service first asks
for them, so a service exposes its own metrics and not zeros for another's.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# The pid of the process that emptied the directory; its children (gunicorn's workers) must not empty it again.
_EMPTIED_BY = "MOVIESTREAM_METRICS_EMPTIED_BY"

METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"
# A method label per method a client may invent would make a series per invention.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
REFUSAL_REASONS = ("invalid", "unavailable")

# The gateway answers in about a millisecond, the inventory in a few: fine buckets at the low end for p95.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def empty_directory() -> None:
    """Create or empty the multiprocess directory, for this process and the ones it starts."""
    path = os.environ.get(MULTIPROC_DIR)
    if not path:
        return
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[_EMPTIED_BY] = str(os.getpid())


if os.environ.get(_EMPTIED_BY) not in {str(os.getpid()), str(os.getppid())}:
    empty_directory()


def on_starting(_server: Any) -> None:
    """gunicorn hook, in the master before any worker: start from an empty directory."""
    empty_directory()


def child_exit(_server: Any, worker: Any) -> None:
    """gunicorn hook, in the master: a dead worker's counts stay in the sums, its live gauges go."""
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.mark_process_dead(worker.pid)


# -- HTTP, every service ------------------------------------------------------

HTTP_REQUESTS = Counter(
    "moviestream_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "moviestream_http_request_duration_seconds",
    "Time from a request's arrival to its answer, by route template and method",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)


def observe_request(route: str | None, method: str, status: int, seconds: float) -> str:
    """Count one answered request; `route` is the route template, None when no route matched.

    Returns the route label it was counted under. /metrics is not counted: a
    scrape every few seconds would swamp a quiet service's request rate with
    Prometheus's own visits.
    """
    if route == METRICS_PATH:
        return route
    # /api/movies/ is /api/movies (both are routed, to the same handler): one series per endpoint.
    route = route.rstrip("/") or "/" if route else UNMATCHED
    method = method if method in METHODS else OTHER_METHOD
    requests, duration = _request_series(route, method, status)
    requests.inc()
    duration.observe(seconds)
    return route


@functools.lru_cache(maxsize=4096)  # routes, methods and statuses are few: this holds every combination seen
def _request_series(route: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """The labelled series of one kind of answer, looked up once instead of by `labels()` (a lock) per request."""
    return HTTP_REQUESTS.labels(route, method, str(status)), HTTP_DURATION.labels(route, method)


def exposition() -> tuple[bytes, str]:
    """The /metrics body and its Content-Type: every process's values when in multiprocess mode."""
    path = os.environ.get(MULTIPROC_DIR)
    if not path:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry), CONTENT_TYPE_LATEST


# -- orders, api-gateway ------------------------------------------------------


@dataclass(frozen=True)
class GatewayOrders:
    published: Counter
    confirmed: Counter
    refused: Counter


@functools.cache
def gateway_orders() -> GatewayOrders:
    refused = Counter("moviestream_orders_refused", "Orders answered 400/413 (invalid) or 503 (broker)", ["reason"])
    for reason in REFUSAL_REASONS:
        refused.labels(reason)  # both series from the start, at zero
    return GatewayOrders(
        published=Counter("moviestream_orders_published", "Orders sent to the broker"),
        confirmed=Counter("moviestream_orders_confirmed", "Orders the broker confirmed, answered 200"),
        refused=refused,
    )


def order_refused(status: int) -> None:
    """Count an order answered with `status`: 503 is the broker's refusal, any other 4xx the client's."""
    if status == 503:
        gateway_orders().refused.labels("unavailable").inc()
    elif 400 <= status < 500:
        gateway_orders().refused.labels("invalid").inc()


# -- orders, billing-app ------------------------------------------------------


@dataclass(frozen=True)
class BillingOrders:
    stored: Counter
    duplicate: Counter
    dead_lettered: Counter
    batch_size: Histogram


@functools.cache
def billing_orders() -> BillingOrders:
    return BillingOrders(
        stored=Counter("moviestream_orders_stored", "Orders stored as new rows"),
        duplicate=Counter("moviestream_orders_duplicate", "Redelivered orders that were already stored"),
        dead_lettered=Counter("moviestream_orders_dead_lettered", "Poison messages sent to the dead-letter queue"),
        batch_size=Histogram("moviestream_billing_batch_size", "Messages per stored batch", buckets=BATCH_BUCKETS),
    )


def batch_done(*, messages: int, valid: int, stored: int) -> None:
    """Count an acknowledged batch: `messages` deliveries, `valid` of them orders (the rest dead-lettered),
    `stored` of those new rows (the rest stored before)."""
    orders = billing_orders()
    orders.stored.inc(stored)
    orders.duplicate.inc(valid - stored)
    orders.dead_lettered.inc(messages - valid)
    orders.batch_size.observe(messages)
