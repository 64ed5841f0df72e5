"""Prometheus metrics (moviestream_common.metrics) for the gateway: requests by route, orders, and /metrics."""

from __future__ import annotations

from aiohttp import web

from moviestream_common import metrics

ORDER_ROUTE = "/api/billing"


def observe(route: str | None, method: str, status: int, seconds: float) -> None:
    """Count a request once its answer has gone out, with the status the client got.

    `route` is the template of the route it matched, None where none did (or
    the head could not be parsed). Called by the access logger
    (api_gateway.conventions.AccessLogger), which aiohttp calls for every
    answer, the parser's own included; a middleware would be one more layer
    around every request, and blind to those.
    """
    route = metrics.observe_request(route, method, status, seconds)
    if route == ORDER_ROUTE and method == "POST":
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
    """Serve /metrics; the orders' series exist, at zero, before the first order."""
    app.router.add_get(metrics.METRICS_PATH, serve_metrics, allow_head=False)
    metrics.gateway_orders()
