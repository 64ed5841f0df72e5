"""What the gateway answers before a request reaches its handlers: parser errors and slow clients."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import pytest

from devtools.testing.aiohttp_server import BackgroundServer


def _connect(gateway: BackgroundServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gateway.port), timeout=10)


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of the next answer on `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize(
    ("request_bytes", "error"),
    [
        (b"GET /api/movies?title=" + b"x" * 100_000 + b" HTTP/1.1\r\nHost: gateway\r\n\r\n", "at most 8190 bytes"),
        (b"GET /api/movies HTTP/1.1\r\nHost: gateway\r\nX-Big: " + b"x" * 100_000 + b"\r\n\r\n", "at most 8190 bytes"),
        (b"GET /api/movies/\xff HTTP/1.1\r\nHost: gateway\r\n\r\n", "Invalid char in url path"),
        (b"NOT HTTP AT ALL\r\n\r\n", "Invalid method encountered"),
    ],
    ids=["100-kb-query", "100-kb-header", "raw-byte", "malformed"],
)
def test_a_request_the_parser_refuses_is_answered_as_json(gateway: BackgroundServer, request_bytes, error) -> None:
    with _connect(gateway) as sock:
        sock.sendall(request_bytes)
        status, headers, body = _answer(sock)
    assert status == 400
    assert headers["content-type"] == "application/json; charset=utf-8"
    message = json.loads(body)["error"]
    assert error in message
    assert "\n" not in message
    assert len(body) < 200


@pytest.fixture
def slow_gateway(gateway_for, inventory_url) -> Callable[[str], BackgroundServer]:
    return lambda seconds: gateway_for(inventory_url, REQUEST_READ_TIMEOUT=seconds)


@pytest.mark.parametrize("path", ["/api/billing", "/api/movies"])
def test_a_body_shorter_than_its_content_length_is_answered_408(slow_gateway, path) -> None:
    gateway = slow_gateway("0.5")
    with _connect(gateway) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Length: 100\r\n\r\n{{".encode())
        started = time.monotonic()
        status, headers, body = _answer(sock)
        assert time.monotonic() - started < 3
        assert status == 408
        assert headers["connection"] == "close"
        assert json.loads(body) == {"error": "the request body did not arrive within 0.5 s"}
        assert _closed(sock)
        assert time.monotonic() - started < 3


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(gateway: BackgroundServer) -> None:
    with _connect(gateway) as sock:
        sock.sendall(b"POST /api/movies HTTP/1.1\r\nHost: gateway\r\nContent-Length: 1000000\r\n\r\n")
        status, _, body = _answer(sock)
    assert status == 413
    assert "131072" in json.loads(body)["error"]


def test_a_head_sent_a_byte_at_a_time_is_answered_408_and_closed(slow_gateway) -> None:
    gateway = slow_gateway("0.5")
    with _connect(gateway) as sock:
        sock.sendall(b"GET /api/movies HTTP/1.1\r\nHost: gateway\r\n")
        started = time.monotonic()
        sock.settimeout(0.1)
        dripped = 0
        while time.monotonic() - started < 3:  # a header byte every 0.1 s until the gateway answers
            sock.sendall(b"X")
            dripped += 1
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                continue
        assert dripped >= 4
        sock.settimeout(5)
        status, _, body = _answer(sock)
        assert status == 408
        assert json.loads(body) == {"error": "the request head did not arrive within 0.5 s"}
        assert time.monotonic() - started < 3
        assert _closed(sock)


def test_a_kept_alive_connection_may_idle_longer_than_the_read_timeout(slow_gateway) -> None:
    gateway = slow_gateway("0.3")
    with _connect(gateway) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
            assert _answer(sock)[0] == 200
            time.sleep(0.6)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")  # the head in two parts, quickly
        time.sleep(0.1)
        sock.sendall(b"\r\n")
        assert _answer(sock)[0] == 200


def test_slow_clients_do_not_stop_the_gateway_answering(slow_gateway) -> None:
    gateway = slow_gateway("3")
    slow = [_connect(gateway) for _ in range(16)]
    for index, sock in enumerate(slow):
        if index % 2:
            sock.sendall(b"POST /api/billing HTTP/1.1\r\nHost: gateway\r\nContent-Length: 100\r\n\r\n{")
        else:
            sock.sendall(b"GET /api/movies HTTP/1.1\r\nHost: gateway\r\n")
    started = time.monotonic()
    assert gateway.get("/healthz").status == 200
    assert time.monotonic() - started < 1.5  # well before the slow clients' deadline
    assert [_answer(sock)[0] for sock in slow] == [408] * len(slow)
    for sock in slow:
        sock.close()
