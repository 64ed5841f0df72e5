"""The load generators of `invoke bench` against a tiny local server: counts, latencies and failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devtools.bench.loadgen import Load, LoadError, parse_wrk, python_load, run, wrk_load
from devtools.testing.tools import needs_tool


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status = 500 if self.path.startswith("/fail") else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.mark.parametrize(
    "generator", [python_load, pytest.param(wrk_load, marks=needs_tool("wrk"))], ids=["python", "wrk"]
)
def test_a_healthy_target_gives_requests_and_latencies(generator, server: str) -> None:
    result = generator(Load(server + "/ok", connections=2, duration=1))
    assert result.requests > 10
    assert result.errors == 0
    assert result.rps > 10
    assert 0 < result.p50_ms <= result.p99_ms


@pytest.mark.parametrize(
    "generator", [python_load, pytest.param(wrk_load, marks=needs_tool("wrk"))], ids=["python", "wrk"]
)
def test_failed_requests_are_counted(generator, server: str) -> None:
    result = generator(Load(server + "/fail", connections=1, duration=0.5))
    assert result.errors == result.requests > 0


def test_run_refuses_a_measurement_with_failures(server: str) -> None:
    with pytest.raises(LoadError, match=r"requests to .*/fail failed"):
        run(Load(server + "/fail", connections=1, duration=0.5), warmup=0)


def test_unreadable_wrk_output_is_an_error() -> None:
    with pytest.raises(LoadError, match="wrk failed"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused", returncode=1)
