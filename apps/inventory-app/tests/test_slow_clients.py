"""Slow clients against inventory-app in a real gunicorn, as the image runs it, over real sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from devtools.stack.local_stack import GUNICORN, ROOT, free_port
from devtools.waiting import answers_ok, wait_for

READ_TIMEOUT = 1.0
THREADS = 8
SLOW_CLIENTS = 12


@pytest.fixture
def server(database: str) -> Iterator[int]:
    port = free_port()
    env = os.environ | {
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": str(THREADS),
        "REQUEST_READ_TIMEOUT": str(READ_TIMEOUT),
    }
    process = subprocess.Popen(
        [*GUNICORN, "--bind", f"127.0.0.1:{port}", "inventory_app:create_app()"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: answers_ok(f"http://127.0.0.1:{port}/readyz"), timeout=30, what="inventory-app")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Everything the server sends until it closes: status, headers, body."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status, _, body = answer(sock)
    return status, body


PARTIAL_BODY = b"POST /api/movies HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("request_start", [PARTIAL_HEAD, PARTIAL_BODY], ids=["head", "body"])
def test_a_request_not_sent_in_time_answers_408_json_and_closes(server: int, request_start: bytes) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(request_start)
        status, headers, body = answer(sock)
        waited = time.monotonic() - started
    assert status == 408
    assert headers["content-type"] == "application/json"
    assert "not received within 1 s" in json.loads(body)["error"]
    assert READ_TIMEOUT <= waited < READ_TIMEOUT + 3
    status, movies = get(server, "/api/movies", timeout=5)
    assert (status, json.loads(movies)) == (200, [])


def test_the_deadline_bounds_the_whole_request_not_each_read(server: int) -> None:
    """A client trickling a byte at a time never lets a single read wait long, and is still cut off."""
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(PARTIAL_BODY)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):  # noqa: PT012 - closed while still sending
            for _ in range(100):
                time.sleep(0.1)
                sock.sendall(b" ")
        status, _, _ = answer(sock)
        assert status == 408
        assert time.monotonic() - started < READ_TIMEOUT + 3


def test_a_kept_alive_connection_idle_for_longer_than_the_deadline_still_serves(server: int) -> None:
    """The deadline starts at a request's first byte, not when its connection was opened."""
    with connect(server) as sock:
        for _ in range(2):
            time.sleep(READ_TIMEOUT * 1.5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b'{"status":"ok"}\n'):
                data += sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200 ")


def test_healthz_keeps_answering_while_more_slow_clients_than_threads_are_connected(server: int) -> None:
    stop = threading.Event()
    socks = [connect(server) for _ in range(SLOW_CLIENTS)]

    def trickle(sock: socket.socket, start: bytes) -> None:
        try:
            sock.sendall(start)
            while not stop.wait(0.2):
                sock.sendall(b" ")
        except OSError:
            pass  # the server gave up on this client, as it should

    starts = [PARTIAL_BODY if i % 2 else PARTIAL_HEAD for i in range(SLOW_CLIENTS)]
    trickles = [threading.Thread(target=trickle, args=pair) for pair in zip(socks, starts, strict=True)]
    for thread in trickles:
        thread.start()
    try:
        time.sleep(0.3)  # every thread of the server now holds a slow client
        waits = []
        for _ in range(4):
            started = time.monotonic()
            assert get(server, "/healthz", timeout=READ_TIMEOUT + 4) == (200, b'{"status":"ok"}\n')
            waits.append(time.monotonic() - started)
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in trickles:
            thread.join()
        for sock in socks:
            sock.close()
    # Connections are served in turn: /healthz waits at most for the slow clients ahead of it to be cut off.
    assert max(waits) < READ_TIMEOUT * -(-SLOW_CLIENTS // THREADS) + 2, waits
