"""A small git repository shaped like this one: what image tags, promotion and the deployer read."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from devtools import ROOT
from devtools.gitops.image_tags import SERVICES

# Shaped like overlays/vagrant (a comment, indented lists, images sorted by name), but fixed, so
# the tests do not move when the real overlay's images do.
OVERLAY = """\
# The two-node K3s cluster of this repository's Vagrantfile.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
# Written by the images workflow and the cluster's deployer (`invoke promote`).
images:
  - name: api-gateway
    newName: docker.io/moviestream/api-gateway
    newTag: 1.0.0
  - name: billing-app
    newName: docker.io/moviestream/billing-app
    newTag: 1.0.0
  - name: inventory-app
    newName: docker.io/moviestream/inventory-app
    newTag: 1.0.0
"""


def git(root: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def commit_file(root: Path, relative: str, text: str, message: str = "") -> str:
    """Write one file, commit it, return the new HEAD."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    git(root, "add", relative)
    git(root, "commit", "-q", "-m", message or f"Change {relative}")
    return git(root, "rev-parse", "HEAD")


def make_repository(root: Path, *, with_tasks: bool = False) -> Path:
    """Dockerfiles, apps (with tests), the real requirements, an overlay; tasks.py and devtools/ if asked."""
    files = {
        ".dockerignore": "*\n!apps/\n!requirements/lock.txt\n!devtools/gitops/lockfile.py\napps/*/tests/\n",
        "README.md": "# scratch\n",
        "apps/common/src/moviestream_common/__init__.py": '"""shared"""\n',
        "apps/common/tests/test_common.py": "def test_nothing():\n    pass\n",
        "overlays/vagrant/kustomization.yaml": OVERLAY,
    }
    for service in SERVICES:
        module = service.replace("-", "_")
        files[f"Dockerfiles/{service}.Dockerfile"] = f"FROM python:3.11-slim\nCOPY apps/{service} /src\n"
        files[f"apps/{service}/pyproject.toml"] = f'[project]\nname = "{service}"\n'
        files[f"apps/{service}/src/{module}/__init__.py"] = f'"""{service}"""\n'
        files[f"apps/{service}/tests/test_{module}.py"] = "def test_nothing():\n    pass\n"
    root.mkdir(parents=True, exist_ok=True)
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    shutil.copytree(ROOT / "requirements", root / "requirements")
    # The lock's reader, which the Dockerfiles copy and the deployer runs.
    (root / "devtools" / "gitops").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "devtools" / "gitops" / "lockfile.py", root / "devtools" / "gitops" / "lockfile.py")
    if with_tasks:
        shutil.copy(ROOT / "tasks.py", root / "tasks.py")
        shutil.copytree(
            ROOT / "devtools", root / "devtools", ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
        )
    git(root, "init", "-q", "-b", "main")
    for key, value in (("user.name", "Test"), ("user.email", "test@example.invalid")):
        git(root, "config", key, value)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "Scratch repository")
    return root
