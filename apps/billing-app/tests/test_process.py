"""billing-app as a process: health probes, reconnecting with backoff, and SIGTERM."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from devtools.testing.tcp_proxy import TcpProxy
from devtools.waiting import wait_for


def probe(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture
def start_billing(engine, queue, unused_port) -> Iterator[Callable[..., subprocess.Popen]]:
    processes: list[subprocess.Popen] = []

    def start(**env: str) -> subprocess.Popen:
        environment = {**os.environ, "PORT": str(unused_port), "BILLING_QUEUE": queue.name, **env}
        process = subprocess.Popen(
            [sys.executable, "-m", "billing_app"], env=environment, stdout=subprocess.PIPE, text=True
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout:
            process.stdout.close()


def test_sigterm_acknowledges_the_batch_in_hand_and_exits_0(broker, stored, start_billing, unused_port) -> None:
    for _ in range(3000):
        broker.publish_order()
    process = start_billing(BILLING_BATCH_SIZE="50")
    wait_for(lambda: len(stored()) > 0, timeout=20, what="the first orders")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    left = broker.depth()
    rows = stored()
    assert len(rows) + left == 3000
    assert len({row["message_id"] for row in rows}) == len(rows)
    logs = [json.loads(line) for line in process.stdout.read().splitlines()]
    assert all(line["service"] == "billing-app" for line in logs)
    assert logs[-1]["message"] == "stopped"
    logged = [i for line in logs if line["message"] == "orders stored" for i in line["message_ids"]]
    assert sorted(logged) == sorted(row["message_id"] for row in rows)


def test_reconnects_to_the_broker_with_backoff_and_readiness_follows(
    broker, stored, start_billing, unused_port
) -> None:
    proxy = TcpProxy(int(os.environ["RABBITMQ_PORT"])).start()
    process = start_billing(RABBITMQ_PORT=str(proxy.port))
    wait_for(lambda: probe(unused_port, "/readyz") == 200, timeout=20, what="billing-app to be ready")
    assert probe(unused_port, "/healthz") == 200
    proxy.cut()
    wait_for(lambda: probe(unused_port, "/readyz") == 503, timeout=20, what="readiness to fail")
    assert probe(unused_port, "/healthz") == 200
    broker.publish_order()
    proxy.start()
    wait_for(lambda: len(stored()) == 1, timeout=30, what="the order after reconnecting")
    assert probe(unused_port, "/readyz") == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_with_postgresql_gone_the_backoff_grows_until_a_batch_is_stored(broker, stored, start_billing) -> None:
    proxy = TcpProxy(int(os.environ["PGPORT"])).start()
    process = start_billing(PGPORT=str(proxy.port))
    broker.publish_order()
    wait_for(lambda: len(stored()) == 1, timeout=20, what="the first order")
    proxy.cut()
    for _ in range(50):
        broker.publish_order()
    time.sleep(6)  # delays of 0.5, 1, 2, 4 s: at most 5 attempts; a backoff reset at each connect made a dozen
    proxy.start()
    wait_for(lambda: len(stored()) == 51, timeout=30, what="the orders after PostgreSQL came back")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    logs = [json.loads(line) for line in process.stdout.read().splitlines()]
    retries = [line["retry_in_s"] for line in logs if "retry_in_s" in line]
    assert 3 <= len(retries) <= 6, retries
    # Each delay at least 1.5 x the one before (doubling, less at most 25 % jitter).
    assert all(later >= 1.4 * earlier for earlier, later in itertools.pairwise(retries)), retries


def test_the_health_port_answers_a_silent_client_408_and_closes_within_10_s(start_billing, unused_port) -> None:
    start_billing()
    wait_for(lambda: probe(unused_port, "/healthz") == 200, timeout=20, what="the health server")
    with socket.create_connection(("127.0.0.1", unused_port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        sock.settimeout(15)
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert time.monotonic() - started <= 12
    assert received.startswith(b"HTTP/1.1 408 ")


def test_bad_configuration_exits_2_with_a_clear_log_line(start_billing) -> None:
    process = start_billing(BILLING_BATCH_SIZE="many")
    assert process.wait(timeout=20) == 2
    [line] = [json.loads(line) for line in process.stdout.read().splitlines()]
    assert line["error"] == "BILLING_BATCH_SIZE must be an integer, got 'many'"
