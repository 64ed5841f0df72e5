"""gunicorn's threaded worker with a deadline for reading each request (gunicorn_config names it).

gthread frees a thread while a connection sends nothing, but once a request's
first bytes arrive a thread reads the rest with blocking calls: a client that
declares a Content-Length and sends less holds that thread for ever, and a
few such clients take them all. Here every request's head and body must
arrive within REQUEST_READ_TIMEOUT seconds of its first byte; a client that
is slower gets a 408 (or, when the application has answered already, its
connection closed).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from gunicorn import glogging, util
from gunicorn.workers.gthread import ThreadWorker

from moviestream_common.config import env_float
from moviestream_common.conventions import ClientTooSlow

DEFAULT_READ_TIMEOUT = 10.0


class DeadlineSocket:
    """A client socket whose reads fail with ClientTooSlow once the current request's deadline has passed."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock = sock
        self._seconds = seconds
        self._deadline: float | None = None
        self.armed = False
        self.answered = False
        self.timed_out = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def start_request(self) -> None:
        """Bound the next request: its clock starts at its first read."""
        self._deadline = None
        self.armed = True
        self.answered = False

    def recv(self, size: int, *flags: int) -> bytes:
        if not self.armed:
            return self._sock.recv(size, *flags)
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self._seconds
        remaining = self._deadline - now
        if remaining <= 0:
            raise self._too_slow()
        prior = self._sock.gettimeout()
        # The remaining time, or less if the caller (gunicorn's body drain) set a shorter timeout itself.
        self._sock.settimeout(remaining if prior is None else min(prior, remaining))
        try:
            return self._sock.recv(size, *flags)
        except TimeoutError:
            if time.monotonic() >= self._deadline:
                raise self._too_slow() from None
            raise
        finally:
            self._sock.settimeout(prior)

    def _too_slow(self) -> ClientTooSlow:
        self.timed_out = True
        return ClientTooSlow(self._seconds)

    def close_after_timeout(self) -> None:
        """Close now, lingering briefly so the client can read the 408 before any reset."""
        self.armed = False
        util.close_graceful(self._sock, timeout=min(1.0, self._seconds / 4))

    def send(self, data: bytes, *flags: int) -> int:
        self.answered = True
        return self._sock.send(data, *flags)

    def sendall(self, data: bytes, *flags: int) -> None:
        self.answered = True
        self._sock.sendall(data, *flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        self.answered = True
        return self._sock.sendfile(file, offset, count)


def timeout_answer(seconds: float) -> bytes:
    """The whole HTTP answer to a request not read in time: JSON like every other error."""
    body = json.dumps({"error": f"the request was not received within {seconds:g} s"}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class DeadlineThreadWorker(ThreadWorker):
    """gthread, with each request's head and body read within REQUEST_READ_TIMEOUT seconds."""

    def init_process(self) -> None:
        self.read_timeout = env_float("REQUEST_READ_TIMEOUT", DEFAULT_READ_TIMEOUT, minimum=0.001)
        super().init_process()

    def handle(self, conn: Any) -> Any:
        if not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket(conn.sock, self.read_timeout)
        conn.sock.start_request()
        try:
            result = super().handle(conn)
        finally:
            # Keep-alive polling happens on the main thread, unbounded as gunicorn means it.
            conn.sock.armed = False
        if conn.sock.timed_out:
            # Here, not on the main thread: gunicorn's close there lingers up to 2 s on a client that keeps
            # sending, and every other connection of the worker would wait.
            conn.sock.close_after_timeout()
            return False
        return result

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if not isinstance(exc, ClientTooSlow):
            super().handle_error(req, client, addr, exc)
            return
        self.log.warning("request not received in time", extra={"client": addr[0] if addr else ""})
        if isinstance(client, DeadlineSocket) and client.answered:
            return  # the application answered (its own 408); the connection closes
        client.armed = False
        try:
            client.settimeout(1.0)
            client.sendall(timeout_answer(exc.seconds))
        except OSError:
            self.log.debug("could not send the 408")


class NoAccessLogger(glogging.Logger):
    """gunicorn's logger without its access line: the applications write their own, as JSON.

    gunicorn builds its line (a few per cent of a GET by id's CPU) whenever a
    logging configuration is given, even with no access log to write it to.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return
