"""The master's git server on scratch paths: set up by scripts/provision-gitserver.sh itself.

Every path the provisioning script uses can be moved with an environment variable; these fixtures
point them at the test's directory and run the script's own steps (render, write-credential,
init-repository), so the repository, hooks and configuration under test are the ones a VM gets.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools import ROOT
from devtools.stack.local_stack import free_port
from devtools.waiting import wait_for

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
    def url(self) -> str:
        return f"http://127.0.0.1:{self.git_port}/moviestream.git"

    @property
    def push_url(self) -> str:
        return f"http://moviestream:{PASSWORD}@127.0.0.1:{self.git_port}/moviestream.git"

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


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _nginx_conf(directory: Path, site: Path) -> Path:
    # Run as root, nginx's workers would otherwise become nobody, who cannot reach fcgiwrap's socket.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    kinds = ("client_body", "fastcgi", "proxy", "uwsgi", "scgi")
    temporary = "".join(f"  {kind}_temp_path {directory}/{kind};\n" for kind in kinds)
    conf = directory / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\npid {directory}/nginx.pid;\nerror_log {directory}/error.log info;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n  access_log {directory}/access.log;\n{temporary}  include {site};\n}}\n"
    )
    return conf


@contextmanager
def nginx_serving(server: Server, directory: Path) -> Iterator[None]:
    """fcgiwrap and nginx, as children of the test, serving the site the provisioning script renders."""
    directory.mkdir()
    site = directory / "site.conf"
    site.write_text(server.step("render", "nginx-site.conf"))
    socket_path = server.root / "fcgiwrap.sock"
    programs = [
        subprocess.Popen(
            [shutil.which("fcgiwrap") or "fcgiwrap", "-f", "-s", f"unix:{socket_path}"],
            env={"LANG": "C"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        wait_for(socket_path.exists, timeout=10, what="fcgiwrap's socket")
        nginx = subprocess.Popen(
            [
                *(shutil.which("nginx") or "nginx", "-e", str(directory / "error.log")),
                *("-p", str(directory), "-c", str(_nginx_conf(directory, site))),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        programs.append(nginx)
        wait_for(lambda: listening(server.git_port) or nginx.poll() is not None, timeout=10, what="nginx")
        assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else ""
        yield
    finally:
        for program in reversed(programs):
            program.terminate()
            program.wait(timeout=10)
