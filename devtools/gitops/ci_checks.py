"""Offline checks of what only runs on GitHub or Docker: workflow schemas, action pinning,
least-privilege permissions, Dependabot's configuration, hadolint over the Dockerfiles, zizmor
over the workflows, and shellcheck over every `run:` step as GitHub runs it (actionlint's
shellcheck pass, which cannot run here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

# An action is named by the full commit SHA of its release, with the release in a comment
# (`uses: owner/repo@<40 hex> # v1.2.3`): a tag can be moved, a commit cannot.
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^\s*#\s*v\d+\.\d+\.\d+\s*$")
BIN = Path(sys.executable).parent


def _load(path: Path) -> Any:
    # PyYAML reads the key `on:` as True; GitHub reads it as "on".
    return yaml.load(path.read_text(), Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds only strings


def _steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    jobs = workflow.get("jobs") or {}
    return [(job, step) for job, spec in jobs.items() for step in (spec.get("steps") or [])]


def pinning_problems(path: Path, relative: str) -> list[str]:
    problems = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = USES.match(line)
        if not match or match[1].startswith("./"):
            continue
        uses, rest = match[1], match[2]
        if uses.startswith("docker://"):
            if "@sha256:" not in uses and not re.search(r":v?\d+\.\d+", uses):
                problems.append(f"{relative}:{number}: {uses} must name an exact image version or digest")
        elif not PINNED_ACTION.match(uses) or not VERSION_COMMENT.match(rest):
            problems.append(f"{relative}:{number}: {uses} must be pinned to a full commit SHA with `# vX.Y.Z` after it")
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


def zizmor_problems(root: Path) -> list[str]:
    """zizmor's audits of the workflows and Dependabot's configuration, offline (no GitHub API)."""
    if not (root / ".github").is_dir():
        return []
    result = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--no-progress", "--format", "plain", ".github"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return []
    return [f"zizmor: {line}" for line in result.stdout.strip().splitlines() if line.strip()] or [
        f"zizmor exited {result.returncode}: {result.stderr.strip()}"
    ]


# GitHub runs a step's script with `bash --noprofile --norc -eo pipefail {0}`; an expression
# `${{ ... }}` is text GitHub fills in before, so shellcheck sees a placeholder in its place.
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def run_step_problems(path: Path, relative: str) -> list[str]:
    problems = []
    for job, step in _steps(_load(path)):
        if "run" not in step or step.get("shell", "bash") != "bash":
            continue
        script = "#!/usr/bin/env bash\nset -eo pipefail\n" + EXPRESSION.sub("GITHUB_EXPRESSION", step["run"])
        result = subprocess.run(
            [str(BIN / "shellcheck"), "--severity=style", "--format=gcc", "-"],
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        name = step.get("name") or step["run"].splitlines()[0]
        problems += [
            f"{relative}: job {job}, step '{name}': {line.split(':', 3)[-1].strip()}"
            for line in result.stdout.splitlines()
        ]
    return problems


def ci_problems(root: Path) -> list[str]:
    workflows = sorted((root / ".github" / "workflows").glob("*.y*ml"))
    problems = schema_problems(workflows, "vendor.github-workflows", root)
    dependabot = root / ".github" / "dependabot.yml"
    problems += schema_problems([dependabot] if dependabot.exists() else [], "vendor.dependabot", root)
    for path in workflows:
        relative = str(path.relative_to(root))
        problems += pinning_problems(path, relative) + permission_problems(path, relative)
        problems += run_step_problems(path, relative)
    return problems + hadolint_problems(root) + zizmor_problems(root)
