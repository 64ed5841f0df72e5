"""The measurements of `invoke bench`, each beside an anchor measured in the same run on the same machine."""

from __future__ import annotations

import io
import json
import os
import random
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import pika
import urllib3

from billing_app.consumer import DEFAULT_BATCH_SIZE
from devtools.bench import nginx
from devtools.bench.loadgen import Load, LoadResult, run
from devtools.stack.local_stack import ScratchStack
from devtools.waiting import wait_for

ORDER = json.dumps({"user_id": "3", "number_of_items": "5", "total_amount": "180"})
WORDS = ("Silent", "Crimson", "Last", "Hidden", "Golden", "Broken", "Wild", "Lost", "Iron", "Paper")
NOUNS = ("River", "Empire", "Summer", "Signal", "Garden", "Harbor", "Machine", "Winter", "Crown", "Echo")


@dataclass
class Row:
    """One line of the table: a figure, its anchor, and how the two compare."""

    name: str
    figure: float
    unit: str
    anchor_name: str = ""
    anchor: float | None = None
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        return self.figure / self.anchor if self.anchor else None


@dataclass
class Goal:
    text: str
    passed: bool | None  # None: not measurable on this machine
    detail: str


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, object] = field(default_factory=dict)


ROUNDS_AT_ONE_CONNECTION = 10  # of duration / 10 seconds each
ROUNDS = 3  # for order intake and backlog drain, each side measured once per round
# Where the gateway's worker is the busiest process (one core of two), intake / anchor is about the
# inverse of this ratio: 2 is what "intake >= 0.5 x" needs on any such machine, whatever else runs on it.
CPU_PER_ORDER_LIMIT = 2.0


def paired_ratio(figures: list[float], anchors: list[float]) -> float:
    """The median over rounds of figure / anchor, each pair measured back to back."""
    return median(f / a for f, a in zip(figures, anchors, strict=True))


@dataclass(frozen=True)
class Settings:
    duration: float = 10.0
    connections: int = 32
    warmup: float = 2.0
    backlog: int = 20_000
    search_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    search_queries: int = 200


# -- gateway overhead ---------------------------------------------------------------------------------


def gateway_overhead(scratch: ScratchStack, settings: Settings, results: Results, log: Callable[[str], None]) -> None:
    movie = {"title": "Heat", "description": "1995"}
    created = urllib3.request("POST", f"{scratch.inventory_url}/api/movies", json=movie)
    if created.status != 201:
        raise RuntimeError(f"creating the benchmark's movie answered {created.status}: {created.data!r}")
    path = f"/api/movies/{created.json()['id']}"
    targets = {"gateway": scratch.gateway_url + path, "direct": scratch.inventory_url + path}

    def measure(name: str, url: str, connections: int) -> LoadResult:
        log(f"GET {path} via {name}, {connections} connection(s), {settings.duration:g} s")
        result = run(Load(url, connections, settings.duration), warmup=settings.warmup)
        results.raw[f"get_{name}_c{connections}"] = result.as_dict()
        return result

    loaded = {name: measure(name, url, settings.connections) for name, url in targets.items()}
    if nginx.installed():
        with nginx.Nginx(scratch.config.inventory_port) as proxy:
            loaded["nginx"] = measure("nginx", proxy.url + path, settings.connections)
            single = _alternating_p50(targets | {"nginx": proxy.url + path}, settings, log)
    else:
        results.notes.append("nginx is not installed (Debian: apt-get install nginx): no nginx anchor")
        single = _alternating_p50(targets, settings, log)
    results.raw["get_c1_p50_ms_by_round"] = single

    c = settings.connections
    gateway, direct, proxied = loaded["gateway"], loaded["direct"], loaded.get("nginx")
    anchor_name, anchor = ("inventory behind nginx", proxied.rps) if proxied else ("", None)
    results.rows += [
        Row(f"GET /api/movies/<id> via gateway, c={c}", gateway.rps, "req/s", anchor_name, anchor),
        Row(f"GET /api/movies/<id> direct, c={c}", direct.rps, "req/s"),
        Row(f"p50 via gateway, c={c}", gateway.p50_ms, "ms", "via nginx", proxied.p50_ms if proxied else None, False),
        Row(f"p99 via gateway, c={c}", gateway.p99_ms, "ms", "via nginx", proxied.p99_ms if proxied else None, False),
        Row("p50 via gateway, c=1", median(single["gateway"]), "ms", "direct", median(single["direct"]), False),
    ]
    if "nginx" in single:
        # What one proxy hop costs on this machine, whoever makes it: the floor under the gateway's figure.
        results.rows.append(
            Row("p50 via nginx, c=1", median(single["nginx"]), "ms", "direct", median(single["direct"]), False)
        )
    if proxied:
        ratio = gateway.rps / proxied.rps
        results.goals.append(
            Goal(
                "gateway throughput >= 0.6 x nginx-proxied",
                ratio >= 0.6,
                f"{ratio:.2f} x",
            )
        )
    else:
        results.goals.append(Goal("gateway throughput >= 0.6 x nginx-proxied", None, "nginx not installed"))
    # Each round's gateway p50 against the direct p50 measured right after it: a slow moment of the machine
    # shows in both halves of a pair, not in one side of the comparison.
    added = median(g - d for g, d in zip(single["gateway"], single["direct"], strict=True))
    results.goals.append(
        Goal("gateway adds <= 0.5 ms to p50 at c=1", added <= 0.5, f"+{added:.3f} ms (median of paired rounds)")
    )


def _alternating_p50(targets: dict[str, str], settings: Settings, log: Callable[[str], None]) -> dict[str, list[float]]:
    """p50 at one connection, in rounds that alternate the targets, so a slow moment of the machine hits both."""
    rounds = max(1, min(ROUNDS_AT_ONE_CONNECTION, int(settings.duration)))
    seconds = settings.duration / rounds
    log(f"GET at 1 connection, {rounds} rounds of {seconds:g} s alternating {' and '.join(targets)}")
    if settings.warmup > 0:
        for url in targets.values():
            run(Load(url, 1, settings.warmup), warmup=0)
    p50s: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, url in targets.items():
            p50s[name].append(run(Load(url, 1, seconds), warmup=0).p50_ms)
    return p50s


# -- order intake ----------------------------------------------------------------------------------


def _persistent() -> pika.BasicProperties:
    """What the gateway sets on an order: persistent, with a fresh message_id."""
    return pika.BasicProperties(delivery_mode=2, message_id=uuid.uuid4().hex)


@dataclass(frozen=True)
class Published:
    per_s: float
    cpu_us_per_order: float  # CPU time (user + system) of the publishing process, per order


def _confirmed_publishes(scratch: ScratchStack, connections: int, duration: float) -> Published:
    """The anchor: plain pika clients, one connection each, publishing persistent messages with confirms."""
    counts = [0] * connections
    cpu = [0.0] * connections
    deadline = time.perf_counter() + duration

    def publisher(index: int) -> None:
        connection = scratch.broker()
        channel = connection.channel()
        channel.confirm_delivery()
        body = ORDER.encode()
        started = time.thread_time()
        while time.perf_counter() < deadline:
            channel.basic_publish("", scratch.queue.name, body, _persistent(), mandatory=True)
            counts[index] += 1
        cpu[index] = time.thread_time() - started
        connection.close()

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Published(sum(counts) / duration, sum(cpu) / max(1, sum(counts)) * 1e6)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _purge(scratch: ScratchStack) -> None:
    connection = scratch.broker()
    try:
        connection.channel().queue_purge(scratch.queue.name)
    finally:
        connection.close()


def order_intake(scratch: ScratchStack, settings: Settings, results: Results, log: Callable[[str], None]) -> None:
    scratch.stack.stop("billing-app")  # the queue only fills: neither side competes with the consumer
    c = settings.connections
    seconds = settings.duration / ROUNDS
    url = scratch.gateway_url + "/api/billing"
    log(f"POST /api/billing via gateway and plain pika, {c} connections, {ROUNDS} alternating rounds of {seconds:g} s")
    if settings.warmup > 0:
        run(Load(url, c, settings.warmup, "POST", ORDER), warmup=0)
    workers = _children(scratch.stack.pid("api-gateway") or 0)
    gateway: list[LoadResult] = []
    gateway_cpu: list[float] = []
    anchor: list[Published] = []
    for _ in range(ROUNDS):
        before = _cpu_seconds(workers)
        gateway.append(run(Load(url, c, seconds, "POST", ORDER), warmup=0))
        gateway_cpu.append((_cpu_seconds(workers) - before) / max(1, gateway[-1].requests) * 1e6)
        _purge(scratch)
        anchor.append(_confirmed_publishes(scratch, c, seconds))
        _purge(scratch)
    rates = [result.rps for result in gateway]
    anchor_rates = [published.per_s for published in anchor]
    anchor_cpu = [published.cpu_us_per_order for published in anchor]
    results.raw["order_intake"] = {
        "gateway": [r.as_dict() for r in gateway],
        "gateway_worker_cpu_us_per_order": gateway_cpu,
        "pika_confirmed_per_s": anchor_rates,
        "pika_cpu_us_per_order": anchor_cpu,
    }
    results.rows += [
        Row(f"POST /api/billing, c={c}", median(rates), "orders/s", "plain pika, confirms", median(anchor_rates)),
        # CPU time is what a busy or different machine skews least: the rate above depends on both.
        Row("CPU per order, gateway worker", median(gateway_cpu), "us", "pika client", median(anchor_cpu), False),
    ]
    ratio = paired_ratio(rates, anchor_rates)
    results.goals.append(
        Goal("order intake >= 0.5 x plain confirmed publish", ratio >= 0.5, f"{ratio:.2f} x (median of paired rounds)")
    )
    cpu_ratio = paired_ratio(gateway_cpu, anchor_cpu)
    results.goals.append(
        Goal(
            f"gateway worker CPU per order <= {CPU_PER_ORDER_LIMIT:g} x plain pika client's",
            cpu_ratio <= CPU_PER_ORDER_LIMIT,
            f"{cpu_ratio:.2f} x (median of paired rounds)",
        )
    )


# -- backlog drain ---------------------------------------------------------------------------------


def _fill(scratch: ScratchStack, count: int) -> None:
    connection = scratch.broker()
    try:
        channel = connection.channel()
        scratch.queue.declare(channel)
        body = ORDER.encode()
        for _ in range(count):
            channel.basic_publish("", scratch.queue.name, body, _persistent())
        wait_for(
            lambda: channel.queue_declare(scratch.queue.name, passive=True).method.message_count >= count,
            timeout=60,
            what=f"{count} messages in {scratch.queue.name}",
            interval=0.05,
        )
    finally:
        connection.close()


def _rate(samples: list[tuple[float, int]], total: int) -> float:
    """Messages per second from the last sample that saw nothing stored to the first that saw everything."""
    finished = next(t for t, n in samples if n >= total)
    started = max(t for t, n in samples if n == 0 and t < finished)
    return total / (finished - started)


def _raw_consume(scratch: ScratchStack, count: int, prefetch: int) -> float:
    """The anchor: receive and acknowledge every message, nothing else."""
    connection = scratch.broker()
    samples: list[tuple[float, int]] = [(time.perf_counter(), 0)]
    received = 0
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=prefetch)

        def on_message(ch, method, _properties, _body) -> None:
            nonlocal received
            ch.basic_ack(method.delivery_tag)
            received += 1
            samples.append((time.perf_counter(), received))
            if received >= count:
                ch.stop_consuming()

        channel.basic_consume(scratch.queue.name, on_message)
        channel.start_consuming()
    finally:
        connection.close()
    return _rate(samples, count)


def _billing_drain(scratch: ScratchStack, count: int) -> float:
    """billing-app started on a backlog of `count` orders: orders stored per second."""
    scratch.stack.stop("billing-app")
    _fill(scratch, count)
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def poll() -> None:
        with scratch.connect(scratch.config.billing_database) as conn:
            (before,) = conn.execute("SELECT count(*) FROM orders").fetchone()
            deadline = time.perf_counter() + 300
            while time.perf_counter() < deadline and not done.is_set():
                (stored,) = conn.execute("SELECT count(*) - %s FROM orders", [before]).fetchone()
                samples.append((time.perf_counter(), stored))
                if stored >= count:
                    return
                time.sleep(0.005)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        scratch.stack.start("billing-app")
    except BaseException:
        done.set()
        raise
    finally:
        poller.join(timeout=310)
    scratch.stack.stop("billing-app")
    return _rate(samples, count)


def backlog_drain(scratch: ScratchStack, settings: Settings, results: Results, log: Callable[[str], None]) -> None:
    count = settings.backlog
    batch_size = int(scratch.config.extra_env.get("billing-app", {}).get("BILLING_BATCH_SIZE", DEFAULT_BATCH_SIZE))
    log(f"backlog: {count:,} orders into billing-app and into a raw pika consumer, {ROUNDS} alternating rounds")
    drained: list[float] = []
    raw: list[float] = []
    for _ in range(ROUNDS):
        drained.append(_billing_drain(scratch, count))
        _fill(scratch, count)
        raw.append(_raw_consume(scratch, count, prefetch=2 * batch_size))
    results.raw["backlog_drain"] = {"billing_app_per_s": drained, "raw_consume_per_s": raw, "messages": count}
    results.rows.append(
        Row(f"drain {count:,} orders into PostgreSQL", median(drained), "orders/s", "raw receive+ack", median(raw))
    )
    ratio = paired_ratio(drained, raw)
    results.goals.append(
        Goal("backlog drain >= 0.6 x raw consume", ratio >= 0.6, f"{ratio:.2f} x (median of paired rounds)")
    )


# -- search at scale -------------------------------------------------------------------------------


def _token(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=6))


def _add_movies(scratch: ScratchStack, count: int, rng: random.Random) -> list[str]:
    """COPY `count` movies titled like 'Silent River qzkfwa'; returns their distinctive tokens."""
    tokens = [_token(rng) for _ in range(count)]
    buffer = io.StringIO()
    for token in tokens:
        buffer.write(f"{rng.choice(WORDS)} {rng.choice(NOUNS)} {token}\tA film.\n")
    with scratch.connect(scratch.config.inventory_database) as conn:
        with conn.cursor().copy("COPY movies (title, description) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        conn.execute("ANALYZE movies")
    return tokens


def _p50_search(base_url: str, tokens: list[str]) -> float:
    pool = urllib3.connection_from_url(base_url, maxsize=1)
    latencies = []
    for token in tokens:
        started = time.perf_counter()
        answer = pool.urlopen("GET", f"/api/movies?title={token}")
        found = json.loads(answer.data)
        latencies.append(time.perf_counter() - started)
        if answer.status != 200 or not found:
            raise RuntimeError(f"searching {token!r} answered {answer.status} with {len(found)} movies")
    latencies.sort()
    return latencies[len(latencies) // 2] * 1e3


def search_at_scale(scratch: ScratchStack, settings: Settings, results: Results, log: Callable[[str], None]) -> None:
    rng = random.Random(20261125)
    tokens: list[str] = []
    figures: dict[int, float] = {}
    for size in settings.search_sizes:
        log(f"search: {size:,} movies")
        tokens += _add_movies(scratch, size - len(tokens), rng)
        sample = rng.sample(tokens, settings.search_queries)
        _p50_search(scratch.gateway_url, sample[:20])  # warm the caches
        figures[size] = _p50_search(scratch.gateway_url, sample)
    smallest, largest = min(figures), max(figures)
    for size, p50 in figures.items():
        anchor = figures[smallest] if size != smallest else None
        results.rows.append(
            Row(
                f"search p50 via gateway, {size:,} movies",
                p50,
                "ms",
                f"at {smallest:,}" if anchor else "",
                anchor,
                False,
            )
        )
    results.raw["search_p50_ms"] = {str(size): p50 for size, p50 in figures.items()}
    results.goals.append(
        Goal(f"search p50 <= 5 ms at {largest:,} movies", figures[largest] <= 5, f"{figures[largest]:.2f} ms")
    )
    growth = figures[largest] / figures[smallest]
    results.goals.append(Goal(f"search p50 at {largest:,} <= 3 x at {smallest:,}", growth <= 3, f"{growth:.2f} x"))


# -- memory ----------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(status.parent.name))
    return found


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory(scratch: ScratchStack, settings: Settings, results: Results, log: Callable[[str], None]) -> None:
    scratch.stack.start("billing-app")
    worst = {}
    for service in ("inventory-app", "billing-app", "api-gateway"):
        pid = scratch.stack.pid(service)
        if pid is None:
            continue
        processes = [pid, *_children(pid)]
        sizes = {p: _rss_mb(p) for p in processes}
        worst[service] = max(sizes.values())
        detail = ", ".join(f"{size:.0f}" for size in sizes.values())
        results.rows.append(Row(f"{service} resident memory, largest process", worst[service], "MB"))
        results.raw[f"rss_mb_{service}"] = detail
    over = {service: size for service, size in worst.items() if size >= 100}
    results.goals.append(
        Goal(
            "every service process < 100 MB resident", not over, ", ".join(f"{s} {m:.0f} MB" for s, m in worst.items())
        )
    )
