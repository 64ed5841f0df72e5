"""HTTP load from a separate process at a fixed concurrency and duration: wrk where installed, else Python.

`python -m devtools.bench.loadgen URL --connections 16 --duration 5` is the Python fallback on its
own; it prints one JSON object like `wrk_load` returns.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
WRK_PERCENTILE = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
WRK_TOTAL = re.compile(r"^\s+(\d+) requests in", re.MULTILINE)
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class Load:
    url: str
    connections: int
    duration: float
    method: str = "GET"
    body: str | None = None


@dataclass(frozen=True)
class LoadResult:
    tool: str
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class LoadError(RuntimeError):
    pass


def run(load: Load, warmup: float = 2.0) -> LoadResult:
    """A warm-up run that is thrown away, then the measured one."""
    runner = wrk_load if shutil.which("wrk") else python_load
    if warmup > 0:
        runner(Load(load.url, load.connections, warmup, load.method, load.body))
    result = runner(load)
    if result.errors:
        raise LoadError(f"{result.errors} of {result.requests} requests to {load.url} failed")
    return result


def wrk_load(load: Load) -> LoadResult:
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "request.lua"
        script.write_text(
            f"wrk.method = {json.dumps(load.method)}\n"
            + (f"wrk.body = {json.dumps(load.body)}\n" if load.body is not None else "")
            + 'wrk.headers["Content-Type"] = "application/json"\n'
        )
        threads = max(1, min(load.connections, 2))
        seconds = max(1, round(load.duration))  # wrk takes whole seconds
        command = ["wrk", f"-t{threads}", f"-c{load.connections}", f"-d{seconds}s", "--latency"]
        result = subprocess.run(
            [*command, "-s", str(script), load.url],
            capture_output=True,
            text=True,
            check=False,
            timeout=load.duration + 60,
        )
    return parse_wrk(result.stdout, result.returncode, result.stderr)


def parse_wrk(output: str, returncode: int = 0, stderr: str = "") -> LoadResult:
    rate, total = WRK_RATE.search(output), WRK_TOTAL.search(output)
    percentiles = {int(p): float(value) * UNITS[unit] for p, value, unit in WRK_PERCENTILE.findall(output)}
    if returncode or not rate or not total or set(percentiles) != {50, 99}:
        raise LoadError(f"wrk failed (exit {returncode}): {stderr.strip() or output.strip()}")
    errors = sum(int(n) for n in WRK_NON_2XX.findall(output))
    socket_errors = WRK_SOCKET_ERRORS.search(output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return LoadResult("wrk", int(total.group(1)), errors, float(rate.group(1)), percentiles[50], percentiles[99])


# -- the Python fallback: processes of threads, each with one keep-alive connection ----------------


def python_load(load: Load) -> LoadResult:
    options = ["--connections", str(load.connections), "--duration", str(load.duration), "--method", load.method]
    if load.body is not None:
        options += ["--body", load.body]
    result = subprocess.run(
        [sys.executable, "-m", "devtools.bench.loadgen", load.url, *options],
        capture_output=True,
        text=True,
        check=False,
        timeout=load.duration + 60,
    )
    if result.returncode:
        raise LoadError(f"the Python load generator failed: {result.stderr.strip()}")
    return LoadResult(**json.loads(result.stdout))


def _worker(load: Load, connections: int, queue: multiprocessing.Queue) -> None:
    parts = urlsplit(load.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    body = load.body.encode() if load.body is not None else None
    deadline = time.perf_counter() + load.duration
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine: list[float] = []
        failed = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                connection.request(load.method, target, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status >= 400:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((latencies, errors[0]))


def _python_main(load: Load) -> LoadResult:
    processes = max(1, min(load.connections, multiprocessing.cpu_count()))
    shares = [load.connections // processes + (i < load.connections % processes) for i in range(processes)]
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_worker, args=(load, share, queue)) for share in shares]
    for worker in workers:
        worker.start()
    latencies: list[float] = []
    errors = 0
    for _ in workers:
        mine, failed = queue.get()
        latencies.extend(mine)
        errors += failed
    for worker in workers:
        worker.join()
    latencies.sort()
    if not latencies:
        raise LoadError(f"no request to {load.url} completed")
    return LoadResult(
        "python",
        len(latencies),
        errors,
        len(latencies) / load.duration,
        latencies[len(latencies) // 2] * 1e3,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body")
    args = parser.parse_args()
    load = Load(args.url, args.connections, args.duration, args.method, args.body)
    print(json.dumps(_python_main(load).as_dict()))


if __name__ == "__main__":
    main()
