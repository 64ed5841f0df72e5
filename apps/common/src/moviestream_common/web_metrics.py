"""Prometheus metrics (moviestream_common.metrics) for the Flask services: requests by route, and /metrics."""

from __future__ import annotations

import functools
import re
import time

from flask import Flask, Response, g, request

from moviestream_common import metrics

# Flask's <converter:name> written as {name}, the form aiohttp and the OpenAPI document use.
_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")


@functools.cache
def route_template(rule: str) -> str:
    return _VARIABLE.sub(r"{\1}", rule)


def instrument(app: Flask) -> None:
    """Count every answer of `app` by its route template, and serve /metrics."""

    @app.before_request
    def _start_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        rule = route_template(request.url_rule.rule) if request.url_rule is not None else None
        seconds = time.perf_counter() - g.get("metrics_started", time.perf_counter())
        metrics.observe_request(rule, request.method, response.status_code, seconds)
        return response

    @app.get(metrics.METRICS_PATH)
    def _metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)
