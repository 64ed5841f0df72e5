"""The keep-alive pool against a scripted upstream that answers, closes or misbehaves on cue."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from api_gateway import upstream
from api_gateway.upstream import Answer, UpstreamError, UpstreamPool, UpstreamTimeout

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@dataclass
class Seen:
    connection: int
    head: bytes
    body: bytes


@dataclass
class Scripted:
    """Each request is answered with what `reply(seen)` returns: bytes to send, or None to close unanswered."""

    reply: Callable[[Seen], bytes | None]
    seen: list[Seen] = field(default_factory=list)
    url: str = ""


def _read_request(conn: socket.socket, buffer: bytearray) -> tuple[bytes, bytes] | None:
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
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
    listener = socket.create_server(("127.0.0.1", 0))
    server = Scripted(lambda _: OK, url=f"http://127.0.0.1:{listener.getsockname()[1]}")

    def serve(conn: socket.socket, index: int) -> None:
        buffer = bytearray()
        with conn:
            while (request := _read_request(conn, buffer)) is not None:
                seen = Seen(index, *request)
                server.seen.append(seen)
                answer = server.reply(seen)
                if answer is None:
                    return
                conn.sendall(answer)

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


def _run(url: str, *calls: tuple[str, str], timeout: float = 5.0) -> list[Answer | Exception]:
    """Make the calls one after another on one pool; each gives its Answer or the exception it raised."""

    async def main() -> list[Answer | Exception]:
        pool = UpstreamPool(url, connect_timeout=1, read_timeout=timeout)
        results: list[Answer | Exception] = []
        for method, target in calls:
            try:
                results.append(await pool.request(method, target, {"Content-Type": "application/json"}, b'{"a": 1}'))
            except UpstreamError as exc:
                results.append(exc)
        await pool.close()
        return results

    return asyncio.run(main())


def test_requests_reuse_one_connection_and_arrive_whole(scripted) -> None:
    server = scripted(lambda _: OK)
    answers = _run(server.url, ("GET", "/a?x=%25"), ("PUT", "/b"), ("DELETE", "/c"))
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[0].headers["content-type"] == "application/json"
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

    def reply(seen: Seen) -> bytes | None:
        counts[seen.connection] = counts.get(seen.connection, 0) + 1
        return OK if counts[seen.connection] == 1 else None

    server = scripted(reply)
    first, second = _run(server.url, (method, "/one"), (method, "/two"))
    assert isinstance(first, Answer)
    targets = [s.head.split(b" ")[1] for s in server.seen]
    if answered:
        assert isinstance(second, Answer)
        assert second.status == 200
        assert targets == [b"/one", b"/two", b"/two"]  # sent again, on a new connection
    else:
        assert isinstance(second, UpstreamError)
        assert not isinstance(second, UpstreamTimeout)
        assert targets == [b"/one", b"/two"]  # never twice


def test_chunked_answers_are_read_whole_and_connection_close_is_honoured(scripted) -> None:
    chunked = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nLocation: /x/1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    server = scripted(lambda _: chunked.replace(b"\r\n\r\n3", b"\r\nConnection: close\r\n\r\n3"))
    answers = _run(server.url, ("POST", "/x"), ("POST", "/x"))
    assert [(a.status, a.body, a.headers["location"]) for a in answers] == [(201, b"abcde", "/x/1")] * 2
    assert [s.connection for s in server.seen] == [0, 1]  # a new connection after "Connection: close"


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # cut short
        b"NOT HTTP AT ALL\r\n\r\n",  # malformed
        OK + OK,  # two answers to one request
    ],
    ids=["cut-short", "malformed", "two-answers"],
)
def test_a_broken_answer_is_an_error_and_its_connection_is_not_reused(scripted, reply) -> None:
    server = scripted(lambda seen: reply if seen.connection == 0 else OK)
    broken, after = _run(server.url, ("POST", "/x"), ("POST", "/x"))
    # Of two answers the first stands, and the extra bytes end the connection.
    assert isinstance(broken, Answer if reply == OK + OK else UpstreamError)
    assert isinstance(after, Answer)
    assert after.status == 200
    assert [s.connection for s in server.seen] == [0, 1]


def test_an_answer_larger_than_the_limit_is_refused(scripted, monkeypatch) -> None:
    monkeypatch.setattr(upstream, "MAX_ANSWER_BYTES", 1000)
    server = scripted(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n" + b"x" * 1001)
    [refused] = _run(server.url, ("GET", "/big"))
    assert isinstance(refused, UpstreamError)
    assert "larger than 1000 bytes" in str(refused)


def test_an_upstream_that_does_not_answer_times_out(scripted) -> None:
    hold = threading.Event()
    server = scripted(lambda _: hold.wait(5) and None)
    [late] = _run(server.url, ("GET", "/slow"), timeout=0.3)
    hold.set()
    assert isinstance(late, UpstreamTimeout)


def test_concurrent_requests_get_connections_of_their_own(scripted) -> None:
    barrier = threading.Barrier(5, timeout=5)
    server = scripted(lambda seen: barrier.wait() is not None and OK)  # answers once all five have arrived

    async def main() -> list[Answer]:
        pool = UpstreamPool(server.url, connect_timeout=1, read_timeout=5)
        answers = await asyncio.gather(*(pool.request("GET", f"/{i}", {}) for i in range(5)))
        await pool.close()
        return answers

    assert [a.status for a in asyncio.run(main())] == [200] * 5
    assert len({s.connection for s in server.seen}) == 5


def test_only_http_urls_and_no_head(scripted) -> None:
    with pytest.raises(ValueError, match="http://"):
        UpstreamPool("https://inventory", connect_timeout=1, read_timeout=1)
    with pytest.raises(ValueError, match="HEAD"):
        _run(scripted(lambda _: OK).url, ("HEAD", "/"))
