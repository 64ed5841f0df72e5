"""Keep-alive HTTP/1.1 connections to one upstream, on asyncio and httptools (the llhttp parser).

Every proxied call is one request to the inventory, so this is the gateway's
hot path. aiohttp's general-purpose client spends about 170 µs of CPU on such
a request where this pool spends about 60 µs (measured on the benchmark's
machine), which is most of what the gateway adds to a call. It does only what
the proxy needs: send a request whose body is already read, read the answer
whole (its end given by Content-Length or chunked encoding, as HTTP/1.1
servers send it), keep the connection for the next request when the upstream
allows it. HEAD is not supported: the parser cannot tell its answer has no body.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

# Methods that may be sent once more when a kept-alive connection turns out closed (RFC 9110, 9.2.2).
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "OPTIONS"})
MAX_CONNECTIONS = 100
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached or gave no usable answer."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect or answer in time."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class _Closed(UpstreamError):
    """The connection closed before a byte of the answer came: the request may not have been seen."""


class _Connection(asyncio.Protocol):
    """One TCP connection; at most one request on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[Answer] | None = None
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.started = False  # a byte of the current answer has arrived
        self.reusable = False

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.answer is None or self.answer.done():
            self.close()  # bytes nobody asked for: the connection can no longer be trusted
            return
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.started:
            self._fail(UpstreamError("the connection closed in the middle of the answer"))
        else:
            self._fail(_Closed("the connection closed before the answer"))

    # -- httptools callbacks --

    def on_message_begin(self) -> None:
        if self.answer is None or self.answer.done():
            raise UpstreamError("a second answer to one request")  # httptools raises HttpParserCallbackError

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_ANSWER_BYTES:
            self._fail(UpstreamError(f"the answer is larger than {MAX_ANSWER_BYTES} bytes"))
            return
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(Answer(self.parser.get_status_code(), self.headers, b"".join(self.body)))

    # -- used by the pool --

    def exchange(self, request: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.headers, self.body, self.size, self.started, self.reusable = {}, [], 0, False, False
        self.transport.write(request)
        return self.answer

    def time_out(self, seconds: float) -> None:
        self._fail(UpstreamTimeout(f"no complete answer within {seconds:g} s"))

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: UpstreamError) -> None:
        self.reusable = False
        self.close()
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)


class UpstreamPool:
    """Up to MAX_CONNECTIONS connections to `base_url`; the one used last is reused first."""

    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the upstream must be an http:// URL with a host, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._host_line = f"Host: {parts.netloc}\r\n"
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b"", *, timeout: float | None = None
    ) -> Answer:
        """Send `method target` with `headers` and `body`; raise UpstreamTimeout or UpstreamError if no answer.

        A request that finds its kept-alive connection closed by the upstream
        is sent once more on a new connection if its method is idempotent.
        """
        if method == "HEAD":
            raise ValueError("HEAD is not supported")
        request = self._encode(method, target, headers, body)
        timeout = self.read_timeout if timeout is None else timeout
        async with self._slots:
            while True:
                connection, reused = await self._acquire()
                try:
                    answer = await self._exchange(connection, request, timeout)
                except _Closed:
                    if reused and method in IDEMPOTENT:
                        self._drop_idle()  # closed by an upstream that restarted, most likely, like this one
                        continue
                    raise UpstreamError("the connection closed before the answer") from None
                finally:
                    self._release(connection)
                return answer

    def _encode(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        head = [f"{method} {self.prefix}{target} HTTP/1.1\r\n", self._host_line]
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}\r\n")
        head += [f"{name}: {value}\r\n" for name, value in headers.items()]
        head.append("\r\n")
        # aiohttp hands over the request line and headers decoded with surrogateescape: this restores the bytes.
        return "".join(head).encode("utf-8", "surrogateescape") + body

    async def _exchange(self, connection: _Connection, request: bytes, timeout: float) -> Answer:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout, connection.time_out, timeout)
        try:
            return await connection.exchange(request)
        finally:
            timer.cancel()

    async def _acquire(self) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if connection.is_open:
                self._busy.add(connection)
                return connection, True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(_Connection, self.host, self.port)
        except TimeoutError:
            raise UpstreamTimeout(f"could not connect within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError(f"could not connect: {exc}") from None
        self._busy.add(connection)
        return connection, False

    def _release(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        if connection.reusable and connection.is_open:
            self._idle.append(connection)
        else:
            connection.close()

    def _drop_idle(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    async def close(self) -> None:
        self._drop_idle()
        for connection in self._busy:
            connection.close()
        await asyncio.sleep(0)  # the transports finish closing on the next turn of the loop
