"""`invoke build` and `invoke push` refuse clearly, before doing anything, when they cannot work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.gitops.manifests import ROOT

INVOKE = Path(sys.executable).parent / "invoke"


def invoke(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DOCKERHUB_USERNAME"}
    environment |= {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", **env}
    return subprocess.run(
        [str(INVOKE), *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("task", ["build", "push"])
def test_without_a_docker_engine_it_says_so(task: str, tmp_path: Path) -> None:
    result = invoke(tmp_path, task, "--user", "someone")
    assert result.returncode == 1
    assert "no Docker engine answers" in result.stderr
    assert "start Docker, or set DOCKER_HOST" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_user_it_asks_for_one(tmp_path: Path) -> None:
    result = invoke(tmp_path, "build")
    assert result.returncode == 1
    assert "no Docker Hub user: pass --user or set DOCKERHUB_USERNAME" in result.stderr


def test_an_unknown_service_is_named(tmp_path: Path) -> None:
    result = invoke(tmp_path, "build", "--user", "someone", "--service", "billing")
    assert result.returncode == 1
    assert "unknown service(s) billing; choose from inventory-app, billing-app, api-gateway" in result.stderr


def test_the_user_comes_from_the_environment(tmp_path: Path) -> None:
    result = invoke(tmp_path, "build", "--service", "api-gateway", DOCKERHUB_USERNAME="someone")
    assert "no Docker Hub user" not in result.stderr
    assert "no Docker engine answers" in result.stderr
