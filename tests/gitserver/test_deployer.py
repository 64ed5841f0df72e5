"""The master's deployer, run as the systemd unit runs it, against a scratch cluster repository.

The bare repository and its hooks come from scripts/provision-gitserver.sh, the deployer's settings
from the deployer.env it renders. A stand-in buildah on PATH records its calls, can be told to fail
one service, and "pushes" by writing the manifest file that a small HTTP registry then serves;
`invoke image-tags` and `invoke promote` are the repository's own, in a virtual environment the
deployer itself made from the promote group of requirements/lock.txt (once per test session).
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from devtools import ROOT
from devtools.gitops.image_tags import SERVICES, content_tags
from devtools.stack.local_stack import free_port
from devtools.testing.scratch_repo import commit_file, git, make_repository

from .conftest import Server

DEPLOYER = ROOT / "scripts" / "gitserver" / "deployer.py"
PREFIX = "registry.moviestream.internal/moviestream"
STAND_IN_BUILDAH = r"""#!/usr/bin/env bash
# Stand-in buildah: records each call; `bud` fails for $FAKE_BUILDAH_FAIL and runs
# $FAKE_BUILDAH_DURING once; `push` stores the manifest the test registry serves.
set -euo pipefail
echo "buildah $*" >>"${FAKE_BUILDAH_CALLS}"
case "$1" in
  bud)
    file="" previous=""
    for arg in "$@"; do
      [[ "${previous}" == --file ]] && file="${arg}"
      previous="${arg}"
    done
    service="$(basename "${file}" .Dockerfile)"
    echo "STEP 1/9: FROM python (${service})"
    if [[ -n "${FAKE_BUILDAH_DURING:-}" && -f "${FAKE_BUILDAH_DURING}" ]]; then
      mv "${FAKE_BUILDAH_DURING}" "${FAKE_BUILDAH_DURING}.ran"
      bash "${FAKE_BUILDAH_DURING}.ran"
    fi
    if [[ "${service}" == "${FAKE_BUILDAH_FAIL:-}" ]]; then
      echo "STEP 4/9: RUN pip install: ERROR: No matching distribution found for ${service}" >&2
      exit 1
    fi
    echo "built ${service}"
    ;;
  push)
    destination="${*: -1}"
    path="${destination#docker://*/}"
    mkdir -p "${FAKE_REGISTRY}/v2/${path%:*}/manifests"
    echo '{}' >"${FAKE_REGISTRY}/v2/${path%:*}/manifests/${path##*:}"
    ;;
esac
"""


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    """The test registry: serves the manifests the stand-in buildah "pushed" (HEAD: 200 or 404)."""

    def log_message(self, *args: object) -> None:
        pass


def _load_deployer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deployer", DEPLOYER)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["deployer"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tools_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployer's own virtual environment for invoke, made once for every test here."""
    deployer = _load_deployer()
    root = tmp_path_factory.mktemp("deployer-tools")
    checkout = make_repository(root / "checkout")
    config = deployer.Config(
        repository=checkout, spool=root, state=root, logs=root, registry="-", image_prefix=PREFIX,
        overlay="overlays/vagrant", python=sys.executable,
    )  # fmt: skip
    build = deployer.Build(config, "0" * 40)
    with (root / "venv.log").open("w") as build.log:
        invoke = build.tools(checkout)
    assert Path(invoke).exists(), (root / "venv.log").read_text()
    return config.venv


@dataclass
class Cluster:
    server: Server
    client: Path
    env: dict[str, str]
    calls: Path
    registry: Path

    def push(self) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["git", "push", "cluster", "main"],
            cwd=self.client,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result

    def deployer(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(DEPLOYER), *args],
            env=self.env | env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def deploy(self, **env: str) -> dict[str, Any]:
        result = self.deployer("run", **env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert not self.server.queue.exists(), "the queue is empty after a run"
        return self.status()

    def status(self) -> dict[str, Any]:
        return json.loads((self.server.root / "state" / "build-status.json").read_text())

    def main(self) -> str:
        return git(self.server.repository, "rev-parse", "main")

    def builds(self) -> list[str]:
        calls = self.calls.read_text().splitlines() if self.calls.exists() else []
        return [
            call.split("--file Dockerfiles/")[1].split(".Dockerfile")[0] for call in calls if " bud " in f" {call} "
        ]

    def overlay_at(self, rev: str) -> str:
        return git(self.server.repository, "show", f"{rev}:overlays/vagrant/kustomization.yaml")


@pytest.fixture
def cluster(server: Server, tools_venv: Path, tmp_path: Path) -> Iterator[Cluster]:
    registry = tmp_path / "registry"
    registry.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", server.registry_upstream_port), functools.partial(QuietFiles, directory=str(registry))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    config = tmp_path / "deployer.env"
    config.write_text(server.step("render", "deployer.env"))
    (server.root / "state").mkdir(parents=True, exist_ok=True)
    (server.root / "state" / "venv").symlink_to(tools_venv)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "buildah").write_text(STAND_IN_BUILDAH)
    (bin_dir / "buildah").chmod(0o755)
    env = os.environ | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "MOVIESTREAM_CONFIG": str(config),
        "FAKE_BUILDAH_CALLS": str(tmp_path / "buildah-calls.log"),
        "FAKE_REGISTRY": str(registry),
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    client = make_repository(tmp_path / "client", with_tasks=True)
    git(client, "remote", "add", "cluster", str(server.repository))
    try:
        yield Cluster(server, client, env, tmp_path / "buildah-calls.log", registry)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_settings_come_from_the_file_provisioning_renders(cluster: Cluster) -> None:
    deployer = _load_deployer()
    config = deployer.Config.load({"MOVIESTREAM_CONFIG": cluster.env["MOVIESTREAM_CONFIG"]})
    assert config.repository == cluster.server.repository
    assert config.queue == cluster.server.queue
    assert config.registry == f"127.0.0.1:{cluster.server.registry_upstream_port}"
    assert config.image_prefix == PREFIX
    assert config.overlay == "overlays/vagrant"
    assert config.python == "/usr/bin/python3.11"
    with pytest.raises(SystemExit, match="MOVIESTREAM_REPOSITORY, MOVIESTREAM_SPOOL"):
        deployer.Config.load({"MOVIESTREAM_CONFIG": "/nonexistent"})


def test_a_first_push_builds_every_image_and_promotes_them_in_one_commit(cluster: Cluster) -> None:
    pushed = git(cluster.client, "rev-parse", "HEAD")
    cluster.push()
    assert cluster.server.queue.read_text().strip() == pushed
    status = cluster.deploy()

    tags = content_tags(pushed, cluster.client)
    assert sorted(cluster.builds()) == sorted(SERVICES)
    for service, tag in tags.items():
        assert (cluster.registry / "v2" / "moviestream" / service / "manifests" / tag).is_file()
    promotion = cluster.main()
    assert git(cluster.server.repository, "rev-parse", "main~1") == pushed
    assert git(cluster.server.repository, "log", "-1", "--format=%s", "main").startswith("Deploy images ")
    assert git(cluster.server.repository, "log", "-1", "--format=%an", "main") == "moviestream deployer"
    assert f"Built from {pushed}." in git(cluster.server.repository, "log", "-1", "--format=%b", "main")
    overlay = cluster.overlay_at("main")
    for service, tag in tags.items():
        assert f"newName: {PREFIX}/{service}\n    newTag: {tag}" in overlay
    log = (cluster.server.root / "logs" / f"{pushed}.log").read_text()
    assert f"==> build of {pushed} started" in log
    assert "built inventory-app" in log
    assert f"==> promoted as {promotion}" in log

    # The promotion's own push was built next: every image present, nothing to promote. The
    # status names main's tip, as orchestrator.sh waits for.
    assert status["commit"] == promotion
    assert status["state"] == "succeeded"
    assert status["promoted"] is None
    assert status["services"] == {
        service: {"tag": tag, "image": f"{PREFIX}/{service}:{tag}", "action": "skipped"}
        for service, tag in tags.items()
    }
    assert status["log"] == str(cluster.server.root / "logs" / f"{promotion}.log")
    assert len(cluster.builds()) == 3
    assert cluster.deploy() == status, "nothing is queued any more"


def test_a_change_outside_the_images_builds_nothing_and_promotes_nothing(cluster: Cluster) -> None:
    cluster.push()
    cluster.deploy()
    git(cluster.client, "pull", "--quiet", "--ff-only", "cluster", "main")
    for relative in ("README.md", "apps/inventory-app/tests/test_more.py"):
        readme = commit_file(cluster.client, relative, "# only words\n")
        cluster.push()
        status = cluster.deploy()
        assert status["commit"] == readme
        assert {info["action"] for info in status["services"].values()} == {"skipped"}
        assert status["promoted"] is None
        assert cluster.main() == readme
    assert len(cluster.builds()) == 3


def test_a_change_to_one_service_builds_and_promotes_only_it(cluster: Cluster) -> None:
    cluster.push()
    cluster.deploy()
    git(cluster.client, "pull", "--quiet", "--ff-only", "cluster", "main")
    before = cluster.overlay_at("main")
    changed = commit_file(cluster.client, "apps/billing-app/src/billing_app/queue.py", "BATCH = 64\n")
    cluster.push()
    cluster.deploy()
    assert cluster.builds()[3:] == ["billing-app"]
    log = (cluster.server.root / "logs" / f"{changed}.log").read_text()
    assert "inventory-app:" in log
    assert "is in the registry; not built again" in log
    subject = git(cluster.server.repository, "log", "-1", "--format=%s", "main")
    assert (
        subject
        == f"Deploy images billing-app:{content_tags(changed, cluster.client)['billing-app']} to overlays/vagrant"
    )
    after = cluster.overlay_at("main")
    assert [line for line in after.splitlines() if line not in before.splitlines()] == [
        f"    newTag: {content_tags(changed, cluster.client)['billing-app']}"
    ]


def test_a_failed_build_promotes_nothing_shows_its_log_and_the_next_push_recovers(cluster: Cluster) -> None:
    pushed = git(cluster.client, "rev-parse", "HEAD")
    cluster.push()
    status = cluster.deploy(FAKE_BUILDAH_FAIL="billing-app")
    assert status["state"] == "failed"
    assert status["message"] == f"`buildah bud` failed (exit 1); see {status['log']}"
    assert {service: info["action"] for service, info in status["services"].items()} == {
        "inventory-app": "built",
        "billing-app": "failed",
        "api-gateway": "pending",
    }
    assert status["promoted"] is None
    assert cluster.main() == pushed, "main is untouched: the running images stay"
    assert "No matching distribution found for billing-app" in Path(status["log"]).read_text()

    waited = cluster.deployer("wait", "--timeout", "5")
    assert waited.returncode == 1
    assert f"last build: {pushed[:12]} failed" in waited.stdout
    assert "No matching distribution found for billing-app" in waited.stderr

    fixed = commit_file(cluster.client, "Dockerfiles/billing-app.Dockerfile", "FROM python:3.11.14-slim\n")
    cluster.push()
    status = cluster.deploy()
    assert status["state"] == "succeeded"
    assert cluster.builds()[-2:] == ["billing-app", "api-gateway"], "inventory-app was already in the registry"
    assert git(cluster.server.repository, "rev-parse", "main~1") == fixed


def test_a_push_during_a_build_is_built_next_and_carries_the_promotion(cluster: Cluster, tmp_path: Path) -> None:
    first = git(cluster.client, "rev-parse", "HEAD")
    cluster.push()
    during = tmp_path / "during.sh"
    during.write_text(
        f"cd {cluster.client}\necho '# pushed during the build' >>README.md\n"
        "git commit -qam 'Pushed during the build'\ngit push -q cluster main 2>/dev/null\n"
    )
    result = cluster.deployer("run", FAKE_BUILDAH_DURING=str(during))
    assert result.returncode == 0, result.stderr
    newer = git(cluster.client, "rev-parse", "HEAD")
    assert newer != first
    log = (cluster.server.root / "logs" / f"{first}.log").read_text()
    assert f"main moved on to {newer[:12]} during the build; its build promotes" in log
    assert git(cluster.server.repository, "rev-parse", "main~1") == newer
    assert git(cluster.server.repository, "log", "-1", "--format=%s", "main").startswith("Deploy images ")
    assert len(cluster.builds()) == 3, "the newer commit's images were the ones just built"
    assert f"==> promoted as {cluster.main()}" in (cluster.server.root / "logs" / f"{newer}.log").read_text()
    assert cluster.status()["commit"] == cluster.main()
    assert not cluster.server.queue.exists()


def test_a_builds_output_reaches_its_log_while_the_step_runs(cluster: Cluster, tmp_path: Path) -> None:
    pushed = git(cluster.client, "rev-parse", "HEAD")
    cluster.push()
    during = tmp_path / "during.sh"
    seen = tmp_path / "log-during-the-step"
    during.write_text(f"cp {cluster.server.root / 'logs' / (pushed + '.log')} {seen}\n")
    assert cluster.deployer("run", FAKE_BUILDAH_DURING=str(during)).returncode == 0
    assert "STEP 1/9: FROM python (inventory-app)" in seen.read_text(), "not only once the step is over"


def test_a_build_that_failed_for_a_passing_reason_is_retried_without_a_new_commit(cluster: Cluster) -> None:
    cluster.push()
    assert cluster.deploy(FAKE_BUILDAH_FAIL="api-gateway")["state"] == "failed"
    pushed = cluster.main()
    retried = cluster.deployer("retry")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == f"queued {pushed[:12]} (main) again"
    status = cluster.deploy()
    assert status["state"] == "succeeded"
    assert git(cluster.server.repository, "rev-parse", "main~1") == pushed
    assert status["commit"] == cluster.main(), "the promotion's own build ends the queue"


def test_a_work_copy_left_broken_by_an_interrupted_build_is_cloned_again(cluster: Cluster) -> None:
    cluster.push()
    assert cluster.deploy()["state"] == "succeeded"
    work = cluster.server.root / "state" / "work"
    (work / ".git" / "index.lock").write_text("")  # what a build killed by `vagrant halt` leaves
    commit_file(cluster.client, "apps/billing-app/src/billing_app/extra.py", "x = 1\n")
    git(cluster.client, "pull", "-q", "--rebase", "cluster", "main")
    cluster.push()
    pushed = git(cluster.client, "rev-parse", "HEAD")
    status = cluster.deploy()
    assert status["state"] == "succeeded", Path(status["log"]).read_text()
    log = (cluster.server.root / "logs" / f"{pushed}.log").read_text()
    assert "is unusable (a build cut short?); cloning it again" in log
    assert git(cluster.server.repository, "rev-parse", "main~1") == pushed, "and it promoted"


def test_bad_queue_entries_and_commits_without_what_the_deployer_needs_fail_clearly(cluster: Cluster) -> None:
    cluster.server.queue.write_text("not a commit\n")
    dropped = cluster.deployer("run")
    assert "ignoring a malformed queue entry 'not a commit'" in dropped.stdout
    assert not cluster.server.queue.exists()
    assert not (cluster.server.root / "state" / "build-status.json").exists()

    git(cluster.client, "rm", "-q", "requirements/lock.txt")
    bare = commit_file(cluster.client, "README.md", "# no lock\n")
    cluster.push()
    status = cluster.deploy()
    assert status["state"] == "failed"
    assert status["message"] == (
        f"{bare} has no requirements/lock.txt or devtools/gitops/lockfile.py: cannot run invoke image-tags and promote"
    )
    assert cluster.main() == bare


def test_a_registry_that_does_not_answer_fails_the_build(cluster: Cluster) -> None:
    cluster.push()
    port = free_port()
    status = cluster.deploy(MOVIESTREAM_REGISTRY=f"127.0.0.1:{port}")
    assert status["state"] == "failed"
    assert status["message"].startswith(f"the registry at 127.0.0.1:{port} does not answer")
    assert cluster.builds() == []


def test_only_one_deployer_runs_at_a_time(cluster: Cluster) -> None:
    cluster.push()
    state = cluster.server.root / "state"
    with (state / "deployer.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        busy = cluster.deployer("run")
    assert "another build is running" in busy.stdout
    assert cluster.server.queue.exists(), "the running one takes the queued commit"


def test_status_wait_and_log_show_the_builds(cluster: Cluster) -> None:
    assert cluster.deployer("status").stdout == "no image build yet\n"
    pushed = git(cluster.client, "rev-parse", "HEAD")
    cluster.push()
    queued = cluster.deployer("status", "--json")
    assert json.loads(queued.stdout) == {"queued": pushed}
    waiting = cluster.deployer("wait", "--timeout", "1")
    assert waiting.returncode == 2
    assert "still building after 1 s" in waiting.stderr

    status = cluster.deploy()
    promotion = cluster.main()
    shown = cluster.deployer("status").stdout.splitlines()
    assert shown[0].startswith(f"last build: {promotion[:12]} succeeded (started ")
    tags = content_tags(pushed, cluster.client)
    assert f"  inventory-app  {tags['inventory-app']}  skipped" in shown
    assert f"  log: {status['log']}" in shown
    assert f"==> promoted as {promotion}" in cluster.deployer("log", pushed[:8]).stdout
    assert cluster.deployer("wait", "--timeout", "5").returncode == 0
    full = cluster.deployer("log")
    assert full.stdout == Path(status["log"]).read_text()
    assert cluster.deployer("log", promotion[:8]).stdout == full.stdout
    missing = cluster.deployer("log", "abcdef12")
    assert missing.returncode == 1
    assert "no build log for 'abcdef12'" in missing.stderr
    assert cluster.deployer("log", "../../etc/passwd").returncode == 1


def test_a_step_that_hangs_fails_the_build_instead_of_blocking_the_queue(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deployer = _load_deployer()
    monkeypatch.setattr(deployer, "STEP_TIMEOUT", 1)
    build = deployer.Build(deployer.Config.load(cluster.env), "0" * 40)
    with (
        (tmp_path / "hang.log").open("w") as build.log,
        pytest.raises(deployer.BuildFailed, match="`sleep 30` took more than 1 s"),
    ):
        build.command(["sleep", "30"])
