"""/healthz and /readyz for the consumer, served on their own thread.

werkzeug's threaded server gives each connection a thread that waits for
the client as long as the client likes: a client that sends half a request
head (or nothing, on a kept-alive connection) held its thread for ever. Here
every request must be read and answered within `timeout` seconds of the
server starting to wait for it; a head not complete by then is answered 408,
and the connection is closed either way.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from moviestream_common import metrics
from moviestream_common.web import install_conventions

REQUEST_TIMEOUT_S = 10.0
_TIMED_OUT_BODY = b'{"error": "the request did not arrive in time"}\n'
TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_TIMED_OUT_BODY), _TIMED_OUT_BODY)
)


def create_health_app(readiness: Callable[[], dict[str, str]]) -> Flask:
    app = Flask(__name__)
    install_conventions(app, readiness)
    metrics.billing_orders()  # the orders' series exist, at zero, before the first batch
    return app


class BoundedRequestHandler(WSGIRequestHandler):
    """A request handler with a deadline per request; `timeout` also bounds every single read and write."""

    timeout = REQUEST_TIMEOUT_S

    def handle_one_request(self) -> None:
        self._head_read = False
        self._lock = threading.Lock()
        deadline = threading.Timer(self.timeout, self._give_up)
        deadline.daemon = True
        deadline.start()
        try:
            super().handle_one_request()
        finally:
            deadline.cancel()

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the header lines
        with self._lock:
            self._head_read = True
        return parsed

    def _give_up(self) -> None:
        with self._lock:
            self.close_connection = True
            if not self._head_read:
                with contextlib.suppress(OSError):
                    self.connection.sendall(TIMED_OUT)
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)  # wakes the handler's read or write


def serve_health(
    app: Flask,
    port: int,
    host: str = "0.0.0.0",  # noqa: S104 - the probes come from the kubelet, off the pod
    timeout: float = REQUEST_TIMEOUT_S,
) -> BaseWSGIServer:
    """Serve `app` from a daemon thread, each request bounded by `timeout` seconds. Port 0 picks a free one."""
    handler = type("HealthRequestHandler", (BoundedRequestHandler,), {"timeout": timeout})
    server = make_server(host, port, app, threaded=True, request_handler=handler)
    threading.Thread(target=server.serve_forever, name=f"http-{server.port}", daemon=True).start()
    return server
