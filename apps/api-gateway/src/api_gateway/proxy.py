"""/api/movies: forwarded to the inventory API over pooled keep-alive connections."""

from __future__ import annotations

import logging

from aiohttp import web

from api_gateway.conventions import REQUEST_ID
from api_gateway.upstream import UpstreamError, UpstreamPool, UpstreamTimeout
from moviestream_common.conventions import REQUEST_ID_HEADER, ApiError

log = logging.getLogger(__name__)

FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept")
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Location")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


class InventoryClient:
    """The inventory API at INVENTORY_URL, over a pool of keep-alive connections (api_gateway.upstream).

    A request whose pooled connection the inventory had closed is sent once
    more if it is idempotent; a POST is never sent twice.
    """

    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.pool = UpstreamPool(self.base_url, connect_timeout=connect_timeout, read_timeout=read_timeout)

    async def forward(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> web.Response:
        """Send the request on and answer with the inventory's status, body and content headers."""
        try:
            upstream = await self.pool.request(method, target, headers, body)
        except UpstreamTimeout as exc:
            log.warning("inventory timed out", extra={"error": str(exc)})
            raise ApiError(504, "the inventory API did not answer in time") from None
        except UpstreamError as exc:
            log.warning("inventory unreachable", extra={"error": str(exc)})
            raise ApiError(502, "the inventory API is unreachable") from None
        answer = web.Response(body=upstream.body, status=upstream.status)
        for name in FORWARDED_RESPONSE_HEADERS:
            value = upstream.headers.get(name.lower())
            if value is not None:
                answer.headers[name] = value
        return answer

    async def problem(self) -> str | None:
        """Why the inventory is not ready, or None when its /readyz answers 200."""
        try:
            answer = await self.pool.request("GET", "/readyz", {}, timeout=2)
        except UpstreamError as exc:
            return type(exc).__name__
        return None if answer.status == 200 else f"/readyz answered {answer.status}"

    async def close(self) -> None:
        await self.pool.close()


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
