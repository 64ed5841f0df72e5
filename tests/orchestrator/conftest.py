"""A copy of orchestrator.sh and what it reads, with stand-in vagrant, kubectl and VBoxManage on PATH.

The stand-ins append each call to calls.log and answer like the real
programs would for a healthy two-node cluster; FAKE_APPS=stuck makes one
Argo CD application never become healthy.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.gitops import sealing
from devtools.gitops.manifests import ROOT

VAGRANT = r"""#!/usr/bin/env bash
echo "vagrant $*" >> "$CALLS_LOG"
case "$1" in
  ssh)
    printf 'apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Zm9v\n    server: https://127.0.0.1:6443\n  name: default\nkind: Config\n' ;;
  status) echo "master running (virtualbox)"; echo "agent running (virtualbox)" ;;
  plugin) ;;
esac
"""

KUBECTL = r"""#!/usr/bin/env bash
echo "kubectl $* KUBECONFIG=${KUBECONFIG:-}" >> "$CALLS_LOG"
args=" $* "
case "$args" in
  *" get nodes --no-headers "*) echo "master Ready control-plane 1m v1.34.9+k3s1"; echo "agent Ready <none> 1m v1.34.9+k3s1" ;;
  *" create secret tls "*)
    for a in "$@"; do case "$a" in --cert=*|--key=*) [ -f "${a#*=}" ] || { echo "no file ${a#*=}" >&2; exit 1; } ;; esac; done
    printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: sealed-secrets-key-moviestream\n' ;;
  *" label --local "*) cat; echo "  labels: {sealedsecrets.bitnami.com/sealed-secrets-key: active}" ;;
  *" apply -f - "*) cat >> "$APPLIED_LOG" ;;
  *" get applications.argoproj.io -n argocd --no-headers "*)
    for app in root argocd sealed-secrets storage; do echo "$app Synced Healthy"; done
    if [ "${FAKE_APPS:-healthy}" = stuck ]; then echo "workload OutOfSync Progressing"; else echo "workload Synced Healthy"; fi ;;
esac
exit 0
"""


@dataclass
class Sandbox:
    root: Path
    home: Path
    calls: Path
    applied: Path
    env: dict[str, str]

    def run(self, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / "orchestrator.sh"), *args],
            env=self.env | env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
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


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "orchestrator.sh", root)
    shutil.copytree(ROOT / "clusters", root / "clusters")
    (root / "sealed-secrets" / "vagrant").mkdir(parents=True)
    pair = sealing.new_key_pair()
    (root / "sealed-secrets" / "vagrant" / "sealing-cert.pem").write_bytes(pair.certificate_pem)
    keys = tmp_path / "keys"
    (keys / "vagrant").mkdir(parents=True)
    (keys / "vagrant" / "sealing-key.pem").write_bytes(pair.private_key_pem)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "remote", "add", "origin", "git@github.com:someone/fork.git"], cwd=root, check=True)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"vagrant": VAGRANT, "kubectl": KUBECTL, "VBoxManage": "#!/bin/sh\nexit 0\n"}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for tool in (
        "git",
        "openssl",
        "bash",
        "sh",
        "awk",
        "sed",
        "tr",
        "wc",
        "cat",
        "mkdir",
        "chmod",
        "rm",
        "printf",
        "grep",
        "head",
        "tail",
        "sleep",
        "dirname",
        "env",
    ):
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": str(bin_dir),
        "HOME": str(home),
        "CALLS_LOG": str(tmp_path / "calls.log"),
        "APPLIED_LOG": str(tmp_path / "applied.log"),
        "MOVIESTREAM_KEYS_DIR": str(keys),
        "ORCHESTRATOR_POLL": "0",
        "ORCHESTRATOR_TIMEOUT": "3",
        "LANG": "C",
    }
    return Sandbox(root, home, tmp_path / "calls.log", tmp_path / "applied.log", env)
