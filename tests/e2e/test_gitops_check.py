"""The e2e job's GitOps check commits one ConfigMap value, and nothing else, where the e2e overlay deploys it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from devtools import ROOT
from devtools.e2e import gitops
from devtools.gitops.manifests import render


def test_the_commit_changes_the_value_the_e2e_overlay_renders(tmp_path: Path) -> None:
    for name in ("base", "overlays", "sealed-secrets"):
        shutil.copytree(ROOT / name, tmp_path / name)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=ci", "-c", "user.email=ci@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "start"], check=True)
    (tmp_path / "README.md").write_text("not part of the check\n")
    subprocess.run([*git, "config", "user.name", "ci"], check=True)
    subprocess.run([*git, "config", "user.email", "ci@example.invalid"], check=True)

    gitops.commit_new_value(tmp_path, "abc123")

    shown = subprocess.run([*git, "show", "--name-only", "--format=%s"], capture_output=True, text=True, check=True)
    assert shown.stdout.split("\n")[:2] == ["e2e: gitops-check revision abc123", ""]
    assert shown.stdout.split()[-1] == "overlays/e2e/gitops-check.yaml"
    [configmap] = [item for item in render(tmp_path / "overlays/e2e", tmp_path) if item.name == gitops.CONFIGMAP]
    assert configmap.obj["data"] == {"revision": "abc123"}
    assert configmap.obj["metadata"]["namespace"] == "moviestream"
    assert yaml.safe_load((tmp_path / gitops.CHECK_FILE).read_text())["data"]["revision"] == "abc123"
