"""checkov and detect-secrets as `invoke lint` runs them: clean on the repository, and each finding
reported once its skip reason or baseline entry is gone."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.gitops import scanners
from devtools.gitops.manifests import ROOT

POLICY_INPUTS = ["base", "overlays", "sealed-secrets", "Dockerfiles", ".github"]


@pytest.fixture(scope="module")
def clean_policy_report() -> list[str]:
    return scanners.policy_problems(ROOT)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for name in POLICY_INPUTS:
        shutil.copytree(ROOT / name, tmp_path / name)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_checkov_finds_nothing_unexplained_in_the_repository(clean_policy_report: list[str]) -> None:
    assert clean_policy_report == []


def test_a_dockerfile_without_its_healthcheck_reason_is_reported(repo: Path) -> None:
    edit(repo / "Dockerfiles/billing-app.Dockerfile", "# checkov:skip=CKV_DOCKER_2", "# (no skip)")
    assert scanners.policy_problems(repo) == [
        "checkov: Dockerfiles/billing-app.Dockerfile: CKV_DOCKER_2 "
        "Ensure that HEALTHCHECK instructions have been added to container images"
    ]


def test_a_workload_without_its_skip_reason_is_reported_in_every_overlay(repo: Path) -> None:
    edit(repo / "base/rabbitmq/statefulset.yaml", "checkov.io/skip1:", "skip-reason-removed:")
    problems = scanners.policy_problems(repo)
    assert sorted(problems) == [
        f"checkov: overlays/{target}.yaml: StatefulSet.moviestream.rabbitmq: CKV_K8S_35 "
        "Prefer using secrets as files over secrets as environment variables"
        for target in ("cloud", "e2e", "vagrant")
    ]


def test_a_secret_beyond_the_baseline_is_reported_and_the_baseline_is_not(tmp_path: Path) -> None:
    shutil.copy(ROOT / scanners.BASELINE, tmp_path / scanners.BASELINE)
    (tmp_path / "devtools/stack").mkdir(parents=True)
    shutil.copy(ROOT / "devtools/stack/local_services.py", tmp_path / "devtools/stack/local_services.py")
    (tmp_path / "settings.py").write_text('DATABASE_PASSWORD = "q8Jz2LwX0vR4tY7nB1mC"\n')  # pragma: allowlist secret
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    assert scanners.secret_problems(tmp_path) == [
        "detect-secrets: settings.py:1: Secret Keyword (move a real secret out of git; "
        "after reading a false positive, `invoke secrets-baseline`)"
    ]


def test_a_workflow_finding_is_reported(repo: Path) -> None:
    edit(repo / ".github/workflows/e2e.yml", "    env:\n", "    env:\n      ACTIONS_ALLOW_UNSECURE_COMMANDS: true\n")
    problems = scanners.policy_problems(repo)
    assert problems
    assert all(p.startswith("checkov: .github/workflows/e2e.yml") and "CKV_GHA_1" in p for p in problems), problems


def test_promoted_image_tags_and_digests_are_not_secrets_but_a_key_beside_them_is(tmp_path: Path) -> None:
    """Every promotion writes new content hashes into an overlay; the scan must stay quiet for them alone."""
    shutil.copy(ROOT / scanners.BASELINE, tmp_path / scanners.BASELINE)
    (tmp_path / "overlays/vagrant").mkdir(parents=True)
    (tmp_path / "overlays/vagrant/kustomization.yaml").write_text(
        "images:\n"
        "  - name: api-gateway\n    newName: registry.moviestream.internal/moviestream/api-gateway\n"
        "    newTag: 9f3c1a7be42d\n"
        "  - name: billing-app\n    newName: docker.io/someone/billing-app\n"
        "    digest: sha256:5b0e3c9f1d7a4e6b8c2f0a1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1a3b5c7d9e1f\n"
        "  - name: inventory-app\n    newName: docker.io/someone/inventory-app\n"
        '    newTag: "1234567e8901"\n'  # pragma: allowlist secret
        "apiToken: 9f3c1a7be42d5b0e3c9f1d7a4e6b8c2f0a1d3e5f\n"  # pragma: allowlist secret
    )
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    problems = scanners.secret_problems(tmp_path)
    assert [problem.split(": ")[1] for problem in problems] == ["overlays/vagrant/kustomization.yaml:11"]
