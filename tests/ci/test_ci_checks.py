"""The offline workflow and Dockerfile checks of `invoke lint`, on the repository and broken on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devtools.gitops.ci_checks import ci_problems
from devtools.gitops.manifests import ROOT


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    shutil.copytree(ROOT / "Dockerfiles", tmp_path / "Dockerfiles")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_repositorys_workflows_and_dockerfiles_pass(repo: Path) -> None:
    assert ci_problems(repo) == []


@pytest.mark.parametrize("reference", ["actions/checkout@v5", "actions/checkout@main", "actions/checkout@a1b2c3d"])
def test_an_action_not_pinned_to_an_exact_release_or_sha_is_refused(repo: Path, reference: str) -> None:
    edit(repo / ".github/workflows/ci.yml", "actions/checkout@v5.0.0", reference)
    assert ci_problems(repo) == [
        f".github/workflows/ci.yml: job test: {reference} must be pinned to @vX.Y.Z or a full commit SHA"
    ]


def test_a_full_commit_sha_is_accepted(repo: Path) -> None:
    edit(repo / ".github/workflows/ci.yml", "actions/checkout@v5.0.0", "actions/checkout@" + "0" * 40)
    assert ci_problems(repo) == []


def test_a_workflow_without_permissions_is_refused(repo: Path) -> None:
    edit(repo / ".github/workflows/e2e.yml", "permissions:\n  contents: read\n", "")
    assert ci_problems(repo) == [
        ".github/workflows/e2e.yml: no top-level permissions; give the least the workflow needs (e.g. contents: read)"
    ]


def test_top_level_write_permissions_are_refused(repo: Path) -> None:
    edit(repo / ".github/workflows/ci.yml", "permissions:\n  contents: read\n", "permissions:\n  contents: write\n")
    assert ci_problems(repo) == [
        ".github/workflows/ci.yml: top-level permissions must be read-only; grant writes per job"
    ]


def test_a_workflow_schema_error_is_refused(repo: Path) -> None:
    edit(repo / ".github/workflows/ci.yml", "    runs-on: ubuntu-24.04\n", "    runs_on: ubuntu-24.04\n")
    problems = ci_problems(repo)
    assert problems
    assert all(p.startswith("check-jsonschema (vendor.github-workflows)") for p in problems)


def test_a_dockerfile_problem_is_reported_by_hadolint(repo: Path) -> None:
    edit(
        repo / "Dockerfiles/billing-app.Dockerfile",
        "FROM python:3.11.14-slim-bookworm AS build",
        "FROM python:latest AS build",
    )
    problems = ci_problems(repo)
    assert any("hadolint: Dockerfiles/billing-app.Dockerfile" in p and "DL3007" in p for p in problems), problems
