"""A keep-alive HTTP/1.1 client for one origin, on httptools (llhttp): how the gateway reaches the inventory.

aiohttp's client took about half of the gateway's instructions per proxied
request (323k of 668k under callgrind) and 0.17 ms of its 0.5 ms budget at
one connection; this client does only what the gateway needs (one origin,
answers held whole and capped) in about 130k. tests/test_http_pool.py
holds it to aiohttp's client answer by answer on a scripted upstream.

What it keeps of aiohttp's behaviour: a bounded pool whose wait counts in the
request's timeout; idle connections closed after `idle_seconds`; informational
(1xx) answers skipped; repeated headers kept; trailers ignored; answers read
to EOF where no length is given; an idempotent request sent once more when
its connection closes before the answer's head (RFC 9112, 9.3.1); a HEAD
answer ended by its head, whatever length it names; and the
three leniencies its parser allows an answer (a bare LF for CRLF, obs-fold
and other odd header values, spaces after a chunk size). Where it is
stricter (a 101 or a status below 100, a coding other than chunked, a head
over 64 KiB, an RST ending a body read to EOF), the tests list why.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import httptools
from multidict import CIMultiDict

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Methods whose empty body goes without a Content-Length, as aiohttp's client sends them.
BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# aiohttp's client's limits for one header line (and the reason phrase), and for the number of headers.
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 128
# The reason phrase and the names and values of the head's fields, or of the trailers'. httptools holds
# a field whole before it calls back, so bytes fed with no callback coming are held to it too.
MAX_HEAD_BYTES = 64 * 1024
# A header name (RFC 9110, 5.1). lenient_headers lets llhttp take "Content-Length :" as a length and hand the
# name over with its space, which would slip past this client's own checks of the framing headers.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class UpstreamError(Exception):
    """The upstream could not be reached, or its answer is not one."""


class Disconnected(UpstreamError):
    """The connection closed (or failed) before the answer's head had come."""


class AnswerTooLarge(UpstreamError):
    """The answer's body is larger than the client holds in memory."""


class PoolClosed(UpstreamError):
    """The pool was closed before the answer came."""


class _HeadAnswered(Exception):
    """Stops the parser once a HEAD answer's head has come: llhttp cannot be told it has no body."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: CIMultiDict[str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection: one exchange at a time, its answer parsed as it arrives."""

    _head: CIMultiDict[str]  # the final answer's headers, once on_headers_complete has them

    def __init__(self, max_answer_bytes: int) -> None:
        self._max_answer_bytes = max_answer_bytes
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._answer: asyncio.Future[Answer] | None = None
        # Bytes or EOF may come before the first exchange (a server that speaks first, or closes at once).
        self._start_answer()

    def _start_answer(self, head_only: bool = False) -> None:
        """What is known of the next answer: nothing yet, but whether it answers a HEAD."""
        self._head_only = head_only
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0  # body bytes
        self._part_bytes = 0  # of the head (or the trailers) read so far
        self._fields = 0  # in the head (or the trailers) read so far
        self._callbacks = 0  # from the parser, so far: while none comes, it may be holding a field back
        self._stalled = 0  # bytes fed since a callback last came
        self._in_head = True
        self._head_done = False  # the final (not informational) answer's head has come
        self._to_eof = False  # its body ends when the connection does
        self._complete = False
        self._error: UpstreamError | None = None
        self.reusable = False

    # -- the exchange ----------------------------------------------------------------------------

    def exchange(self, request: bytes, *, head_only: bool = False) -> asyncio.Future[Answer]:
        answer = asyncio.get_running_loop().create_future()
        if self.transport is None or self.transport.is_closing():
            answer.set_exception(Disconnected("the connection closed before the request was sent"))
            return answer
        self._start_answer(head_only)
        self._answer = answer
        self.transport.write(request)
        return answer

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # One parser for the connection's answers, one after the other; an error closes the connection.
        self._parser = httptools.HttpResponseParser(self)
        # The leniencies aiohttp's client allows an answer (its parser is llhttp too), and no other;
        # the names of the headers are held to the RFC all the same (on_header).
        self._parser.set_dangerous_leniencies(
            lenient_headers=True, lenient_optional_cr_before_lf=True, lenient_spaces_after_chunk_size=True
        )

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None or answer.done() or self._complete:  # bytes no request asked for
            self.close()
            return
        callbacks = self._callbacks
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:  # _HeadAnswered included: the answer is done, the connection too
            self.fail(self._error or UpstreamError("the answer could not be read"))
        except httptools.HttpParserUpgrade:
            self.fail(UpstreamError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self.fail(UpstreamError(f"malformed answer: {exc}"))
        else:
            # A field that never ends: what httptools holds of it is at most this and one read more.
            self._stalled = self._stalled + len(data) if callbacks == self._callbacks else 0
            if self._stalled > MAX_HEAD_BYTES:
                self.fail(UpstreamError("an answer's header larger than allowed"))

    def eof_received(self) -> None:
        if self._to_eof and not self._complete:
            self._finish()
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reusable = False
        if self._answer is not None and not self._answer.done():
            if self._head_done:
                self.fail(UpstreamError("the connection closed before the answer's end"))
            else:
                self.fail(Disconnected(f"the connection closed before an answer: {exc or 'EOF'}"))

    # -- httptools' callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._callbacks += 1
        if self._complete:  # a second answer to one request
            self._error = UpstreamError("more than one answer to one request")
            raise self._error
        self._headers = []
        self._in_head = True
        self._part_bytes = self._fields = 0

    def on_status(self, reason: bytes) -> None:  # the reason phrase, in as many pieces as it came in
        self._callbacks += 1
        self._part_bytes += len(reason)
        if self._part_bytes > MAX_FIELD_BYTES:
            self._error = UpstreamError("the answer's reason phrase is larger than allowed")
            raise self._error

    def on_header(self, name: bytes, value: bytes) -> None:
        self._callbacks += 1
        self._fields += 1
        self._part_bytes += len(name) + len(value)
        if (
            len(name) > MAX_FIELD_BYTES
            or len(value) > MAX_FIELD_BYTES
            or self._fields > MAX_HEADERS
            or self._part_bytes > MAX_HEAD_BYTES
        ):
            self._error = UpstreamError("the answer's head or trailers are larger than allowed")
            raise self._error
        if not self._in_head:
            return  # a chunked answer's trailer: counted, not a header
        if not _TOKEN.fullmatch(name) or b"\0" in value:  # a NUL, as aiohttp's client (RFC 9110, 5.5)
            self._error = UpstreamError("a header name that is not a token, or a NUL in a value")
            raise self._error
        # llhttp drops the whitespace before a value, not after it (RFC 9110, 5.5: neither is the value's).
        value = value.rstrip(b" \t")
        self._headers.append((name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        self._callbacks += 1
        self._in_head = False
        self._part_bytes = self._fields = 0  # the trailers', from here
        status = self._parser.get_status_code()
        if status < 100:  # llhttp takes any three digits; RFC 9110 (15) none below 100
            self._error = UpstreamError(f"an answer with the status {status}")
            raise self._error
        if status < 200:
            return  # informational: the answer comes after it
        self._head_done = True
        self._head = headers = CIMultiDict(self._headers)
        if self._head_only:
            self._finish()
            self.reusable = False  # the parser would read the Content-Length it names as a body to come
            raise _HeadAnswered
        declared = headers.get("Content-Length")
        bodiless = status in (204, 304)
        if declared is not None and not bodiless and declared.isdigit() and int(declared) > self._max_answer_bytes:
            self._error = AnswerTooLarge()
            raise self._error
        codings = headers.getall("Transfer-Encoding", ())
        # Only chunked, which llhttp decodes: a body in any other coding would be passed on still coded.
        if codings and ",".join(codings).strip(" \t").lower() != "chunked":
            self._error = UpstreamError("an answer in a transfer coding other than chunked")
            raise self._error
        self._to_eof = declared is None and not codings and not bodiless

    def on_body(self, body: bytes) -> None:
        self._callbacks += 1
        if not self._head_done:
            return  # an informational answer's (llhttp reads one where a 1xx names a length): not the answer's
        self._size += len(body)
        if self._size > self._max_answer_bytes:
            self._error = AnswerTooLarge()
            raise self._error
        self._body.append(body)

    def on_chunk_header(self) -> None:  # a chunk's size line has been read; the parser holds nothing of it
        self._callbacks += 1

    def on_message_complete(self) -> None:
        self._callbacks += 1
        if self._head_done:
            self._finish()

    # --------------------------------------------------------------------------------------------

    def _finish(self) -> None:
        self._complete = True
        self.reusable = not self._to_eof and self._parser.should_keep_alive()
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(Answer(self._parser.get_status_code(), self._head, b"".join(self._body)))

    def fail(self, error: UpstreamError) -> None:
        """End the exchange with `error`, and the connection with it."""
        self.close()
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)


class ConnectionPool:
    """Requests to http://`host`:`port`, over at most `limit` kept-alive connections."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        host_header: str,
        limit: int,
        idle_seconds: float,
        connect_timeout: float,
        max_answer_bytes: int,
    ) -> None:
        self.host, self.port = host, port
        self._host_line = f"Host: {host_header}\r\n"
        self._idle_seconds = idle_seconds
        self._connect_timeout = connect_timeout
        self._max_answer_bytes = max_answer_bytes
        self._slots = asyncio.Semaphore(limit)
        self._idle: deque[_Connection] = deque()  # the most recently used on the right
        self._busy: set[_Connection] = set()  # in an exchange
        self._expiry: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(
        self, method: str, target: str, body: bytes, headers: Mapping[str, str], *, timeout: float
    ) -> Answer:
        """Send the request and return the whole answer; TimeoutError when `timeout` seconds pass first.

        The timeout covers the whole exchange: the wait for a free connection, the connecting and the answer.
        """
        request = self._encode(method, target, body, headers)
        async with asyncio.timeout(timeout), self._slots:
            retry = method in IDEMPOTENT_METHODS
            while True:
                if self._closed:
                    raise PoolClosed("the connection pool is closed")
                connection = self._take() or await self._connect()
                self._busy.add(connection)
                try:
                    answer = await connection.exchange(request, head_only=method == "HEAD")
                except Disconnected:
                    if not retry:
                        raise
                    retry = False
                    continue
                except BaseException:  # a timeout or cancellation included: the answer is half read
                    connection.close()
                    raise
                finally:
                    self._busy.discard(connection)
                self._give_back(connection)
                return answer

    async def close(self) -> None:
        """Close every connection, those in an exchange too: their requests fail with PoolClosed."""
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        while self._idle:
            self._idle.pop().close()
        for connection in list(self._busy):
            connection.fail(PoolClosed("the connection pool was closed before the answer came"))

    def _encode(self, method: str, target: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [f"{method} {target} HTTP/1.1\r\n", self._host_line]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n")
        if body or method not in BODILESS_METHODS:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        head = "".join(lines)
        # Only the line breaks between the lines: none may come from a target, a name or a value.
        if head.count("\n") != len(lines) or head.count("\r") != len(lines) or not method.isalpha():
            raise ValueError("a request line or header with a line break, or a method that is not a token")
        return head.encode("utf-8", "surrogateescape") + body  # as aiohttp's client encodes a head

    def _take(self) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()
            open_ = connection.transport is not None and not connection.transport.is_closing()
            if open_ and now - connection.idle_since < self._idle_seconds:
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._max_answer_bytes), self.host, self.port
                )
        except TimeoutError:
            raise  # an OSError too, but answered as a timeout (504), as aiohttp's client's was
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        if self._closed:  # while it connected
            connection.close()
            raise PoolClosed("the connection pool is closed")
        return connection

    def _give_back(self, connection: _Connection) -> None:
        if not connection.reusable or connection.transport is None or self._closed:
            connection.close()
            return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        self._idle.append(connection)
        if self._expiry is None:
            self._expiry = loop.call_later(self._idle_seconds, self._expire)

    def _expire(self) -> None:
        """Close the connections idle for `idle_seconds`; come back while any remain."""
        self._expiry = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() - self._idle_seconds
        while self._idle and self._idle[0].idle_since <= deadline:
            self._idle.popleft().close()
        if self._idle:
            self._expiry = loop.call_at(self._idle[0].idle_since + self._idle_seconds, self._expire)
