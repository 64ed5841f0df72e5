"""The shared HTTP conventions (moviestream_common.conventions) in aiohttp: middleware, access logger, probes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from api_gateway import metrics
from moviestream_common.conventions import (
    REQUEST_ID_HEADER,
    ApiError,
    log_access,
    readiness_answer,
    request_id_from,
)

REQUEST_ID = web.RequestKey("request_id", str)
STARTED = web.RequestKey("started", float)
ROUTE = web.RequestKey("route", str)  # the template of the route the request matched, for the metrics
# Seconds a client has to send a request's body once its head has come (api_gateway.server bounds the head).
READ_TIMEOUT = web.AppKey("read_timeout", float)

log = logging.getLogger(__name__)


class BodyTooLate(Exception):
    """The request's body did not arrive within the read timeout."""


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request ID on every request and response, a bounded time to send the body, every error as JSON."""
    request[STARTED] = time.perf_counter()
    request[REQUEST_ID] = request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    if (resource := request.match_info.route.resource) is not None:
        request[ROUTE] = resource.canonical
    late = False
    try:
        if request.body_exists:
            await _read_body(request)
        response = await handler(request)
    except BodyTooLate as exc:
        late = True
        response = error_response(408, str(exc))
        response.force_close()
    except ApiError as exc:
        response = error_response(exc.status, exc.message)
    except web.HTTPException as exc:  # the router's 404 and 405, the body limit's 413
        if exc.status < 400:
            raise
        response = error_response(exc.status, exc.text or exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id})
        response = error_response(500, "internal error")
    response.headers[REQUEST_ID_HEADER] = request_id
    if late:  # answered now and closed, rather than waiting on (aiohttp's lingering) for the rest of the body
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()
    return response


async def _read_body(request: web.Request) -> None:
    """Read the body now, within the deadline; handlers then get it from aiohttp's cache."""
    declared, limit = request.content_length or 0, request.client_max_size
    if declared > limit:  # refused before a byte of it is waited for
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
    if request.content.is_eof():  # the whole body came with the head (an order does): no deadline to keep
        await request.read()
        return
    seconds = request.app[READ_TIMEOUT]
    try:
        async with asyncio.timeout(seconds):
            await request.read()
    except TimeoutError:
        raise BodyTooLate(f"the request body did not arrive within {seconds:g} s") from None


def add_route(app: web.Application, methods: tuple[str, ...], path: str, handler: Handler) -> None:
    """`path` and `path/` alike: clients of the original API add the slash, and a POST would not follow a redirect.

    Each path's methods are added one after the other, so aiohttp keeps them in
    one resource: its router tries the resources under a path one by one.
    """
    for each_path in (path, path + "/"):
        for method in methods:
            app.router.add_route(method, each_path, handler)


class AccessLogger(AbstractAccessLogger):
    """After each answer has gone out: the request's metrics and its JSON access line, so they add no latency."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> None:
        # uvloop's clock, which aiohttp's `seconds` comes from, ticks in whole milliseconds.
        started = request.get(STARTED)
        if started is not None:
            seconds = time.perf_counter() - started
        metrics.observe(request.get(ROUTE), request.method, response.status, seconds)
        log_access(request.method, request.path, response.status, seconds, response.headers.get(REQUEST_ID_HEADER, ""))

    @property
    def enabled(self) -> bool:
        return True  # the metrics count every request, whatever the access log's level


def add_probes(app: web.Application, readiness: Callable[[], Awaitable[dict[str, str]]]) -> None:
    """/healthz answers while the process serves; /readyz names each dependency that does not answer."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        body, status = readiness_answer(await readiness())
        return web.json_response(body, status=status)

    add_route(app, ("GET",), "/healthz", healthz)
    add_route(app, ("GET",), "/readyz", readyz)
