"""Each Dockerfile's build stage, replayed without Docker: its COPY lines, its pip install, then its CMD.

No Docker engine is needed: the test copies what the build stage copies (minus what .dockerignore
keeps out), runs the same commands (the hash-checked install from the lock into a venv that, like
the image's, has no pip of its own), and starts the image's CMD from outside the repository. If a runtime dependency is missing from a
Dockerfile or a pyproject, the service cannot start here either.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.gitops.images import SERVICES
from devtools.gitops.manifests import ROOT
from devtools.waiting import Timeout, answers_ok, wait_for

IGNORED = shutil.ignore_patterns("tests", "__pycache__", "*.egg-info", "*.pyc", "build")


def build_stage(dockerfile: Path) -> list[str]:
    """The instructions of the first stage, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction = pending + line
        pending = ""
        if instruction.startswith("FROM ") and lines:
            break
        lines.append(instruction)
    return lines


def final_cmd(dockerfile: Path) -> list[str]:
    cmds = [line for line in dockerfile.read_text().splitlines() if line.startswith("CMD ")]
    assert len(cmds) == 1, f"{dockerfile.name} must have exactly one CMD"
    return json.loads(cmds[0][4:])


def replay_build(dockerfile: Path, image_root: Path) -> None:
    """COPY from the repository into image_root, then RUN with /opt and /src moved under image_root."""

    def inside(path: str) -> str:
        return str(image_root / path.lstrip("/"))

    for instruction in build_stage(dockerfile):
        keyword, _, rest = instruction.partition(" ")
        if keyword == "COPY":
            source, target = shlex.split(rest)
            origin, destination = ROOT / source, Path(inside(target))
            destination.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, destination, ignore=IGNORED)
            else:
                shutil.copy(origin, destination)
        elif keyword == "RUN":
            command = rest.replace("/opt/", inside("/opt") + "/").replace("/src/", inside("/src") + "/")
            # The image's `python` is the base image's; here it is the one running the tests.
            command = command.replace("python -m venv", f"{shlex.quote(sys.executable)} -m venv")
            command = command.replace("python3 ", f"{shlex.quote(sys.executable)} ")
            result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=600, check=False)
            assert result.returncode == 0, f"{dockerfile.name}: RUN {rest}\n{result.stderr}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_install_is_enough_to_serve(
    service: str,
    tmp_path: Path,
    unused_port: int,
    database: str,
    billing_queue: str,
    request: pytest.FixtureRequest,
) -> None:
    dockerfile = ROOT / "Dockerfiles" / f"{service}.Dockerfile"
    image_root = tmp_path / "image"
    replay_build(dockerfile, image_root)
    venv_bin = image_root / "opt" / "venv" / "bin"
    assert not (venv_bin / "pip").exists(), "the runtime venv must not carry pip"

    command = final_cmd(dockerfile)
    environment = {
        **{k: v for k, v in os.environ.items() if k.startswith(("PG", "RABBITMQ_", "BILLING_"))},
        "PATH": f"{venv_bin}:/usr/bin:/bin",
        "PORT": str(unused_port),
        "INVENTORY_URL": "http://127.0.0.1:9",
        "HOME": str(tmp_path),
    }
    process = subprocess.Popen(
        [str(venv_bin / command[0]), *command[1:]],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    request.addfinalizer(lambda: stop(process))
    url = f"http://127.0.0.1:{unused_port}/healthz"
    try:
        wait_for(lambda: process.poll() is not None or answers_ok(url, timeout=1), timeout=30, what=f"{service} {url}")
    except Timeout:
        pytest.fail(f"{service} never answered {url}:\n{stop(process)}")
    assert process.poll() is None, f"{service} exited {process.returncode}:\n{stop(process)}"


def stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.stderr.read() if process.stderr else ""
