"""The inventory's own cost: inventory-app against a minimal Flask app with a psycopg pool (anchor_app.py).

Both serve GET /api/movies/<id> for the same row of the same database, each on one gunicorn worker of
the same threaded worker class and thread count, under load in rounds that alternate the two. Beside
the throughput, the CPU time each worker spent per request: a figure a busy machine skews far less.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median

import urllib3

from devtools.bench.loadgen import Load, run
from devtools.bench.scenarios import ROUNDS, Goal, Results, Row, Settings, _alternating_p50, _children, paired_ratio
from devtools.stack.local_stack import GUNICORN, ROOT, ScratchStack, free_port
from devtools.waiting import answers_ok, wait_for

THREADS = 8
CONNECTIONS = THREADS
ANCHOR = "minimal Flask + psycopg pool"


@contextmanager
def anchor(database: str, path: str) -> Iterator[tuple[str, int]]:
    """anchor_app under gunicorn on a free port: its URL and its worker's pid."""
    port = free_port()
    env = os.environ | {"PORT": str(port), "PGDATABASE": database, "WEB_CONCURRENCY": "1"}
    process = subprocess.Popen(
        [*GUNICORN, "--bind", f"127.0.0.1:{port}", "devtools.bench.anchor_app:app"],
        env=env | {"GUNICORN_THREADS": str(THREADS)},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers_ok(url + path) or process.poll() is not None, timeout=30, what="the anchor app")
        if process.poll() is not None:
            raise RuntimeError(f"the anchor app exited with {process.returncode}")
        yield url, _worker(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _worker(arbiter: int) -> int:
    (worker,) = _children(arbiter)
    return worker


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def inventory_cost(scratch: ScratchStack, settings: Settings, results: Results, log: Callable[[str], None]) -> None:
    created = urllib3.request(
        "POST", f"{scratch.inventory_url}/api/movies", json={"title": "Heat", "description": "1995"}
    )
    if created.status != 201:
        raise RuntimeError(f"creating the benchmark's movie answered {created.status}: {created.data!r}")
    path = f"/api/movies/{created.json()['id']}"
    inventory_pid = scratch.stack.pid("inventory-app")
    if inventory_pid is None:
        raise RuntimeError("inventory-app is not running")
    with anchor(scratch.config.inventory_database, path) as (anchor_url, anchor_pid):
        sides = {
            "inventory-app": (scratch.inventory_url + path, _worker(inventory_pid)),
            ANCHOR: (anchor_url + path, anchor_pid),
        }
        seconds = settings.duration / ROUNDS
        log(
            f"GET {path} on inventory-app and the {ANCHOR}, {CONNECTIONS} connections, "
            f"{ROUNDS} alternating rounds of {seconds:g} s"
        )
        if settings.warmup > 0:
            for url, _ in sides.values():
                run(Load(url, CONNECTIONS, settings.warmup), warmup=0)
        rps: dict[str, list[float]] = {name: [] for name in sides}
        cpu_us: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(ROUNDS):
            for name, (url, pid) in sides.items():
                before = _cpu_seconds(pid)
                result = run(Load(url, CONNECTIONS, seconds), warmup=0)
                cpu_us[name].append((_cpu_seconds(pid) - before) / result.requests * 1e6)
                rps[name].append(result.rps)
        single = _alternating_p50({name: url for name, (url, _) in sides.items()}, settings, log)
    results.raw["inventory_cost"] = {"rps": rps, "cpu_us_per_request": cpu_us, "p50_ms_c1": single}

    mine, other = "inventory-app", ANCHOR
    results.rows += [
        Row(
            f"GET /api/movies/<id> inventory-app, c={CONNECTIONS}",
            median(rps[mine]),
            "req/s",
            ANCHOR,
            median(rps[other]),
        ),
        Row(
            "CPU per GET by id, inventory-app worker", median(cpu_us[mine]), "us", ANCHOR, median(cpu_us[other]), False
        ),
        Row("p50 inventory-app direct, c=1", median(single[mine]), "ms", ANCHOR, median(single[other]), False),
    ]
    ratio = paired_ratio(rps[mine], rps[other])
    results.goals.append(
        Goal(f"inventory-app throughput >= 0.8 x {ANCHOR}", ratio >= 0.8, f"{ratio:.2f} x (median of paired rounds)")
    )
    p50_ratio = paired_ratio(single[mine], single[other])
    results.goals.append(
        Goal(
            f"inventory-app p50 at c=1 <= 1.25 x {ANCHOR}",
            p50_ratio <= 1.25,
            f"{p50_ratio:.2f} x (median of paired rounds)",
        )
    )
