"""`invoke load` against a local stack: Locust's traffic reaches every endpoint and the orders are stored."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.gitops.manifests import ROOT
from devtools.stack.local_stack import ScratchStack, free_port
from devtools.waiting import wait_for

INVOKE = Path(sys.executable).parent / "invoke"


def invoke_load(url: str, seconds: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INVOKE), "load", "--url", url, "--users", "4", "--spawn-rate", "4", "--duration", f"{seconds}s"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchStack]:
    with ScratchStack("load", state_dir=tmp_path_factory.mktemp("load-stack")) as running:
        yield running


def test_a_short_run_hits_every_endpoint_without_failures(scratch: ScratchStack) -> None:
    result = invoke_load(scratch.gateway_url, 6)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout + result.stderr  # Locust prints its tables through logging
    for line in (
        "POST     /api/billing",
        "GET      /api/movies?limit",
        "GET      /api/movies?title",
        "POST     /api/movies",
    ):
        assert line in summary
    assert "Aggregated" in summary
    aggregated = next(row for row in summary.splitlines() if row.strip().startswith("Aggregated"))
    assert " 0(0.00%) " in aggregated, aggregated

    def stored_orders() -> int:
        with scratch.connect(scratch.config.billing_database) as conn:
            return conn.execute("SELECT count(*) FROM orders").fetchone()[0]

    wait_for(lambda: stored_orders() > 0, timeout=20, what="orders from the load to be stored")


def test_an_unreachable_gateway_fails_the_run() -> None:
    result = invoke_load(f"http://127.0.0.1:{free_port()}", 2)
    assert result.returncode == 1
    assert "Locust reported failures or could not reach" in result.stderr
