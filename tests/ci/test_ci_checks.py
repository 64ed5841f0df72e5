"""The offline workflow and Dockerfile checks of `invoke lint`, on the repository and broken on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devtools.gitops.ci_checks import ci_problems
from devtools.gitops.manifests import ROOT
from devtools.testing.tools import needs_tool


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


CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1"


@pytest.mark.parametrize(
    "reference",
    [
        "actions/checkout@v7.0.1",
        "actions/checkout@v7",
        "actions/checkout@main",
        "actions/checkout@3d3c42e5",
        "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1",
        "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # latest",
    ],
)
def test_an_action_not_pinned_to_a_commit_with_its_release_is_refused(repo: Path, reference: str) -> None:
    edit(repo / ".github/workflows/ci.yml", CHECKOUT, reference)
    uses = reference.split(" ", maxsplit=1)[0]
    problems = [p for p in ci_problems(repo) if not p.startswith("zizmor")]
    assert problems == [
        f".github/workflows/ci.yml:42: {uses} must be pinned to a full commit SHA with `# vX.Y.Z` after it"
    ]


def test_zizmor_reports_checkout_credentials_left_for_later_steps(repo: Path) -> None:
    edit(
        repo / ".github/workflows/ci.yml",
        "        with:\n          persist-credentials: false\n",
        "",
    )
    problems = ci_problems(repo)
    assert problems, "zizmor found nothing"
    assert all(p.startswith("zizmor: ") for p in problems), problems
    assert any("artipacked" in p for p in problems), problems


def test_a_workflow_without_permissions_is_refused(repo: Path) -> None:
    edit(repo / ".github/workflows/e2e.yml", "permissions:\n  contents: read\n", "")
    problems = ci_problems(repo)
    assert (
        ".github/workflows/e2e.yml: no top-level permissions; give the least the workflow needs (e.g. contents: read)"
        in problems
    )
    assert any(p.startswith("zizmor:") and "excessive-permissions" in p for p in problems)


def test_top_level_write_permissions_are_refused(repo: Path) -> None:
    edit(repo / ".github/workflows/ci.yml", "permissions:\n  contents: read\n", "permissions:\n  contents: write\n")
    problems = ci_problems(repo)
    assert ".github/workflows/ci.yml: top-level permissions must be read-only; grant writes per job" in problems
    assert any(p.startswith("zizmor:") and "excessive-permissions" in p for p in problems)


def test_a_workflow_schema_error_is_refused(repo: Path) -> None:
    edit(repo / ".github/workflows/ci.yml", "    runs-on: ubuntu-24.04\n", "    runs_on: ubuntu-24.04\n")
    problems = ci_problems(repo)
    assert problems
    assert all(p.startswith("check-jsonschema (vendor.github-workflows)") for p in problems)


def test_a_dockerfile_problem_is_reported_by_hadolint(repo: Path) -> None:
    edit(
        repo / "Dockerfiles/billing-app.Dockerfile",
        "FROM python:3.11.15-slim-trixie AS build",
        "FROM python:latest AS build",
    )
    problems = ci_problems(repo)
    assert any("hadolint: Dockerfiles/billing-app.Dockerfile" in p and "DL3007" in p for p in problems), problems


@needs_tool("shellcheck")
def test_a_run_step_shellcheck_would_flag_is_refused_with_its_job_and_step(repo: Path) -> None:
    edit(
        repo / ".github/workflows/e2e.yml",
        "        run: git push e2e HEAD:refs/heads/main\n",
        "        run: git push e2e HEAD:refs/heads/$GITHUB_BASE_REF\n",
    )
    problems = ci_problems(repo)
    assert len(problems) == 1
    assert problems[0].startswith(
        ".github/workflows/e2e.yml: job e2e, step 'Push the result to the cluster's git server': "
    )
    assert "SC2086" in problems[0] or "Double quote" in problems[0]


def test_github_expressions_are_not_shell_to_check(repo: Path) -> None:
    edit(
        repo / ".github/workflows/e2e.yml",
        "        run: git push e2e HEAD:refs/heads/main\n",
        '        run: git push e2e HEAD:refs/heads/main "${{ runner.temp }}"\n',
    )
    assert ci_problems(repo) == []
