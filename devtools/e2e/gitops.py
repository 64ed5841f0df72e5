"""A git push reaches the cluster: commit a new ConfigMap value, push it, wait until Argo CD has applied it.

python -m devtools.e2e gitops --remote NAME   (after the platform is Synced and Healthy)
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from devtools import ROOT

CHECK_FILE = Path("overlays/e2e/gitops-check.yaml")
CONFIGMAP = "gitops-check"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


def commit_new_value(root: Path, value: str) -> None:
    """Commit `value` as the ConfigMap's revision, touching nothing else."""
    path = root / CHECK_FILE
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join(f"  revision: {value}" if line.startswith("  revision:") else line for line in lines) + "\n"
    )
    _git(root, "commit", "--quiet", "-m", f"e2e: gitops-check revision {value}", "--", str(CHECK_FILE))


def live_value(core: client.CoreV1Api, namespace: str) -> str | None:
    try:
        return (core.read_namespaced_config_map(CONFIGMAP, namespace).data or {}).get("revision")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def check(remote: str, namespace: str, timeout: float) -> int:
    config.load_kube_config()
    core = client.CoreV1Api()
    value = f"r-{uuid.uuid4().hex[:12]}"  # never all digits: a YAML number is not ConfigMap data
    commit_new_value(ROOT, value)
    started = time.monotonic()
    _git(ROOT, "push", "--quiet", remote, "HEAD:refs/heads/main")
    print(f"pushed {_git(ROOT, 'rev-parse', '--short', 'HEAD')}: {CONFIGMAP}.revision = {value}", flush=True)
    while (live := live_value(core, namespace)) != value:
        if time.monotonic() - started > timeout:
            print(f"FAIL Argo CD did not apply the push within {timeout:g} s ({CONFIGMAP}.revision is {live})")
            return 1
        time.sleep(2)
    print(f"ok   Argo CD applied the push in {time.monotonic() - started:.0f} s")
    return 0
