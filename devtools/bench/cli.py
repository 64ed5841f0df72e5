"""`python -m devtools.bench` (or `invoke bench`): every measurement with its anchor, the goals, a JSON record.

Runs the three services as a scratch stack against the local PostgreSQL and RabbitMQ, with their own
databases and queue, removed afterwards. Nothing here is a test: it reports what it measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

import psycopg

from devtools.bench import inventory_cost, scenarios
from devtools.bench.scenarios import Results, Settings
from devtools.stack.local_stack import ROOT, ScratchStack

STEPS = {
    "gateway": scenarios.gateway_overhead,
    "inventory": inventory_cost.inventory_cost,
    "intake": scenarios.order_intake,
    "drain": scenarios.backlog_drain,
    "search": scenarios.search_at_scale,
    "memory": scenarios.memory,
}


def machine() -> dict[str, object]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line
    )
    with psycopg.connect(dbname="postgres", connect_timeout=5) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": postgres,
    }


def table(results: Results) -> str:
    lines = [f"{'measure':<48} {'figure':>16} {'anchor':>36} {'ratio':>7}"]
    for row in results.rows:
        figure = f"{row.figure:,.2f} {row.unit}" if row.figure < 100 else f"{row.figure:,.0f} {row.unit}"
        anchor = "-"
        if row.anchor is not None:
            value = f"{row.anchor:,.2f}" if row.anchor < 100 else f"{row.anchor:,.0f}"
            anchor = f"{value} ({row.anchor_name})"
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        lines.append(f"{row.name:<48} {figure:>16} {anchor:>36} {ratio:>7}")
    lines.append("")
    for goal in results.goals:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[goal.passed]
        lines.append(f"{verdict}  {goal.text}: {goal.detail}")
    lines += [f"note: {note}" for note in results.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(STEPS), help="run only these (repeatable)")
    parser.add_argument("--duration", type=float, default=Settings.duration, help="seconds per HTTP load run")
    parser.add_argument("--connections", type=int, default=Settings.connections, help="concurrent connections")
    parser.add_argument("--backlog", type=int, default=Settings.backlog, help="orders in the drained backlog")
    parser.add_argument(
        "--max-movies", type=int, default=max(Settings.search_sizes), help="largest table for the search row"
    )
    parser.add_argument("--output", type=Path, default=ROOT / ".bench", help="where the JSON record goes")
    args = parser.parse_args(argv)

    sizes = (*(size for size in Settings.search_sizes if size < args.max_movies), args.max_movies)
    settings = Settings(duration=args.duration, connections=args.connections, backlog=args.backlog, search_sizes=sizes)
    results = Results()
    started = datetime.datetime.now(datetime.UTC)

    def log(message: str) -> None:
        print(f"  .. {message}", file=sys.stderr, flush=True)

    with ScratchStack("bench") as scratch:
        for name in args.only or list(STEPS):
            STEPS[name](scratch, settings, results, log)

    report = table(results)
    print(report)
    record = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": asdict(settings),
        "rows": [asdict(row) | {"ratio": row.ratio} for row in results.rows],
        "goals": [asdict(goal) for goal in results.goals],
        "notes": results.notes,
        "raw": results.raw,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nmachine: {json.dumps(record['machine'])}\nrecord: {path}")
    return 1 if any(goal.passed is False for goal in results.goals) else 0
