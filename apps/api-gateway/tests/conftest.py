from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pika
import pytest

from api_gateway import serve
from devtools.testing.aiohttp_server import BackgroundServer
from moviestream_common.rabbitmq import BillingQueue, RabbitSettings
from moviestream_common.web import serve_in_background


@pytest.fixture
def inventory_url(database: str) -> Iterator[str]:
    """The real inventory API, served over HTTP on a free port against a fresh database."""
    from inventory_app import create_app as create_inventory

    server = serve_in_background(create_inventory(), 0, host="127.0.0.1")
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()


@pytest.fixture
def gateway_for(billing_queue: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., BackgroundServer]]:
    started: list[BackgroundServer] = []

    def build(inventory: str, **env: str) -> BackgroundServer:
        monkeypatch.setenv("INVENTORY_URL", inventory)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        started.append(BackgroundServer(serve))
        return started[-1]

    yield build
    for gateway in started:
        gateway.close()


@pytest.fixture
def gateway(gateway_for: Callable[..., BackgroundServer], inventory_url: str) -> BackgroundServer:
    return gateway_for(inventory_url)


class Recorder:
    """An HTTP/1.1 keep-alive upstream that records what reached it and answers 207 with a JSON body."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorder.requests.append(
                    {
                        "method": self.command,
                        "uri": self.path,
                        "body": self.rfile.read(length),
                        "headers": dict(self.headers),
                        "client_port": self.client_address[1],
                    }
                )
                body = b'{"ok": true}'
                self.send_response(207)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _record

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    upstream = Recorder()
    yield upstream
    upstream.server.shutdown()


@pytest.fixture
def silent_upstream() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
    for sock in accepted:
        sock.close()


@pytest.fixture
def unaccepting_upstream() -> Iterator[str]:
    """A server whose accept queue is full: a new connection is never made (its SYN goes unanswered)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    filler = socket.create_connection(listener.getsockname())  # the one connection a backlog of 0 holds
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    filler.close()
    listener.close()


@pytest.fixture
def queue_reader(billing_queue: str) -> Iterator[Callable[[], list[tuple[pika.BasicProperties, bytes]]]]:
    connection = pika.BlockingConnection(RabbitSettings.from_env().parameters())
    channel = connection.channel()
    BillingQueue(billing_queue).declare(channel)

    def read_all() -> list[tuple[pika.BasicProperties, bytes]]:
        messages = []
        while True:
            method, properties, body = channel.basic_get(billing_queue, auto_ack=True)
            if method is None:
                return messages
            messages.append((properties, body))

    yield read_all
    connection.close()


@dataclass
class Seen:
    connection: int
    head: bytes
    body: bytes


@dataclass
class Scripted:
    """Each request is answered with what `reply(seen)` returns: bytes to send, or None to close unanswered.

    `after` each answer the connection is kept open ("keep"), closed ("close") or reset ("reset"); with
    `closes_at_accept`, each connection is closed as soon as it is accepted.
    """

    reply: Callable[[Seen], bytes | None]
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    after: str = "keep"
    closes_at_accept: bool = False


def _read_request(conn: socket.socket, buffer: bytearray) -> tuple[bytes, bytes] | None:
    while b"\r\n\r\n" not in buffer:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:  # the client closed with an answer unread (one it refused)
            return None
        if not chunk:
            return None
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(rest) < length:
        rest += conn.recv(65536)
    buffer[:] = rest[length:]
    return head, rest[:length]


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[Seen], bytes | None]], Scripted]]:
    """A raw HTTP/1.1 upstream: `scripted(reply)` answers each request with what `reply(seen)` returns."""
    listener = socket.create_server(("127.0.0.1", 0))
    server = Scripted(lambda _: None, url=f"http://127.0.0.1:{listener.getsockname()[1]}")

    def serve(conn: socket.socket, index: int) -> None:
        buffer = bytearray()
        with conn:
            if server.closes_at_accept:
                return
            while (request := _read_request(conn, buffer)) is not None:
                seen = Seen(index, *request)
                server.seen.append(seen)
                answer = server.reply(seen)
                if answer is None:
                    return
                try:
                    conn.sendall(answer)
                except OSError:  # the client hung up before taking it all (as on an answer it refuses)
                    return
                if server.after == "reset":  # an RST instead of a FIN: the socket closes with its linger at zero
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                if server.after != "keep":
                    return

    def accept() -> None:
        index = 0
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn, index), daemon=True).start()
            index += 1

    threading.Thread(target=accept, daemon=True).start()

    def script(reply: Callable[[Seen], bytes | None]) -> Scripted:
        server.reply = reply
        return server

    yield script
    listener.close()
