"""The e2e checks' `kubectl port-forward`, against a stand-in kubectl that talks as much as the real one."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.e2e.cluster import ClusterError, PortForward
from devtools.waiting import wait_for

# One line per forwarded connection, as kubectl writes them: megabytes over a run of the checks.
CHATTY_KUBECTL = """#!/usr/bin/env bash
echo "Forwarding from 127.0.0.1:43210 -> 3000"
for i in $(seq 100000); do echo "Handling connection for 3000"; done
touch "$DONE_FILE"
exec sleep 60
"""


def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(script)
    (bin_dir / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    done = tmp_path / "done"
    monkeypatch.setenv("DONE_FILE", str(done))
    return done


def test_kubectls_connection_lines_are_read_so_it_never_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = stand_in(tmp_path, monkeypatch, CHATTY_KUBECTL)
    forward = PortForward("moviestream", "api-gateway", 3000)
    try:
        assert forward.local_port == 43210
        wait_for(done.exists, timeout=30, what="kubectl to write all its lines (it blocks on a full pipe)")
        assert forward.process.poll() is None, "still forwarding"
    finally:
        forward.close()


def test_a_port_forward_that_fails_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in(tmp_path, monkeypatch, '#!/bin/sh\necho "error: services \\"api-gateway\\" not found"\nexit 1\n')
    with pytest.raises(ClusterError, match='failed: error: services "api-gateway" not found'):
        PortForward("moviestream", "api-gateway", 3000)
