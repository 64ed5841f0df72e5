"""The health server bounds each request in time, so slow clients cannot hold it."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
import urllib3

from billing_app.health import create_health_app, serve_health

TIMEOUT_S = 1.0


@pytest.fixture
def port() -> Iterator[int]:
    server = serve_health(create_health_app(dict), 0, host="127.0.0.1", timeout=TIMEOUT_S)
    yield server.port
    server.shutdown()


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed."""
    sock.settimeout(TIMEOUT_S * 5)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received, time.monotonic()


def test_a_half_sent_head_is_answered_408_and_closed_in_time(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        received, closed = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert received.endswith(b'{"error": "the request did not arrive in time"}\n')
    assert TIMEOUT_S * 0.9 <= closed - started <= TIMEOUT_S * 2


def test_a_head_trickled_a_byte_at_a_time_is_cut_at_the_deadline(port: int) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        sent = 0
        with contextlib.suppress(ConnectionError):
            for byte in head:  # each byte well inside any per-read timeout
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(TIMEOUT_S / 5)
        assert sent < len(head)
        assert time.monotonic() - started <= TIMEOUT_S * 3


def test_an_idle_kept_alive_connection_is_closed(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        received, closed = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert closed - started <= TIMEOUT_S * 2


def test_probes_answer_at_once_while_slow_clients_wait(port: int) -> None:
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
    try:
        for sock in slow:
            sock.sendall(b"GET /readyz HTTP/1.1\r\n")
        started = time.monotonic()
        for _ in range(5):
            assert urllib3.request("GET", f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
        assert time.monotonic() - started < TIMEOUT_S / 2
    finally:
        for sock in slow:
            sock.close()
