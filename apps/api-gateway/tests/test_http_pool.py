"""api_gateway.http_pool held to aiohttp's client: the same scripted answers give the same outcome.

Each script is answered to two requests in a row on one client, so what a
broken or odd answer leaves on a kept-alive connection shows in the second.
Where this client deliberately differs from aiohttp's, the test says so.
"""

from __future__ import annotations

import asyncio
from http.client import parse_headers
from io import BytesIO

import aiohttp
import pytest
from yarl import URL

from api_gateway.http_pool import AnswerTooLarge, ConnectionPool, UpstreamError

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

# name: (answer to each request, whether the server closes after answering)
SCRIPTS: dict[str, tuple[bytes | None, bool]] = {
    "content-length": (OK, False),
    "empty": (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    "chunked": (CHUNKED + b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n", False),
    "chunked-trailers": (CHUNKED + b"2\r\nab\r\n0\r\nContent-Type: text/html\r\nX-Late: 1\r\n\r\n", False),
    "100-continue": (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, False),
    "103-early-hints": (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + OK, False),
    "repeated-headers": (OK.replace(b"\r\n\r\n", b"\r\nAllow: GET\r\nallow: PUT, DELETE\r\n\r\n"), False),
    "padded-values": (OK.replace(b"\r\n\r\n", b"\r\nX-Pad: \t  spaced out  \r\n\r\n"), False),
    "utf-8-header": (OK.replace(b"\r\n\r\n", "\r\nLocation: /café\r\n\r\n".encode()), False),
    "no-content": (b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", False),
    "not-modified": (b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", False),
    "connection-close": (OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"), True),
    "to-eof": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread until the end", True),
    "http-1.0-to-eof": (b"HTTP/1.0 200 OK\r\n\r\nold", True),
    "http-1.0-keep-alive": (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi", False),
    "status-599": (b"HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\n", False),
    "declared-too-large": (b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n" + b"x" * 1001, False),
    "chunked-too-large": (CHUNKED + b"3e9\r\n" + b"x" * 1001 + b"\r\n0\r\n\r\n", False),
    "to-eof-too-large": (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1001, True),
    "malformed-status-line": (b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", False),
    "not-http": (b"NOT HTTP AT ALL\r\n\r\n", False),
    "bad-chunk-size": (CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n", False),
    "two-content-lengths": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", False),
    "chunked-then-gzip": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nraw to the end", True),
    "length-and-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        False,
    ),
    "negative-length": (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", False),
    "space-before-colon": (b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n{}", False),
    "header-line-too-long": (OK.replace(b"\r\n\r\n", b"\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n"), False),
    "too-many-headers": (
        OK.replace(b"\r\n\r\n", b"".join(b"\r\nX-%d: v" % i for i in range(200)) + b"\r\n\r\n"),
        False,
    ),
    "cut-short-then-closed": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", True),
    "cut-short-then-silent": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", False),
    "head-cut-then-closed": (b"HTTP/1.1 200 OK\r\nContent-Le", True),
    "closed-unanswered": (None, False),
}


def _pool(url: str, max_answer_bytes: int = LIMIT) -> ConnectionPool:
    target = URL(url)
    return ConnectionPool(
        target.host,
        target.port,
        host_header=target.host_port_subcomponent,
        limit=4,
        idle_seconds=15,
        connect_timeout=1,
        max_answer_bytes=max_answer_bytes,
    )


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
                if (answer.content_length or 0) > LIMIT:
                    raise AnswerTooLarge
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


def _both(scripted, script: str, method: str = "GET", body: bytes = b""):
    reply, close_after = SCRIPTS[script]
    server = scripted(lambda _: reply)
    server.close_after = close_after
    ours = asyncio.run(_with_pool(server.url, method, body))
    ours_seen = list(server.seen)
    server.seen.clear()
    theirs = asyncio.run(_with_aiohttp(server.url, method, body))
    return ours, theirs, ours_seen, list(server.seen)


# Where this client means to differ from aiohttp's, and why.
DIFFERENT = {
    # aiohttp's client reads "Content-Length : 2" as a header named "Content-Length " (and the
    # body as unframed); RFC 9112 (5.1) has such a head refused.
    "space-before-colon",
}


@pytest.mark.parametrize("script", sorted(set(SCRIPTS) - DIFFERENT))
def test_the_same_answers_as_aiohttp_s_client(scripted, script) -> None:
    ours, theirs, _, _ = _both(scripted, script)
    assert ours == theirs


@pytest.mark.parametrize("script", sorted(DIFFERENT))
def test_an_ambiguously_framed_answer_is_refused(scripted, script) -> None:
    ours, theirs, _, _ = _both(scripted, script)
    assert ours == [("failed",), ("failed",)]
    assert theirs != ours  # if aiohttp's client came to refuse it too, this case belongs with the others


@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", b""), ("DELETE", b""), ("POST", b""), ("PUT", b'{"title": "x"}'), ("POST", b'{"title": "x"}')],
)
def test_the_same_requests_as_aiohttp_s_client(scripted, method, body) -> None:
    _, _, ours, theirs = _both(scripted, "content-length", method, body)

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
