"""/api/movies: forwarded to the inventory API over pooled keep-alive connections."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from yarl import URL

from api_gateway.conventions import REQUEST_ID
from moviestream_common.conventions import REQUEST_ID_HEADER, ApiError

log = logging.getLogger(__name__)

FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept")
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Location")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


class InventoryClient:
    """A pool of keep-alive connections to INVENTORY_URL.

    aiohttp sends an idempotent request once more when the inventory had
    closed the pooled connection it went out on; a POST is never sent twice.
    """

    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(sock_connect=connect_timeout, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the event loop that serves the requests.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
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
                content = await upstream.read()
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            log.warning("inventory timed out", extra={"error": repr(exc)})
            raise ApiError(504, "the inventory API did not answer in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("inventory unreachable", extra={"error": repr(exc)})
            raise ApiError(502, "the inventory API is unreachable") from None
        answer = web.Response(body=content, status=upstream.status)
        for name in FORWARDED_RESPONSE_HEADERS:
            if name in upstream.headers:
                answer.headers[name] = upstream.headers[name]
        return answer

    async def problem(self) -> str | None:
        """Why the inventory is not ready, or None when its /readyz answers 200."""
        try:
            async with self.session.get(self.base_url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as answer:
                return None if answer.status == 200 else f"/readyz answered {answer.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return type(exc).__name__

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


CLIENT = web.AppKey("inventory_client", InventoryClient)


async def forward(request: web.Request) -> web.Response:
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
    body = await request.read()
    # raw_path is the target exactly as the client sent it, still percent-encoded.
    return await request.app[CLIENT].forward(request.method, request.raw_path, body, headers)


def add_routes(app: web.Application) -> None:
    for path in ("/api/movies", "/api/movies/{rest:.+}"):
        for method in METHODS:
            app.router.add_route(method, path, forward)
