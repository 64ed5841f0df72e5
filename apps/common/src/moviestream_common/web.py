"""The conventions (moviestream_common.conventions) for the Flask services, with /healthz and /readyz."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

from moviestream_common import web_metrics
from moviestream_common.conventions import (
    REQUEST_ID_HEADER,
    ApiError,
    ClientTooSlow,
    log_access,
    parse_json,
    readiness_answer,
    request_id_from,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# The caller's X-Request-ID as WSGI names it, and where the request's own ID is kept for the handlers.
REQUEST_ID_ENVIRON = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
REQUEST_ID_KEY = "moviestream.request_id"

__all__ = ["ApiError", "error_response", "install_conventions", "json_body", "serve_in_background"]


def error_response(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message), status


def install_conventions(app: Flask, readiness: Callable[[], dict[str, str]]) -> None:
    """Give `app` JSON errors, request IDs, one access log line per request, /healthz and /readyz.

    `readiness` returns a problem per dependency that does not answer; an
    empty dict means ready.
    """
    app.json.sort_keys = False
    # A path answers the same with or without a trailing slash: a redirect would name this server's own
    # address (which a proxy in front must not leak) and a POST would not follow it. Doubled slashes are
    # not merged for the same reason; they match no route and answer 404.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False

    app.wsgi_app = _AccessLog(app.wsgi_app)  # type: ignore[method-assign]

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        return error_response(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int, list[tuple[str, str]]]:
        # The exception's own headers (Allow on a 405, for example) stay; only its HTML body is replaced.
        headers = [(name, value) for name, value in exc.get_headers() if name.lower() != "content-type"]
        return *error_response(exc.code or 500, exc.description or exc.name), headers

    @app.errorhandler(ClientTooSlow)
    def _too_slow(exc: ClientTooSlow) -> tuple[Response, int]:
        return error_response(408, str(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("unhandled error", extra={"request_id": request.environ.get(REQUEST_ID_KEY)})
        return error_response(500, "internal error")

    @app.get("/healthz")
    def _healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def _readyz() -> tuple[Response, int]:
        body, status = readiness_answer(readiness())
        return jsonify(body), status

    web_metrics.instrument(app)


class _AccessLog:
    """WSGI middleware: the request ID in and out, and the metrics and access line once the status is known.

    Middleware rather than Flask's before/after_request hooks, which cost
    about a tenth of the CPU of a read by id each (issue 13): the line is made
    from the WSGI environ and status alone.
    """

    def __init__(self, wsgi_app: WSGIApplication) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = environ[REQUEST_ID_KEY] = request_id_from(environ.get(REQUEST_ID_ENVIRON))

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append((REQUEST_ID_HEADER, request_id))
            seconds = time.perf_counter() - started
            method, code = environ.get("REQUEST_METHOD", ""), int(status[:3])
            web_metrics.observe(method, code, seconds)
            # PATH_INFO holds the path's bytes as Latin-1 (PEP 3333); the line shows them as UTF-8, as Flask does.
            path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
            log_access(method, path, code, seconds, request_id)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)


def json_body() -> Any:
    """The request body parsed as JSON (fractions as Decimal), whatever its Content-Type, or a 400 saying why not."""
    return parse_json(request.get_data())


def serve_in_background(app: Flask, port: int, host: str = "0.0.0.0") -> BaseWSGIServer:  # noqa: S104
    """Serve `app` from a daemon thread (billing-app's probes; test servers). Port 0 picks a free one."""
    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name=f"http-{server.port}", daemon=True).start()
    return server
