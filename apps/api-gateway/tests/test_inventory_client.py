"""The inventory client (on api_gateway.http_pool) against a scripted upstream that answers, closes or misbehaves."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from aiohttp import web

from api_gateway.proxy import InventoryClient
from moviestream_common.conventions import ApiError

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _run(url: str, *calls: tuple[str, str], timeout: float = 5.0, **settings: float) -> list[web.Response | ApiError]:
    """Make the calls one after another on one client; each gives its Response or the ApiError it raised."""

    async def main() -> list[web.Response | ApiError]:
        client = InventoryClient(url, connect_timeout=1, read_timeout=timeout, **settings)
        results: list[web.Response | ApiError] = []
        for method, target in calls:
            try:
                results.append(await client.forward(method, target, b'{"a": 1}', {"Content-Type": "application/json"}))
            except ApiError as exc:
                results.append(exc)
        await client.close()
        return results

    return asyncio.run(main())


def _answer_to(scripted, reply: bytes, method: str = "GET") -> web.Response | ApiError:
    """What the client makes of one request answered with `reply`."""
    [answer] = _run(scripted(lambda _: reply).url, (method, "/api/movies/1"))
    return answer


def test_requests_reuse_one_connection_and_arrive_whole(scripted) -> None:
    server = scripted(lambda _: OK)
    answers = _run(server.url, ("GET", "/a?x=%25"), ("PUT", "/b"), ("DELETE", "/c"))
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[0].headers["Content-Type"] == "application/json"
    assert answers[0].body == b"{}"
    assert {s.connection for s in server.seen} == {0}
    assert server.seen[0].head.split(b"\r\n")[0] == b"GET /a?x=%25 HTTP/1.1"
    assert server.seen[1].body == b'{"a": 1}'
    assert b"Content-Length: 8" in server.seen[1].head


@pytest.mark.parametrize(("method", "answered"), [("GET", True), ("PUT", True), ("POST", False), ("PATCH", False)])
def test_a_closed_kept_alive_connection_resends_only_idempotent_requests(scripted, method, answered) -> None:
    # The upstream answers the first request on a connection and closes on the second without answering,
    # as a server does that drops an idle connection just as the next request leaves.
    counts: dict[int, int] = {}

    def reply(seen) -> bytes | None:
        counts[seen.connection] = counts.get(seen.connection, 0) + 1
        return OK if counts[seen.connection] == 1 else None

    server = scripted(reply)
    first, second = _run(server.url, (method, "/one"), (method, "/two"))
    assert first.status == 200
    targets = [s.head.split(b" ")[1] for s in server.seen]
    if answered:
        assert second.status == 200
        assert targets == [b"/one", b"/two", b"/two"]  # sent again, on a new connection
    else:
        assert isinstance(second, ApiError)
        assert second.status == 502
        assert targets == [b"/one", b"/two"]  # never twice


def test_chunked_answers_are_read_whole_and_connection_close_is_honoured(scripted) -> None:
    chunked = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nLocation: /x/1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    server = scripted(lambda _: chunked.replace(b"\r\n\r\n3", b"\r\nConnection: close\r\n\r\n3"))
    answers = _run(server.url, ("POST", "/x"), ("POST", "/x"))
    assert [(a.status, a.body, a.headers["Location"]) for a in answers] == [(201, b"abcde", "/x/1")] * 2
    assert [s.connection for s in server.seen] == [0, 1]  # a new connection after "Connection: close"


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 504),  # cut short, and the rest never comes
        (b"NOT HTTP AT ALL\r\n\r\n", 502),  # malformed
    ],
    ids=["cut-short", "malformed"],
)
def test_a_broken_answer_is_an_error_and_its_connection_is_not_reused(scripted, reply, status) -> None:
    server = scripted(lambda seen: reply if seen.connection == 0 else OK)
    broken, after = _run(server.url, ("POST", "/x"), ("POST", "/x"), timeout=0.5)
    assert isinstance(broken, ApiError)
    assert broken.status == status
    assert after.status == 200
    assert [s.connection for s in server.seen] == [0, 1]


def test_a_100_continue_is_not_taken_for_the_answer(scripted) -> None:
    answer = _answer_to(scripted, b"HTTP/1.1 100 Continue\r\n\r\n" + OK, "POST")
    assert (answer.status, answer.body) == (200, b"{}")


def test_repeated_headers_are_all_kept(scripted) -> None:
    answer = _answer_to(scripted, OK.replace(b"\r\n\r\n", b"\r\nAllow: GET\r\nAllow: PUT, DELETE\r\n\r\n"), "PATCH")
    assert answer.headers.getall("Allow") == ["GET", "PUT, DELETE"]


def test_chunked_trailers_do_not_overwrite_the_headers(scripted) -> None:
    answer = _answer_to(
        scripted,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\nContent-Type: text/html\r\nLocation: http://elsewhere/\r\n\r\n",
    )
    assert answer.body == b"{}"
    assert answer.headers["Content-Type"] == "application/json"
    assert "Location" not in answer.headers


def test_idle_connections_expire(scripted) -> None:
    server = scripted(lambda _: OK)

    async def main() -> None:
        client = InventoryClient(server.url, connect_timeout=1, read_timeout=5, idle_seconds=0.2)
        await client.forward("GET", "/a", b"", {})
        await client.forward("GET", "/b", b"", {})
        await asyncio.sleep(0.5)
        await client.forward("GET", "/c", b"", {})
        await client.close()

    asyncio.run(main())
    assert [s.connection for s in server.seen] == [0, 0, 1]


def test_the_wait_for_a_pooled_connection_counts_in_the_timeout(scripted) -> None:
    server = scripted(lambda _: time.sleep(0.4) or OK)

    async def main() -> list[web.Response | BaseException]:
        client = InventoryClient(server.url, connect_timeout=5, read_timeout=0.6, max_connections=1)
        calls = (client.forward("GET", f"/{i}", b"", {}) for i in range(2))
        answers = await asyncio.gather(*calls, return_exceptions=True)
        await client.close()
        return answers

    started = time.monotonic()
    first, second = asyncio.run(main())
    assert first.status == 200
    # 0.4 s waiting for the one connection plus 0.4 s answering is more than the 0.6 s allowed.
    assert isinstance(second, ApiError)
    assert second.status == 504
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "head",
    [b"Content-Length: 1001\r\n", b"Transfer-Encoding: chunked\r\n"],
    ids=["declared", "chunked"],
)
def test_an_answer_larger_than_the_limit_is_refused(scripted, head) -> None:
    body = b"x" * 1001
    if b"chunked" in head:
        body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:500], body[500:])) + b"0\r\n\r\n"
    server = scripted(lambda _: b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + body)
    for refused in _run(server.url, ("GET", "/big"), ("GET", "/big"), max_answer_bytes=1000):
        assert isinstance(refused, ApiError)
        assert (refused.status, refused.message) == (502, "the inventory API's answer is larger than 1000 bytes")


def test_an_upstream_that_does_not_answer_times_out(scripted) -> None:
    hold = threading.Event()
    server = scripted(lambda _: hold.wait(5) and None)
    [late] = _run(server.url, ("GET", "/slow"), timeout=0.3)
    hold.set()
    assert isinstance(late, ApiError)
    assert late.status == 504


def test_concurrent_requests_get_connections_of_their_own(scripted) -> None:
    barrier = threading.Barrier(5, timeout=5)
    server = scripted(lambda seen: barrier.wait() is not None and OK)  # answers once all five have arrived

    async def main() -> list[web.Response]:
        client = InventoryClient(server.url, connect_timeout=1, read_timeout=5)
        answers = await asyncio.gather(*(client.forward("GET", f"/{i}", b"", {}) for i in range(5)))
        await client.close()
        return answers

    assert [a.status for a in asyncio.run(main())] == [200] * 5
    assert len({s.connection for s in server.seen}) == 5


@pytest.mark.parametrize(
    ("location", "relative"),
    [
        ("/api/movies/1", "/api/movies/1"),
        ("http://{netloc}/api/movies/1?x=%2F#top", "/api/movies/1?x=%2F#top"),
        ("http://elsewhere.internal/api/movies/1", None),
        ("http://[::1/api/movies/1", None),
        ("//elsewhere.internal/api/movies/1", None),
    ],
)
def test_a_location_never_names_the_inventory_or_another_host(scripted, location, relative) -> None:
    server = scripted(lambda _: b"")
    netloc = server.url.removeprefix("http://")
    answer_head = f"HTTP/1.1 308 Permanent Redirect\r\nLocation: {location.format(netloc=netloc)}\r\n"
    server.reply = lambda _: answer_head.encode() + b"Content-Length: 0\r\n\r\n"
    [answer] = _run(server.url, ("GET", "/api/movies//1"))
    assert answer.status == 308
    assert answer.headers.get("Location") == relative


def test_a_location_loses_the_inventory_url_s_own_path(scripted) -> None:
    server = scripted(
        lambda _: b"HTTP/1.1 201 Created\r\nLocation: /inventory/api/movies/1\r\nContent-Length: 0\r\n\r\n"
    )
    [answer] = _run(server.url + "/inventory/", ("POST", "/api/movies"))
    assert server.seen[0].head.split(b" ")[1] == b"/inventory/api/movies"
    assert answer.headers["Location"] == "/api/movies/1"


def test_an_error_that_is_not_json_is_answered_as_json_with_its_allow(scripted) -> None:
    answer = _answer_to(
        scripted,
        b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/html\r\nAllow: GET, PUT\r\n"
        b"Content-Length: 20\r\n\r\n<html>nope</html>\r\n\r\n",
        "PATCH",
    )
    assert answer.status == 405
    assert answer.content_type == "application/json"
    assert answer.body == b'{"error": "Method Not Allowed"}'
    assert answer.headers["Allow"] == "GET, PUT"


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="http://"):
        InventoryClient("https://inventory", connect_timeout=1, read_timeout=1)


def test_a_cookie_the_inventory_sets_is_not_sent_on(scripted) -> None:
    server = scripted(lambda _: OK.replace(b"\r\n\r\n", b"\r\nSet-Cookie: session=alice; Path=/\r\n\r\n"))
    # By a host name, as in the cluster: aiohttp's cookie jar takes no cookie from an IP address.
    _run(server.url.replace("127.0.0.1", "localhost"), ("GET", "/a"), ("GET", "/b"))
    assert len(server.seen) == 2
    assert b"cookie" not in server.seen[1].head.lower()
