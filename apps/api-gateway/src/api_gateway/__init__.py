"""API gateway: an asyncio (aiohttp) service, so waiting on the inventory or the broker costs no thread.

gunicorn runs `serve` with aiohttp's uvloop worker; `create_app()` builds
the application itself.
"""

from __future__ import annotations

import logging

from aiohttp import web

from api_gateway import billing, conventions, docs, proxy, server
from api_gateway import metrics as gateway_metrics
from api_gateway.publisher import BrokerUnavailable, OrderPublisher
from moviestream_common import gunicorn_config
from moviestream_common.config import env_float, env_int, env_str
from moviestream_common.logs import configure_logging
from moviestream_common.rabbitmq import BillingQueue, RabbitSettings

MAX_BODY_BYTES = 128 * 1024

log = logging.getLogger(__name__)


def create_app() -> web.Application:
    configure_logging("api-gateway")
    inventory = proxy.InventoryClient(
        env_str("INVENTORY_URL", "http://127.0.0.1:8080"),
        connect_timeout=env_float("INVENTORY_CONNECT_TIMEOUT", 2.0),
        read_timeout=env_float("INVENTORY_TIMEOUT", 10.0),
        max_connections=env_int("INVENTORY_MAX_CONNECTIONS", proxy.MAX_CONNECTIONS, minimum=1, maximum=1000),
    )
    publisher = OrderPublisher(RabbitSettings.from_env(), BillingQueue.from_env())

    async def readiness() -> dict[str, str]:
        problems = {}
        inventory_problem = await inventory.problem()
        if inventory_problem:
            problems["inventory"] = inventory_problem
        try:
            await publisher.ping()
        except BrokerUnavailable as exc:
            problems["rabbitmq"] = str(exc)
        return problems

    async def lifetime(_app: web.Application):
        log.info("gateway ready", extra={"inventory": inventory.base_url, "broker": publisher.rabbit.describe()})
        yield
        await inventory.close()
        await publisher.close()

    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[conventions.middleware])
    app[proxy.CLIENT] = inventory
    app[conventions.READ_TIMEOUT] = env_float("REQUEST_READ_TIMEOUT", 10.0, minimum=0.1)
    app[billing.PUBLISHER] = publisher
    app.cleanup_ctx.append(lifetime)
    conventions.add_probes(app, readiness)
    billing.add_routes(app)
    proxy.add_routes(app)
    docs.add_routes(app)
    gateway_metrics.install(app)
    return app


async def serve() -> web.AppRunner:
    """What gunicorn's aiohttp worker runs: the application, with one JSON access line per request.

    A runner of our own is how the access logger and api_gateway.server get in; it takes gunicorn's
    keep-alive and, like aiohttp's worker, 95 % of gunicorn's graceful timeout to finish the requests
    in flight.
    """
    app = create_app()
    return server.Runner(
        app,
        read_timeout=app[conventions.READ_TIMEOUT],
        access_log_class=conventions.AccessLogger,
        keepalive_timeout=gunicorn_config.keepalive,
        shutdown_timeout=gunicorn_config.graceful_timeout * 0.95,
    )
