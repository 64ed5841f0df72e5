"""A clone of the repository's cluster tooling with stand-in vagrant, kubectl and VBoxManage on PATH.

The stand-ins append each call to calls.log and answer like the real programs
would for a healthy two-node cluster. git is the real one: the cluster's git
server is a bare repository the clone reaches through `url.<bare>.insteadOf`,
so `git push cluster` really pushes. `.venv/bin/invoke` runs the real tasks
(sealing-key, seal-secrets) in the clone, except `bootstrap`, which needs a
cluster and is recorded instead (tests/gitops tests it). Knobs:
FAKE_BUILD=failed makes the master's image build fail (failed-once: until it is retried); FAKE_BOOTSTRAP_RC
makes the bootstrap fail; FAKE_NO_OBSERVABILITY, FAKE_NO_GRAFANA_SECRET: the observability stack, or
Grafana's Secret, is not there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools import ROOT

VAGRANT = r"""#!/usr/bin/env bash
echo "vagrant $*" >> "$CALLS_LOG"
# The Vagrantfile makes the cluster's secrets in .cluster/ when it loads.
mkdir -p .cluster && chmod 700 .cluster
for secret in k3s-token git-password; do
  [ -f ".cluster/$secret" ] || (umask 077; openssl rand -hex 32 > ".cluster/$secret")
done
case "$*" in
  *"k3s/k3s.yaml"*)
    printf 'apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Zm9v\n    server: https://127.0.0.1:6443\n  name: default\nkind: Config\n' ;;
  *"server/token"*) echo "K10$(printf 'ab%.0s' $(seq 32))::server:secret" ;;
  *"build-status.json"*)
    main="$(git --git-dir="$FAKE_BARE" rev-parse --verify --quiet refs/heads/main)"
    state="${FAKE_BUILD:-succeeded}" started=t1
    [ -f "$FAKE_BARE.retried" ] && started=t2
    if [ "$state" = failed-once ]; then
      state=failed; [ "$started" = t2 ] && state=succeeded
    fi
    [ -n "$main" ] && printf '{"commit": "%s", "state": "%s", "started": "%s", "log": "/var/log/moviestream/builds/%s.log"}\n' \
      "$main" "$state" "$started" "$main" ;;
  *"moviestream-builds retry"*) : >"$FAKE_BARE.retried" ;;
  *"tail -n 40"*) echo "Step 3/9: pip install failed" ;;
  status*) echo "master running (virtualbox)"; echo "agent running (virtualbox)" ;;
esac
"""

KUBECTL = r"""#!/usr/bin/env bash
echo "kubectl $* KUBECONFIG=${KUBECONFIG:-}" >> "$CALLS_LOG"
case " $* " in
  *" get nodes --no-headers "*) echo "master Ready control-plane 1m v1.34.12+k3s1"; echo "agent Ready <none> 1m v1.34.12+k3s1" ;;
  *" get nodes -o wide "*) echo "NAME STATUS"; echo "master Ready" ;;
  *" get applications.argoproj.io -n argocd "*) echo "NAME SYNC STATUS HEALTH STATUS"; echo "workload Synced Healthy" ;;
  *" root -o jsonpath"*) echo "0123456789abcdef" ;;
  *" -n observability create token headlamp-viewer "*)
    [ -n "${FAKE_NO_OBSERVABILITY:-}" ] && { echo 'serviceaccounts "headlamp-viewer" not found' >&2; exit 1; }
    echo "viewer-token" ;;
  *" -n observability get secret grafana-admin "*)
    [ -n "${FAKE_NO_GRAFANA_SECRET:-}" ] && { echo 'forbidden' >&2; exit 1; }
    case "$*" in *admin-user*) echo "grafana-owner" ;; *) echo "from-the-cluster" ;; esac ;;
esac
exit 0
"""

INVOKE = r"""#!/usr/bin/env bash
echo "invoke $*" >> "$CALLS_LOG"
if [ "$1" = bootstrap ]; then
  echo "==> (stand-in) bootstrap $*"
  exit "${FAKE_BOOTSTRAP_RC:-0}"
fi
exec "$REAL_INVOKE" "$@"
"""

COPIED = ("orchestrator.sh", "tasks.py", ".gitignore", "devtools", "clusters", "sealed-secrets", "base", "overlays")
TOOLS = (
    "git", "openssl", "bash", "sh", "awk", "sed", "tr", "wc", "cat", "mkdir", "chmod", "rm", "printf", "grep",
    "head", "tail", "sleep", "dirname", "env", "cut", "seq",
)  # fmt: skip


@dataclass
class Sandbox:
    root: Path
    home: Path
    bare: Path
    calls: Path
    env: dict[str, str]

    def run(self, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / "orchestrator.sh"), *args],
            env=self.env | env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def calls_of(self, program: str) -> list[str]:
        if not self.calls.exists():
            return []
        return [
            line.split(" KUBECONFIG=")[0]
            for line in self.calls.read_text().splitlines()
            if line.startswith(program + " ")
        ]

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd or self.root, env=self.env, capture_output=True, text=True, check=True
        ).stdout.strip()

    def commit_file(self, name: str, text: str, message: str) -> None:
        (self.root / name).write_text(text)
        self.git("add", name)
        self.git("commit", "-qm", message)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    root = tmp_path / "repo"
    root.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, root / name)
    (root / "test.sh").write_text('#!/bin/sh\necho "test.sh $*" >> "$CALLS_LOG"\n')
    (root / "test.sh").chmod(0o755)
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "invoke").write_text(INVOKE)
    (venv_bin / "invoke").chmod(0o755)
    (venv_bin / "python").symlink_to(sys.executable)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"vagrant": VAGRANT, "kubectl": KUBECTL, "VBoxManage": "#!/bin/sh\nexit 0\n"}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for tool in TOOLS:
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    home = tmp_path / "home"
    home.mkdir()
    bare = tmp_path / "cluster.git"
    env = {
        "PATH": str(bin_dir),
        "HOME": str(home),
        "CALLS_LOG": str(tmp_path / "calls.log"),
        "REAL_INVOKE": str(Path(sys.executable).with_name("invoke")),
        "MOVIESTREAM_KEYS_DIR": str(tmp_path / "keys"),
        "FAKE_BARE": str(bare),
        "ORCHESTRATOR_POLL": "0",
        "ORCHESTRATOR_TIMEOUT": "5",
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    sandbox = Sandbox(root, home, bare, tmp_path / "calls.log", env)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, env=env)
    sandbox.git("init", "-q", "-b", "main")
    sandbox.git("config", "user.name", "Learner")
    sandbox.git("config", "user.email", "learner@example.invalid")
    # The cluster's git server, as the clone reaches it.
    sandbox.git("config", f"url.file://{bare}.insteadOf", "http://192.168.56.10:8418/moviestream.git")
    sandbox.git("add", "-A")
    sandbox.git("commit", "-qm", "A fresh clone")
    return sandbox
