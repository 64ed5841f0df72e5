"""Finding and rendering the repository's kustomizations, the way Argo CD's repo-server would."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devtools import ROOT

REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://|^github\.com/")


class RenderError(RuntimeError):
    pass


@dataclass(frozen=True)
class Rendered:
    """One object of a rendered kustomization."""

    source: str  # the kustomization directory, relative to the repository
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind"))

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name"))

    def __str__(self) -> str:
        return f"{self.source}: {self.kind}/{self.name}"


def tracked_files(root: Path = ROOT) -> list[Path]:
    """Files git tracks or would track (not ignored), that exist."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sorted(root / name for name in listing.split("\0") if name and (root / name).is_file())


def yaml_files(root: Path = ROOT) -> list[Path]:
    return [path for path in tracked_files(root) if path.suffix in {".yaml", ".yml"}]


def kustomization(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}


def kustomization_dirs(root: Path = ROOT) -> list[Path]:
    """Every directory with a kustomization.yaml that builds on its own (Components are built by their users)."""
    found = []
    for path in tracked_files(root):
        if (
            path.name == "kustomization.yaml"
            and kustomization(path.parent).get("kind", "Kustomization") == "Kustomization"
        ):
            found.append(path.parent)
    return found


def remote_resources(directory: Path) -> list[str]:
    """The remote resources a kustomization builds on, its local bases' and components' included."""
    found: list[str] = []
    seen: set[Path] = set()

    def visit(path: Path) -> None:
        path = path.resolve()
        if path in seen or not (path / "kustomization.yaml").is_file():
            return
        seen.add(path)
        data = kustomization(path)
        for item in [*(data.get("resources") or []), *(data.get("components") or [])]:
            if REMOTE.match(str(item)):
                found.append(str(item))
            elif (path / str(item)).is_dir():
                visit(path / str(item))

    visit(directory)
    return found


def render(directory: Path, root: Path = ROOT) -> list[Rendered]:
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize")
    if kustomize:
        command = [kustomize, "build", str(directory)]
    elif kubectl:
        command = [kubectl, "kustomize", str(directory)]
    else:
        raise RenderError("neither kustomize nor kubectl is installed; install kubectl (it includes kustomize)")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    source = str(directory.relative_to(root)) if directory.is_relative_to(root) else str(directory)
    if result.returncode != 0:
        raise RenderError(f"{source}: kustomize build failed:\n{result.stderr.strip()}")
    return [Rendered(source, obj) for obj in yaml.safe_load_all(result.stdout) if obj]
