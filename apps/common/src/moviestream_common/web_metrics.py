"""Prometheus metrics (moviestream_common.metrics) for the Flask services: requests by route, and /metrics."""

from __future__ import annotations

import functools
import re

from flask import Flask, Response, has_request_context, request

from moviestream_common import metrics

# Flask's <converter:name> written as {name}, the form aiohttp and the OpenAPI document use.
_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")


@functools.cache
def route_template(rule: str) -> str:
    return _VARIABLE.sub(r"{\1}", rule)


def instrument(app: Flask) -> None:
    """Serve /metrics; each answer is counted by observe(), from the conventions' WSGI middleware."""

    @app.get(metrics.METRICS_PATH)
    def _metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)


def observe(method: str, status: int, seconds: float) -> None:
    """Count an answer of the Flask request being handled, by its route template ("unmatched" for none).

    Called as the answer starts (moviestream_common.web), where Flask's request
    is still current: Flask's before_request and after_request hooks did the same
    for about an eighth of the inventory's CPU per read by id.
    """
    rule = request.url_rule if has_request_context() else None
    metrics.observe_request(route_template(rule.rule) if rule is not None else None, method, status, seconds)
