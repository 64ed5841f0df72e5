"""HTTP conventions shared by every service: JSON errors, request IDs, access log lines, health probes."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128

access_log = logging.getLogger("access")


class ApiError(Exception):
    """An error the client can act on, answered as {"error": message} with its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message), status


def install_conventions(app: Flask, readiness: Callable[[], dict[str, str]]) -> None:
    """Give `app` JSON errors, request IDs, one access log line per request, /healthz and /readyz.

    `readiness` returns a problem per dependency that does not answer; an
    empty dict means ready.
    """
    app.json.sort_keys = False

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if 0 < len(incoming) <= MAX_REQUEST_ID_LENGTH else uuid.uuid4().hex

    @app.after_request
    def _log(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        started = g.get("started")
        access_log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3) if started else None,
                "request_id": g.get("request_id"),
            },
        )
        return response

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        return error_response(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("unhandled error", extra={"request_id": g.get("request_id")})
        return error_response(500, "internal error")

    @app.get("/healthz")
    def _healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def _readyz() -> tuple[Response, int]:
        problems = readiness()
        if problems:
            return jsonify(status="unavailable", problems=problems), 503
        return jsonify(status="ok"), 200


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


def json_body() -> Any:
    """The request body parsed as JSON (fractions as Decimal), whatever its Content-Type, or a 400 saying why not."""
    try:
        return json.loads(request.get_data(), parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None


def request_id() -> str:
    return g.get("request_id") or uuid.uuid4().hex


def serve_in_background(app: Flask, port: int, host: str = "0.0.0.0") -> BaseWSGIServer:  # noqa: S104
    """Serve `app` from a daemon thread (billing-app's probes; test servers). Port 0 picks a free one."""
    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name=f"http-{server.port}", daemon=True).start()
    return server
