"""Prometheus metrics (moviestream_common.metrics) for the gateway: requests by route, orders, and /metrics."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler

from moviestream_common import metrics

ORDER_ROUTE = "/api/billing"


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware, so it sees the status the client gets (after the JSON error conversion)."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a redirect the conventions let through
        _observe(request, exc.status, started)
        raise
    _observe(request, response.status, started)
    return response


def _observe(request: web.Request, status: int, started: float) -> None:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else None
    route = metrics.observe_request(route, request.method, status, time.perf_counter() - started)
    if route == ORDER_ROUTE and request.method == "POST":
        # Counted from the status the client gets, so an order refused before
        # its handler ran (a body over the limit, or late) is counted too.
        if status == 200:
            metrics.gateway_orders().confirmed.inc()
        else:
            metrics.order_refused(status)


def order_published() -> None:
    metrics.gateway_orders().published.inc()


async def serve_metrics(_request: web.Request) -> web.Response:
    body, content_type = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


def install(app: web.Application) -> None:
    """Count `app`'s requests and orders, and serve /metrics."""
    app.middlewares.insert(0, count_requests)
    app.router.add_get(metrics.METRICS_PATH, serve_metrics, allow_head=False)
    metrics.gateway_orders()  # the orders' series exist, at zero, before the first order
