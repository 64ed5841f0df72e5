"""billing-app as a process: health probes, reconnecting with backoff, and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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


def test_bad_configuration_exits_2_with_a_clear_log_line(start_billing) -> None:
    process = start_billing(BILLING_BATCH_SIZE="many")
    assert process.wait(timeout=20) == 2
    [line] = [json.loads(line) for line in process.stdout.read().splitlines()]
    assert line["error"] == "BILLING_BATCH_SIZE must be an integer, got 'many'"
