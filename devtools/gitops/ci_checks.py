"""Offline checks of what only runs on GitHub or Docker: workflow schemas, action pinning,
least-privilege permissions, Dependabot's configuration, and hadolint over the Dockerfiles."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")
BIN = Path(sys.executable).parent


def _load(path: Path) -> Any:
    # PyYAML reads the key `on:` as True; GitHub reads it as "on".
    return yaml.load(path.read_text(), Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds only strings


def _steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    jobs = workflow.get("jobs") or {}
    return [(job, step) for job, spec in jobs.items() for step in (spec.get("steps") or [])]


def pinning_problems(path: Path, relative: str) -> list[str]:
    problems = []
    for job, step in _steps(_load(path)):
        uses = step.get("uses")
        if not uses or uses.startswith("./"):
            continue
        if uses.startswith("docker://"):
            if "@sha256:" not in uses and not re.search(r":v?\d+\.\d+", uses):
                problems.append(f"{relative}: job {job}: {uses} must name an exact image version or digest")
        elif not PINNED_ACTION.match(uses):
            problems.append(f"{relative}: job {job}: {uses} must be pinned to @vX.Y.Z or a full commit SHA")
    return problems


def permission_problems(path: Path, relative: str) -> list[str]:
    workflow = _load(path)
    permissions = workflow.get("permissions")
    if permissions is None:
        return [f"{relative}: no top-level permissions; give the least the workflow needs (e.g. contents: read)"]
    problems = []
    if permissions in ("write-all", "read-all") or (isinstance(permissions, dict) and "write" in permissions.values()):
        problems.append(f"{relative}: top-level permissions must be read-only; grant writes per job")
    for job, spec in (workflow.get("jobs") or {}).items():
        if spec.get("permissions") == "write-all":
            problems.append(f"{relative}: job {job} asks for write-all; list only the scopes it writes")
    return problems


def schema_problems(paths: list[Path], schema: str, root: Path) -> list[str]:
    if not paths:
        return []
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, paths)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return []
    return [f"check-jsonschema ({schema}): {line}" for line in (result.stdout + result.stderr).strip().splitlines()]


def hadolint_problems(root: Path) -> list[str]:
    dockerfiles = sorted((root / "Dockerfiles").glob("*.Dockerfile"))
    if not dockerfiles:
        return []
    result = subprocess.run(
        [str(BIN / "hadolint"), *(str(p.relative_to(root)) for p in dockerfiles)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    return [f"hadolint: {line}" for line in result.stdout.strip().splitlines()] if result.returncode else []


def ci_problems(root: Path) -> list[str]:
    workflows = sorted((root / ".github" / "workflows").glob("*.y*ml"))
    problems = schema_problems(workflows, "vendor.github-workflows", root)
    dependabot = root / ".github" / "dependabot.yml"
    problems += schema_problems([dependabot] if dependabot.exists() else [], "vendor.dependabot", root)
    for path in workflows:
        relative = str(path.relative_to(root))
        problems += pinning_problems(path, relative) + permission_problems(path, relative)
    return problems + hadolint_problems(root)
