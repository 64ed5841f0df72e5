"""`python -m devtools.bench` end to end at toy sizes: every row, goal and the JSON record (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from devtools.gitops.manifests import ROOT


def test_a_small_run_reports_every_measurement_with_its_anchor(tmp_path: Path) -> None:
    options = ["--duration", "1", "--connections", "4", "--backlog", "500", "--max-movies", "2000"]
    result = subprocess.run(
        [sys.executable, "-m", "devtools.bench", *options, "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    (path,) = tmp_path.glob("bench-*.json")
    record = json.loads(path.read_text())
    rows = {row["name"]: row for row in record["rows"]}
    assert rows["POST /api/billing, c=4"]["anchor_name"] == "plain pika, confirms"
    assert rows["POST /api/billing, c=4"]["ratio"] > 0
    assert rows["CPU per order, gateway worker"]["anchor_name"] == "pika client"
    assert rows["CPU per order, gateway worker"]["figure"] > 0 < rows["CPU per order, gateway worker"]["anchor"]
    assert rows["drain 500 orders into PostgreSQL"]["anchor"] > 0
    assert rows["p50 via gateway, c=1"]["anchor_name"] == "direct"
    assert "search p50 via gateway, 2,000 movies" in rows
    assert {
        f"{service} resident memory, largest process" for service in ("inventory-app", "billing-app", "api-gateway")
    } <= set(rows)
    assert rows["GET /api/movies/<id> inventory-app, c=8"]["anchor_name"] == "minimal Flask + psycopg pool"
    assert rows["CPU per GET by id, inventory-app worker"]["anchor"] > 0
    assert len(record["goals"]) == 10
    verdicts = [line.split()[0] for line in result.stdout.splitlines() if line.startswith(("PASS", "FAIL", "SKIP"))]
    assert len(verdicts) == 10
    assert (result.returncode == 1) == ("FAIL" in verdicts)
    assert record["machine"]["cores"] >= 1
