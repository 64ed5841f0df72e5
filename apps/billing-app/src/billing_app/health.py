"""/healthz and /readyz for the consumer, served on their own thread."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from moviestream_common import metrics
from moviestream_common.web import install_conventions


def create_health_app(readiness: Callable[[], dict[str, str]]) -> Flask:
    app = Flask(__name__)
    install_conventions(app, readiness)
    metrics.billing_orders()  # the orders' series exist, at zero, before the first batch
    return app
