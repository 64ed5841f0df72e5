"""The master's git server on scratch paths: set up by scripts/provision-gitserver.sh itself.

Every path the provisioning script uses can be moved with an environment variable; these fixtures
point them at the test's directory and run the script's own steps (render, write-credential,
init-repository), so the repository, hooks and configuration under test are the ones a VM gets.
"""

from __future__ import annotations

import getpass
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools import ROOT
from devtools.stack.local_stack import free_port

SCRIPT = ROOT / "scripts" / "provision-gitserver.sh"
PASSWORD = "correct-horse-battery-staple"


@dataclass
class Server:
    """The provisioning script's settings for one test, and helpers to run its steps."""

    root: Path
    git_port: int = field(default_factory=free_port)
    registry_port: int = field(default_factory=free_port)
    registry_upstream_port: int = field(default_factory=free_port)

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root / "home"),
            "LANG": "C",
            "GITSERVER_FILES": str(ROOT / "scripts" / "gitserver"),
            "MOVIESTREAM_LIB": str(self.root / "lib"),
            "MOVIESTREAM_ETC": str(self.root / "etc"),
            "MOVIESTREAM_GIT_ROOT": str(self.root / "srv"),
            "MOVIESTREAM_SPOOL": str(self.root / "spool"),
            "MOVIESTREAM_STATE": str(self.root / "state"),
            "MOVIESTREAM_LOGS": str(self.root / "logs"),
            "MOVIESTREAM_WEB_USER": getpass.getuser(),
            "MOVIESTREAM_GIT_PORT": str(self.git_port),
            "MOVIESTREAM_REGISTRY_PORT": str(self.registry_port),
            "MOVIESTREAM_REGISTRY_UPSTREAM": f"127.0.0.1:{self.registry_upstream_port}",
            "MOVIESTREAM_FCGIWRAP_SOCKET": str(self.root / "fcgiwrap.sock"),
            "MASTER_IP": "127.0.0.1",
            "HOST_NETWORK_CIDR": "127.0.0.1/32",
            "GIT_PASSWORD": PASSWORD,
            "REPO_URL_IN_CLUSTER": f"http://127.0.0.1:{self.git_port}/moviestream.git",
            "ARGOCD_WEBHOOK_URL": "",
        }

    @property
    def repository(self) -> Path:
        return self.root / "srv" / "moviestream.git"

    @property
    def queue(self) -> Path:
        return self.root / "spool" / "build-queue"

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), *args], env=self.env | env, capture_output=True, text=True, check=False, timeout=60
        )

    def step(self, *args: str, **env: str) -> str:
        result = self.run(*args, **env)
        assert result.returncode == 0, result.stderr
        return result.stdout


def git_env(home: Path) -> dict[str, str]:
    """git for a client: no system or user configuration but its own, and no password prompt."""
    home.mkdir(parents=True, exist_ok=True)
    return os.environ | {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}


@pytest.fixture
def server(tmp_path: Path) -> Server:
    """A bare repository with the cluster's hooks and settings, and its push credential."""
    server = Server(tmp_path / "server")
    (server.root / "home").mkdir(parents=True)
    server.step("write-credential")
    server.step("init-repository")
    return server
