"""/api/movies: forwarded to the inventory API over pooled keep-alive connections (api_gateway.http_pool)."""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from api_gateway.conventions import REQUEST_ID, add_route, error_response
from api_gateway.http_pool import AnswerTooLarge, ConnectionPool, UpstreamError
from moviestream_common.conventions import REQUEST_ID_HEADER, ApiError

log = logging.getLogger(__name__)

FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept")
# The gateway passes the inventory's body on as it came, so it asks for no compression.
REQUEST_DEFAULT_HEADERS = {"User-Agent": "moviestream-api-gateway", "Accept-Encoding": "identity"}
READINESS_TIMEOUT = 2.0
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Location", "Allow")
# Exactly the methods the OpenAPI document gives each path, so the gateway's
# own 405 names them in Allow (anything else never reaches the inventory).
COLLECTION_METHODS = ("GET", "POST", "DELETE")
ITEM_METHODS = ("GET", "PUT", "DELETE")
# The largest page the inventory sends (1,000 movies of the longest title and
# description) is about 5.3 MB. An answer is held whole before it is passed on,
# so this, times the connections in use at once, bounds what the inventory's
# answers take of the pod's 256 MiB.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
MAX_CONNECTIONS = 32
# Shorter than the inventory's own keep-alive (gunicorn's 75 s), so the gateway
# closes an idle connection before the inventory does and never sends on one
# that is being closed.
IDLE_SECONDS = 15.0


class InventoryClient:
    """The inventory API at `base_url`, through one connection pool per worker.

    `connect_timeout` bounds the connecting of a new connection; `read_timeout`
    bounds the whole exchange, the wait for a free connection included. A
    request whose connection closes before the answer's head is sent once more
    on a new connection, for idempotent methods only: a POST is never sent twice.
    """

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int = MAX_CONNECTIONS,
        idle_seconds: float = IDLE_SECONDS,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        url = URL(base_url)
        if url.scheme != "http" or not url.host or url.raw_user or url.query_string or url.raw_fragment:
            raise ValueError(f"the inventory must be an http:// URL with a host, no user or query: {base_url!r}")
        self.base_url = str(url).rstrip("/")
        self._origin = url.origin()
        self._prefix = url.raw_path.rstrip("/")
        self.max_answer_bytes = max_answer_bytes
        self._read_timeout = read_timeout
        self._pool = ConnectionPool(
            url.host,
            url.port or 80,
            host_header=url.host_port_subcomponent or url.host,
            limit=max_connections,
            idle_seconds=idle_seconds,
            connect_timeout=connect_timeout,
            max_answer_bytes=max_answer_bytes,
        )

    async def forward(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> web.Response:
        """Send the request on and answer with the inventory's status, body and content headers."""
        try:
            upstream = await self._pool.request(
                method, self._prefix + target, body, REQUEST_DEFAULT_HEADERS | headers, timeout=self._read_timeout
            )
        except TimeoutError:
            log.warning("inventory timed out", extra={"target": target})
            raise ApiError(504, "the inventory API did not answer in time") from None
        except AnswerTooLarge:
            log.warning("inventory answer too large", extra={"target": target})
            raise ApiError(502, f"the inventory API's answer is larger than {self.max_answer_bytes} bytes") from None
        except UpstreamError as exc:
            log.warning("inventory unreachable", extra={"error": str(exc)})
            raise ApiError(502, "the inventory API is unreachable") from None
        headers = self._answer_headers(upstream.headers)
        if upstream.status >= 300 and _media_type(upstream.headers) != "application/json":
            # Not the inventory's API but a layer around it (gunicorn's HTML 414, werkzeug's redirect page
            # naming the inventory's address): the status and headers are passed on, the page is not.
            if upstream.status < 400:
                headers.popall("Content-Type", None)
                return web.Response(status=upstream.status, headers=headers)
            answer = error_response(upstream.status, _phrase(upstream.status))
            answer.headers.extend((name, value) for name, value in headers.items() if name == "Allow")
            return answer
        return web.Response(body=upstream.body, status=upstream.status, headers=headers)

    def _answer_headers(self, upstream: CIMultiDict[str]) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name in FORWARDED_RESPONSE_HEADERS:
            for value in upstream.getall(name, ()):
                if name == "Location" and (value := self._local_location(value)) is None:
                    continue
                headers.add(name, value)
        return headers

    def _local_location(self, location: str) -> str | None:
        """A Location naming the inventory, as a path under the gateway; None for one naming any other host."""
        try:
            url = URL(location, encoded=True)
            elsewhere = url.absolute and url.origin() != self._origin
        except ValueError:  # unparsable, or naming a host without a scheme
            elsewhere = True
        if elsewhere:
            log.warning("dropped a Location naming another host", extra={"location": location})
            return None
        if url.absolute:
            location = url.raw_path_qs + (f"#{url.raw_fragment}" if url.raw_fragment else "")
        if self._prefix and location.startswith(self._prefix + "/"):
            location = location[len(self._prefix) :]
        return location

    async def problem(self) -> str | None:
        """Why the inventory is not ready, or None when its /readyz answers 200."""
        try:
            answer = await self._pool.request(
                "GET", self._prefix + "/readyz", b"", REQUEST_DEFAULT_HEADERS, timeout=READINESS_TIMEOUT
            )
        except (UpstreamError, TimeoutError) as exc:
            return type(exc).__name__
        return None if answer.status == 200 else f"/readyz answered {answer.status}"

    async def close(self) -> None:
        await self._pool.close()


def _media_type(headers: CIMultiDict[str]) -> str:
    """The Content-Type's type/subtype, lowercased, as aiohttp's ClientResponse.content_type gives it."""
    return headers.get("Content-Type", "application/octet-stream").partition(";")[0].strip().lower()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"the inventory API answered {status}"


CLIENT = web.AppKey("inventory_client", InventoryClient)


async def forward(request: web.Request) -> web.Response:
    given = request.headers.get
    headers = {name: value for name in FORWARDED_REQUEST_HEADERS if (value := given(name)) is not None}
    headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
    body = await request.read() if request.body_exists else b""  # the middleware has read it already
    # raw_path is the target exactly as the client sent it, still percent-encoded; a trailing
    # slash is dropped so that /api/movies/ and /api/movies/1/ are the same resources without it.
    path, mark, query = request.raw_path.partition("?")
    if path.endswith("/"):
        path = path[:-1]
    return await request.app[CLIENT].forward(request.method, path + mark + query, body, headers)


def add_routes(app: web.Application) -> None:
    # The item route first: under /api/movies aiohttp's router tries it before the collection's,
    # and a movie by ID is the busiest request.
    for method in ITEM_METHODS:
        app.router.add_route(method, "/api/movies/{rest:.+}", forward)  # rest takes any trailing slash
    add_route(app, COLLECTION_METHODS, "/api/movies", forward)
