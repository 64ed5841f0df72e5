"""API gateway: `create_app()` is the WSGI application factory."""

from __future__ import annotations

import logging

from flask import Flask
from urllib3.exceptions import HTTPError

from api_gateway import billing, docs, proxy
from api_gateway.publisher import BrokerUnavailable, OrderPublisher
from moviestream_common.config import env_float, env_int, env_str
from moviestream_common.logs import configure_logging
from moviestream_common.rabbitmq import BillingQueue, RabbitSettings
from moviestream_common.web import install_conventions

MAX_BODY_BYTES = 128 * 1024

log = logging.getLogger(__name__)


def create_app() -> Flask:
    configure_logging("api-gateway")
    threads = env_int("GUNICORN_THREADS", 8, minimum=1)
    inventory = proxy.InventoryClient(
        env_str("INVENTORY_URL", "http://127.0.0.1:8080"),
        pool_size=threads,
        connect_timeout=env_float("INVENTORY_CONNECT_TIMEOUT", 2.0),
        read_timeout=env_float("INVENTORY_TIMEOUT", 10.0),
    )
    publisher = OrderPublisher(RabbitSettings.from_env(), BillingQueue.from_env())

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["inventory_client"] = inventory
    app.extensions["order_publisher"] = publisher

    def readiness() -> dict[str, str]:
        problems = {}
        try:
            status = inventory.pool.urlopen("GET", "/readyz", retries=False).status
            if status != 200:
                problems["inventory"] = f"/readyz answered {status}"
        except HTTPError as exc:
            problems["inventory"] = type(exc).__name__
        try:
            publisher.ping()
        except BrokerUnavailable as exc:
            problems["rabbitmq"] = str(exc)
        return problems

    install_conventions(app, readiness)
    app.register_blueprint(proxy.bp)
    app.register_blueprint(billing.bp)
    app.register_blueprint(docs.bp)
    log.info("gateway ready", extra={"inventory": inventory.base_url, "broker": publisher.rabbit.describe()})
    return app
