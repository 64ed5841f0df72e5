"""/api/movies: forwarded to the inventory API over pooled keep-alive connections."""

from __future__ import annotations

import logging
from urllib.parse import quote

import urllib3
from flask import Blueprint, Response, current_app, request
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from moviestream_common.web import REQUEST_ID_HEADER, ApiError, request_id

log = logging.getLogger(__name__)

FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept")
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Location")
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]

bp = Blueprint("proxy", __name__)


class InventoryClient:
    """A keep-alive connection pool to INVENTORY_URL, one connection per gateway thread."""

    def __init__(self, base_url: str, *, pool_size: int, connect_timeout: float, read_timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.pool = urllib3.connection_from_url(
            self.base_url,
            maxsize=pool_size,
            block=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            # A keep-alive connection the inventory closed is retried once, but
            # only for idempotent methods: a POST is never sent twice.
            retries=Retry(total=1, connect=1, read=1, status=0, redirect=0, other=0, raise_on_status=False),
        )

    def forward(
        self, method: str, path_and_query: str, body: bytes, headers: dict[str, str]
    ) -> urllib3.BaseHTTPResponse:
        try:
            return self.pool.urlopen(method, path_and_query, body=body or None, headers=headers, redirect=False)
        except MaxRetryError as exc:
            raise _gateway_error(exc.reason) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _gateway_error(exc) from None


def _gateway_error(exc: BaseException | None) -> ApiError:
    # NewConnectionError subclasses the timeout errors in urllib3, yet means "refused".
    if isinstance(exc, Urllib3Timeout) and not isinstance(exc, NewConnectionError):
        log.warning("inventory timed out", extra={"error": str(exc)})
        return ApiError(504, "the inventory API did not answer in time")
    log.warning("inventory unreachable", extra={"error": str(exc)})
    return ApiError(502, "the inventory API is unreachable")


def _raw_target() -> str:
    """The path and query exactly as the client sent them, still percent-encoded."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        return raw
    query = request.query_string.decode("latin-1")
    return quote(request.path) + (f"?{query}" if query else "")


@bp.route("/api/movies", methods=METHODS)
@bp.route("/api/movies/<path:_rest>", methods=METHODS)
def forward(_rest: str = "") -> Response:
    client: InventoryClient = current_app.extensions["inventory_client"]
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    headers[REQUEST_ID_HEADER] = request_id()
    target = _raw_target()
    upstream = client.forward(request.method, target, request.get_data(), headers)
    response = Response(upstream.data, status=upstream.status)
    for name in FORWARDED_RESPONSE_HEADERS:
        if name in upstream.headers:
            response.headers[name] = upstream.headers[name]
    return response
