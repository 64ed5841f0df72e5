"""api_gateway.http_pool held to aiohttp's client: the same scripted answers give the same outcome.

Each script is answered to two requests in a row on one client, so what a
broken or odd answer leaves on a kept-alive connection shows in the second;
each runs under asyncio's own loop and under uvloop, which the gateway's
workers run. Where this client deliberately differs from aiohttp's, the test
says so. Then: the same answers cut into pieces at every byte, and what a
timeout, a cancellation or close() leaves behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from http.client import parse_headers
from io import BytesIO
from typing import Any, NamedTuple

import aiohttp
import pytest
import uvloop
from yarl import URL

from api_gateway.http_pool import AnswerTooLarge, ConnectionPool, Disconnected, PoolClosed, UpstreamError, _Connection

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
LIMIT = 1000
TIMEOUT = 0.5
# As the gateway sends them (aiohttp's client would add a Content-Type of its own to a body without one).
HEADERS = {
    "User-Agent": "moviestream-api-gateway",
    "Accept": "application/json",
    "Content-Type": "application/json",
    "X-Request-ID": "abc",
}


class Script(NamedTuple):
    """What the scripted upstream does: see conftest.Scripted."""

    reply: bytes | None  # the answer to each request; None: the connection is closed unanswered
    after: str = "keep"  # then "keep" the connection open, "close" it, or "reset" it
    closes_at_accept: bool = False  # each connection closed before any request
    method: str = "GET"


def _with_header(line: bytes, answer: bytes = OK) -> bytes:
    return answer.replace(b"\r\n\r\n", b"\r\n" + line + b"\r\n\r\n", 1)


SCRIPTS: dict[str, Script] = {
    "content-length": Script(OK),
    "empty": Script(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    "chunked": Script(CHUNKED + b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"),
    "chunked-trailers": Script(CHUNKED + b"2\r\nab\r\n0\r\nContent-Type: text/html\r\nX-Late: 1\r\n\r\n"),
    "chunk-size-then-spaces": Script(CHUNKED + b"3  \r\nabc\r\n0\r\n\r\n"),
    "eof-in-chunked-body": Script(CHUNKED + b"3\r\nab", "close"),
    "100-continue": Script(b"HTTP/1.1 100 Continue\r\n\r\n" + OK),
    "103-early-hints": Script(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + OK),
    "informational-with-a-body": Script(b"HTTP/1.1 199 Odd\r\nContent-Length: 5\r\n\r\nJUNK!" + OK),
    "status-below-100": Script(b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n"),
    "switching-protocols": Script(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"),
    "repeated-headers": Script(_with_header(b"Allow: GET\r\nallow: PUT, DELETE")),
    "padded-values": Script(_with_header(b"X-Pad: \t  spaced out  ")),
    "obs-fold": Script(_with_header(b"X-Folded: first\r\n  second")),
    "control-character-in-value": Script(_with_header(b"X-Odd: a\x01b")),
    "nul-in-value": Script(_with_header(b"X-Nul: a\x00b")),
    "utf-8-header": Script(_with_header("Location: /café".encode())),
    "bare-lf": Script(OK.replace(b"\r\n", b"\n")),
    "no-content": Script(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"),
    "no-content-then-stray-bytes": Script(b"HTTP/1.1 204 No Content\r\n\r\nstray"),
    "not-modified": Script(b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"),
    "not-modified-naming-a-large-length": Script(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5000\r\n\r\n"),
    "connection-close": Script(_with_header(b"Connection: close"), "close"),
    "reset-after-a-whole-answer": Script(OK, "reset"),
    "to-eof": Script(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread until the end", "close"),
    "to-eof-then-reset": Script(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\ncut or not", "reset"),
    "http-1.0-to-eof": Script(b"HTTP/1.0 200 OK\r\n\r\nold", "close"),
    "http-1.0-keep-alive": Script(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi"),
    "status-599": Script(b"HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\n"),
    "declared-too-large": Script(b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n" + b"x" * 1001),
    "chunked-too-large": Script(CHUNKED + b"3e9\r\n" + b"x" * 1001 + b"\r\n0\r\n\r\n"),
    "to-eof-too-large": Script(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1001, "close"),
    "malformed-status-line": Script(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n"),
    "not-http": Script(b"NOT HTTP AT ALL\r\n\r\n"),
    "bad-chunk-size": Script(CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n"),
    "two-content-lengths": Script(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"),
    "chunked-then-gzip": Script(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nraw to the end", "close"),
    "length-and-chunked": Script(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    ),
    "negative-length": Script(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
    "space-before-colon": Script(b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n{}"),
    "header-line-too-long": Script(_with_header(b"X-Big: " + b"v" * 9000)),
    "too-many-headers": Script(_with_header(b"\r\n".join(b"X-%d: v" % i for i in range(200)))),
    "head-over-64-kib": Script(_with_header(b"\r\n".join(b"X-%d: " % i + b"v" * 1600 for i in range(120)))),
    "reason-phrase-too-long": Script(b"HTTP/1.1 200 " + b"O" * 9000 + b"\r\nContent-Length: 0\r\n\r\n"),
    "too-many-trailers": Script(CHUNKED + b"0\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n"),
    "cut-short-then-closed": Script(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "close"),
    "cut-short-then-silent": Script(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
    "head-cut-then-closed": Script(b"HTTP/1.1 200 OK\r\nContent-Le", "close"),
    "closed-unanswered": Script(None),
    "closed-at-accept": Script(OK, closes_at_accept=True),
    # HEAD: the answer ends with its head, whatever length it names.
    "head-naming-a-length": Script(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", method="HEAD"),
    "head-naming-chunked": Script(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", method="HEAD"),
    "head-naming-no-length": Script(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\n", method="HEAD"),
}


def _pool(url: str, max_answer_bytes: int = LIMIT, limit: int = 4, connect_timeout: float = 1) -> ConnectionPool:
    target = URL(url)
    return ConnectionPool(
        target.host,
        target.port,
        host_header=target.host_port_subcomponent,
        limit=limit,
        idle_seconds=15,
        connect_timeout=connect_timeout,
        max_answer_bytes=max_answer_bytes,
    )


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS))
def run(request) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """asyncio.run, on each of the two event loops in turn."""

    def run_on_loop(coroutine: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            return runner.run(coroutine)

    return run_on_loop


async def _with_pool(url: str, method: str, body: bytes) -> list[tuple[object, ...]]:
    pool = _pool(url)
    outcomes = []
    for _ in range(2):
        try:
            answer = await pool.request(method, "/api/movies/1", body, HEADERS, timeout=TIMEOUT)
        except (UpstreamError, TimeoutError) as exc:
            outcomes.append(_failure(exc))
        else:
            outcomes.append((answer.status, _lowercased(answer.headers), answer.body))
    await pool.close()
    return outcomes


async def _with_aiohttp(url: str, method: str, body: bytes) -> list[tuple[object, ...]]:
    """What the gateway did with aiohttp's client: capped reads, no cookies, no redirects, no Accept added."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=4, keepalive_timeout=15),
        timeout=aiohttp.ClientTimeout(total=TIMEOUT, connect=1),
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("Accept-Encoding",),
    )
    outcomes = []
    for _ in range(2):
        try:
            async with session.request(
                method, url + "/api/movies/1", data=body or None, headers=HEADERS, allow_redirects=False
            ) as answer:
                content = b""
                async for chunk in answer.content.iter_any():
                    content += chunk
                    if len(content) > LIMIT:
                        raise AnswerTooLarge
                outcomes.append((answer.status, _lowercased(answer.headers), content))
        except (aiohttp.ClientError, TimeoutError, AnswerTooLarge) as exc:
            outcomes.append(_failure(exc))
    await session.close()
    return outcomes


def _lowercased(headers) -> list[tuple[str, str]]:
    """The headers in order, names lowercased: aiohttp writes known names its own way (ETag as Etag)."""
    return [(name.lower(), value) for name, value in headers.items()]


def _failure(exc: BaseException) -> tuple[str]:
    if isinstance(exc, TimeoutError):
        return ("timed out",)
    return ("too large",) if isinstance(exc, AnswerTooLarge) else ("failed",)


def _both(scripted, run, script: str, method: str | None = None, body: bytes = b""):
    steps = SCRIPTS[script]
    server = scripted(lambda _: steps.reply)
    server.after, server.closes_at_accept = steps.after, steps.closes_at_accept
    ours = run(_with_pool(server.url, method or steps.method, body))
    ours_seen = list(server.seen)
    server.seen.clear()
    theirs = run(_with_aiohttp(server.url, method or steps.method, body))
    return ours, theirs, ours_seen, list(server.seen)


# Where this client means to differ from aiohttp's, why, and what it makes of the answer: refused
# ("failed"), or the status it takes.
DIFFERENT: dict[str, object] = {
    # aiohttp's client reads "Content-Length : 2" as a header named "Content-Length " (and the
    # body as unframed); RFC 9112 (5.1) has such a head refused.
    "space-before-colon": "failed",
    # No request the gateway sends asks for an upgrade, and a server may switch only when asked
    # (RFC 9110, 15.2.2); aiohttp's client hands the 101 over as if it were the answer.
    "switching-protocols": "failed",
    # A body that ends with the connection cannot be told whole when the connection is reset
    # (RFC 9112, 8): aiohttp's client takes what came as the body.
    "to-eof-then-reset": "failed",
    # aiohttp's client hands a 99 over; there is no such status (RFC 9110, 15).
    "status-below-100": "failed",
    # aiohttp's client passes the body on still gzip-coded (it decodes only chunked, as this one).
    "chunked-then-gzip": "failed",
    # aiohttp's client holds up to 128 fields of 8 KiB each: 1 MiB of head.
    "head-over-64-kib": "failed",
    # The 204 came whole; what follows it is no answer to anything and closes the connection.
    # aiohttp's client fails the request on it.
    "no-content-then-stray-bytes": 204,
}


@pytest.mark.parametrize("script", sorted(set(SCRIPTS) - set(DIFFERENT)))
def test_the_same_answers_as_aiohttp_s_client(scripted, run, script) -> None:
    ours, theirs, _, _ = _both(scripted, run, script)
    assert ours == theirs


@pytest.mark.parametrize("script", sorted(DIFFERENT))
def test_where_it_differs_from_aiohttp_s_client_on_purpose(scripted, run, script) -> None:
    ours, theirs, _, _ = _both(scripted, run, script)
    assert [outcome[0] for outcome in ours] == [DIFFERENT[script]] * 2
    assert theirs[0] != ours[0]  # if aiohttp's client came to do the same, this case belongs with the others


@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", b""), ("DELETE", b""), ("POST", b""), ("PUT", b'{"title": "x"}'), ("POST", b'{"title": "x"}')],
)
def test_the_same_requests_as_aiohttp_s_client(scripted, method, body) -> None:
    _, _, ours, theirs = _both(scripted, asyncio.run, "content-length", method, body)

    def parsed(seen) -> tuple[object, ...]:
        request_line, _, rest = seen.head.partition(b"\r\n")
        headers = parse_headers(BytesIO(rest + b"\r\n\r\n"))
        return request_line, sorted((name.lower(), value) for name, value in headers.items()), seen.body

    assert [parsed(s) for s in ours] == [parsed(s) for s in theirs]
    assert len(ours) == 2


def test_a_second_answer_to_one_request_is_not_kept_for_the_next(scripted) -> None:
    server = scripted(lambda seen: OK.replace(b"{}", b"%d" % seen.connection).replace(b": 2", b": 1") * 2)
    outcomes = asyncio.run(_with_pool(server.url, "GET", b""))
    assert [body for _, _, body in outcomes] == [b"0", b"1"]  # the second from a new connection


@pytest.mark.parametrize(
    ("target", "headers"),
    [("/a", {"X-A": "a\r\nX-B: b"}), ("/a", {"X-A": "a\nX-B: b"}), ("/a\r\nX-B: b", {}), ("/a", {"X-A\r\n": "a"})],
    ids=["crlf-in-value", "lf-in-value", "crlf-in-target", "crlf-in-name"],
)
def test_a_line_break_that_would_split_the_request_is_refused(scripted, target, headers) -> None:
    server = scripted(lambda _: OK)
    pool = _pool(server.url)
    with pytest.raises(ValueError, match="line break"):
        asyncio.run(pool.request("GET", target, b"", headers, timeout=1))
    assert server.seen == []


def test_a_head_that_never_ends_is_refused_once_past_the_limit(scripted) -> None:
    server = scripted(lambda _: b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 200_000)
    assert asyncio.run(_with_pool(server.url, "GET", b"")) == [("failed",), ("failed",)]


def test_a_body_far_larger_than_the_framing_limit_is_read(scripted) -> None:
    body = b"x" * 300_000
    server = scripted(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    pool = _pool(server.url, max_answer_bytes=10**6)
    answer = asyncio.run(pool.request("GET", "/", b"", {}, timeout=5))
    assert answer.body == body


def test_a_body_in_many_small_chunks_is_read(scripted) -> None:
    """Chunk-size lines are not a head: 600 KB of them are no more held than the body's bytes."""
    server = scripted(lambda _: CHUNKED + b"1\r\nx\r\n" * 100_000 + b"0\r\n\r\n")
    pool = _pool(server.url, max_answer_bytes=10**6)
    answer = asyncio.run(pool.request("GET", "/", b"", {}, timeout=10))
    assert answer.body == b"x" * 100_000


def test_a_request_header_outside_latin_1_is_sent_as_utf_8(scripted) -> None:
    server = scripted(lambda _: OK)
    outcomes = asyncio.run(_accept(server.url))
    assert outcomes == 200
    assert "Accept: x/€\r\n".encode() in server.seen[0].head + b"\r\n"


async def _accept(url: str) -> int:
    pool = _pool(url)
    answer = await pool.request("GET", "/", b"", {"Accept": "x/€"}, timeout=1)
    await pool.close()
    return answer.status


# -- the same answers in pieces ------------------------------------------------------------------


class _Transport:
    """As much of an asyncio transport as a _Connection uses, so that bytes can be fed to it by hand."""

    def __init__(self) -> None:
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _fed(script: Script, pieces: list[bytes]) -> tuple[object, ...]:
    """The outcome of one exchange on a connection fed `pieces`, then ended as the script ends it."""

    async def exchange() -> tuple[object, ...]:
        connection = _Connection(LIMIT)
        connection.connection_made(_Transport())  # type: ignore[arg-type]
        answer = connection.exchange(b"", head_only=script.method == "HEAD")
        for piece in pieces:
            if connection.transport is None:
                break
            connection.data_received(piece)
        if script.after != "keep" and connection.transport is not None:
            if script.after == "close":
                connection.eof_received()
            connection.connection_lost(ConnectionResetError() if script.after == "reset" else None)
        if not answer.done():
            return ("timed out",), connection.reusable  # as a request waiting on it would end
        if answer.exception() is not None:
            return _failure(answer.exception()), connection.reusable
        done = answer.result()
        return (done.status, _lowercased(done.headers), done.body), connection.reusable

    return asyncio.run(exchange())


FED = sorted(name for name, script in SCRIPTS.items() if script.reply and not script.closes_at_accept)


@pytest.mark.parametrize("script", FED)
def test_an_answer_cut_anywhere_reads_as_the_whole(script) -> None:
    steps = SCRIPTS[script]
    reply = steps.reply
    assert reply is not None
    whole = _fed(steps, [reply])
    assert _fed(steps, [reply[i : i + 1] for i in range(len(reply))]) == whole
    for cut in range(1, len(reply), 1 + len(reply) // 300):  # every byte of all but the longest answers
        assert _fed(steps, [reply[:cut], reply[cut:]]) == whole, cut


def test_the_whole_answers_fed_by_hand_are_the_ones_read_over_a_socket(scripted) -> None:
    """The pieces above are fed to the connection as asyncio would: what comes of the whole is what a socket gives."""
    for script in ("content-length", "chunked-trailers", "100-continue", "cut-short-then-silent", "to-eof"):
        steps = SCRIPTS[script]
        server = scripted(lambda _, reply=steps.reply: reply)
        server.after = steps.after
        over_a_socket = asyncio.run(_with_pool(server.url, "GET", b""))[0]
        assert _fed(steps, [steps.reply])[0] == over_a_socket


def test_bytes_before_the_request_are_not_taken_for_its_answer() -> None:
    """A server that speaks first: whether its bytes come before the request is sent is a race on a socket."""

    async def exchange() -> BaseException | None:
        connection = _Connection(LIMIT)
        connection.connection_made(_Transport())  # type: ignore[arg-type]
        connection.data_received(OK)
        answer = connection.exchange(b"")
        return answer.exception()

    assert isinstance(asyncio.run(exchange()), Disconnected)  # so the pool sends it on a new connection


# -- timeouts, cancellation and close() ----------------------------------------------------------


def test_a_request_timed_out_mid_answer_frees_its_slot_and_its_connection_is_not_reused(scripted, run) -> None:
    cut_short = SCRIPTS["cut-short-then-silent"].reply
    server = scripted(lambda seen: cut_short if seen.connection == 0 else OK)

    async def main() -> tuple[object, Any]:
        pool = _pool(server.url, limit=1)
        try:
            await pool.request("GET", "/", b"", {}, timeout=0.2)
        except TimeoutError as exc:
            first: object = exc
        second = await pool.request("GET", "/", b"", {}, timeout=1)  # on the one slot the first held
        await pool.close()
        return first, second

    first, second = run(main())
    assert isinstance(first, TimeoutError)
    assert second.body == b"{}"
    assert [seen.connection for seen in server.seen] == [0, 1]


def test_a_request_cancelled_while_it_waits_for_a_slot_takes_none(scripted, run) -> None:
    server = scripted(lambda _: time.sleep(0.3) or OK)

    async def main() -> list[object]:
        pool = _pool(server.url, limit=1)
        holder = asyncio.create_task(pool.request("GET", "/", b"", {}, timeout=2))
        await asyncio.sleep(0.05)
        waiter = asyncio.create_task(pool.request("GET", "/", b"", {}, timeout=2))
        await asyncio.sleep(0.05)
        waiter.cancel()
        outcomes = [(await holder).status, waiter.cancelled() or await waiter]
        outcomes.append((await pool.request("GET", "/", b"", {}, timeout=2)).status)
        await pool.close()
        return outcomes

    assert run(main()) == [200, True, 200]
    assert len(server.seen) == 2  # the cancelled request was never sent


@pytest.mark.parametrize(("connect_timeout", "timeout"), [(0.2, 5.0), (5.0, 0.2)], ids=["connect", "whole"])
def test_a_connection_never_made_times_out(unaccepting_upstream, run, connect_timeout, timeout) -> None:
    async def main() -> None:
        pool = _pool(unaccepting_upstream, limit=1, connect_timeout=connect_timeout)
        try:
            await pool.request("GET", "/", b"", {}, timeout=timeout)
        finally:
            await pool.close()

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run(main())
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("upstream", ["silent", "cut-short"])
def test_close_ends_the_requests_in_flight_and_refuses_new_ones(scripted, run, upstream) -> None:
    reply = SCRIPTS["cut-short-then-silent"].reply
    server = scripted(lambda _: reply if upstream == "cut-short" else time.sleep(5))

    async def main() -> list[object]:
        pool = _pool(server.url)
        in_flight = [asyncio.create_task(pool.request(m, "/", b"", {}, timeout=5)) for m in ("GET", "POST")]
        while len(server.seen) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the cut-short answers' heads have come
        await pool.close()
        outcomes = await asyncio.gather(*in_flight, return_exceptions=True)
        try:
            await pool.request("GET", "/", b"", {}, timeout=5)
        except PoolClosed as exc:
            outcomes.append(exc)
        return [type(outcome) for outcome in outcomes]

    started = time.monotonic()
    assert run(main()) == [PoolClosed, PoolClosed, PoolClosed]
    assert time.monotonic() - started < 2
    assert len(server.seen) == 2  # nothing sent once closed, nothing sent again
