"""/api/movies: forwarded to the inventory API with aiohttp's client, over pooled keep-alive connections."""

from __future__ import annotations

import logging
from http import HTTPStatus

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from api_gateway.conventions import REQUEST_ID, add_route, error_response
from moviestream_common.conventions import REQUEST_ID_HEADER, ApiError

log = logging.getLogger(__name__)

FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept")
# The gateway passes the inventory's body on as it came, so it asks for no compression.
REQUEST_DEFAULT_HEADERS = {"User-Agent": "moviestream-api-gateway", "Accept-Encoding": "identity"}
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


class AnswerTooLarge(Exception):
    """The inventory's answer is larger than the gateway holds in memory."""


class InventoryClient:
    """The inventory API at `base_url` through one aiohttp ClientSession per worker.

    `connect_timeout` bounds the wait for a pooled connection plus the
    connecting of a new one; `read_timeout` bounds the whole exchange, that
    wait included. aiohttp sends a request once more on a new connection when
    a kept-alive one turns out closed, for idempotent methods only: a POST is
    never sent twice.
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
        if url.scheme != "http" or not url.host:
            raise ValueError(f"the inventory must be an http:// URL with a host, got {base_url!r}")
        self.base_url = str(url).rstrip("/")
        self._origin = url.origin()
        self._prefix = url.raw_path.rstrip("/")
        self.max_answer_bytes = max_answer_bytes
        self._timeout = aiohttp.ClientTimeout(total=read_timeout, connect=connect_timeout, sock_connect=connect_timeout)
        self._connector_args = {"limit": max_connections, "keepalive_timeout": idle_seconds}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the worker's running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(**self._connector_args),
                timeout=self._timeout,
                # Set here rather than skipped per request (skip_auto_headers), which aiohttp copies the headers for.
                headers=REQUEST_DEFAULT_HEADERS,
                # The inventory sets no cookie; one it did set must not go on with other clients' requests.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def forward(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> web.Response:
        """Send the request on and answer with the inventory's status, body and content headers."""
        try:
            async with self.session.request(
                method,
                URL(self.base_url + target, encoded=True),
                data=body or None,
                headers=headers,
                allow_redirects=False,
            ) as upstream:
                content = await self._read(upstream)
        except TimeoutError:
            log.warning("inventory timed out", extra={"target": target})
            raise ApiError(504, "the inventory API did not answer in time") from None
        except AnswerTooLarge:
            log.warning("inventory answer too large", extra={"target": target})
            raise ApiError(502, f"the inventory API's answer is larger than {self.max_answer_bytes} bytes") from None
        except aiohttp.ClientError as exc:
            log.warning("inventory unreachable", extra={"error": repr(exc)})
            raise ApiError(502, "the inventory API is unreachable") from None
        headers = self._answer_headers(upstream.headers)
        if upstream.status >= 300 and upstream.content_type != "application/json":
            # Not the inventory's API but a layer around it (gunicorn's HTML 414, werkzeug's redirect page
            # naming the inventory's address): the status and headers are passed on, the page is not.
            if upstream.status < 400:
                headers.popall("Content-Type", None)
                return web.Response(status=upstream.status, headers=headers)
            answer = error_response(upstream.status, _phrase(upstream.status))
            answer.headers.extend((name, value) for name, value in headers.items() if name == "Allow")
            return answer
        return web.Response(body=content, status=upstream.status, headers=headers)

    async def _read(self, upstream: aiohttp.ClientResponse) -> bytes:
        declared = upstream.content_length
        if declared is not None:
            if declared > self.max_answer_bytes:
                raise AnswerTooLarge
            return await upstream.read()  # aiohttp reads no more than the declared length
        chunks, size = [], 0
        async for chunk in upstream.content.iter_any():
            size += len(chunk)
            if size > self.max_answer_bytes:
                raise AnswerTooLarge  # leaving the `async with` closes the connection, half read
            chunks.append(chunk)
        return b"".join(chunks)

    def _answer_headers(self, upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
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
            async with self.session.get(self.base_url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as answer:
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__
        return None if status == 200 else f"/readyz answered {status}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


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
