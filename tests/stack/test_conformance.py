"""The gateway against its own OpenAPI document: schemathesis, every check, on the running local stack.

Every phase runs (the document's examples, the coverage phase's boundary and
unsupported-method cases, fuzzing, stateful links) with a fixed seed and a
bounded number of examples per operation, so a run takes about a minute and
a failure can be replayed with the command it prints.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack.local_stack import ScratchStack

MAX_EXAMPLES = 200
SEED = 20261125


@pytest.fixture(scope="module")
def stack() -> Iterator[ScratchStack]:
    with ScratchStack("conformance") as running:
        yield running


@pytest.mark.stack
def test_the_gateway_answers_as_its_openapi_document_says(stack: ScratchStack, tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{stack.gateway_url}/openapi.json",
        "--checks=all",
        f"--max-examples={MAX_EXAMPLES}",
        f"--seed={SEED}",
        "--workers=1",
        "--request-timeout=15",
        "--generation-database=none",
        "--no-color",
        f"--report-dir={tmp_path}",
    ]
    # In tmp_path: schemathesis keeps the cases to replay in its working directory.
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, f"{' '.join(command)}\n{run.stdout[-20000:]}\n{run.stderr[-5000:]}"
