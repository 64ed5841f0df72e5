"""Content tags: a service's image tag changes exactly when what its image is built from changes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import ROOT
from devtools.gitops import image_tags
from devtools.gitops.image_tags import SERVICES, ImageTagError, content_tag, content_tags
from devtools.gitops.manifest_rules import IMMUTABLE_TAG
from devtools.testing.scratch_repo import commit_file, git, make_repository

INVOKE = Path(sys.executable).parent / "invoke"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repository(tmp_path / "repo")


def changed_services(repo: Path, relative: str, text: str) -> set[str]:
    before = content_tags("HEAD", repo)
    commit_file(repo, relative, text)
    after = content_tags("HEAD", repo)
    return {service for service in SERVICES if before[service] != after[service]}


def test_tags_are_twelve_hex_digits_that_pass_the_immutable_tag_rule_and_do_not_move(repo: Path) -> None:
    tags = content_tags("HEAD", repo)
    assert set(tags) == set(SERVICES)
    assert len(set(tags.values())) == 3
    for tag in tags.values():
        assert len(tag) == 12
        assert IMMUTABLE_TAG.match(tag)
    assert content_tags("HEAD", repo) == tags


@pytest.mark.parametrize("service", SERVICES)
def test_a_change_to_a_service_or_its_dockerfile_changes_only_its_tag(repo: Path, service: str) -> None:
    module = service.replace("-", "_")
    assert changed_services(repo, f"apps/{service}/src/{module}/api.py", "x = 1\n") == {service}
    assert changed_services(repo, f"Dockerfiles/{service}.Dockerfile", "FROM python:3.11.14-slim\n") == {service}


@pytest.mark.parametrize(
    "relative",
    [
        "apps/common/src/moviestream_common/db.py",
        "requirements/lock.txt",
        "devtools/gitops/lockfile.py",
        ".dockerignore",
    ],
)
def test_a_change_to_what_every_image_holds_changes_every_tag(repo: Path, relative: str) -> None:
    assert changed_services(repo, relative, "changed\n") == set(SERVICES)


@pytest.mark.parametrize(
    "relative",
    [
        "README.md",
        "apps/inventory-app/tests/test_more.py",
        "apps/common/tests/test_common.py",
        "overlays/vagrant/kustomization.yaml",
        "tests/test_anything.py",
        "Dockerfiles/README.md",
    ],
)
def test_a_change_outside_the_images_changes_no_tag(repo: Path, relative: str) -> None:
    assert changed_services(repo, relative, "# changed\n") == set()


def test_a_file_made_executable_changes_the_tag(repo: Path) -> None:
    before = content_tag("billing-app", "HEAD", repo)
    git(repo, "update-index", "--chmod=+x", "apps/billing-app/pyproject.toml")
    git(repo, "commit", "-q", "-m", "executable")
    assert content_tag("billing-app", "HEAD", repo) != before


def test_tags_are_read_from_the_commit_not_the_work_tree(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    tags = content_tags(first, repo)
    commit_file(repo, "apps/api-gateway/src/api_gateway/app.py", "y = 2\n")
    (repo / "apps" / "inventory-app" / "pyproject.toml").write_text("uncommitted\n")
    assert content_tags(first, repo) == tags
    assert content_tag("inventory-app", "HEAD", repo) == tags["inventory-app"]


def test_an_unknown_revision_a_missing_service_or_an_unknown_name_is_refused(repo: Path) -> None:
    with pytest.raises(ImageTagError, match="git cannot read 'no-such-rev'"):
        content_tags("no-such-rev", repo)
    git(repo, "rm", "-q", "-r", "apps/billing-app")
    git(repo, "commit", "-q", "-m", "no billing")
    with pytest.raises(ImageTagError, match="has no apps/billing-app: cannot tag the billing-app image"):
        content_tags("HEAD", repo)
    with pytest.raises(ImageTagError, match="unknown service 'billing'"):
        content_tag("billing", "HEAD", repo)


def test_invoke_image_tags_prints_them_as_lines_or_json(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "repo", with_tasks=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(INVOKE), "image-tags", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
        )

    as_json = run("--as-json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == content_tags("HEAD", repo)
    lines = run().stdout.splitlines()
    assert lines == [f"{service:<14} {tag}" for service, tag in content_tags("HEAD", repo).items()]
    refused = run("--rev", "nowhere")
    assert refused.returncode == 1
    assert "error: git cannot read 'nowhere'" in refused.stderr


def test_every_file_a_dockerfile_copies_from_the_repository_moves_the_tag() -> None:
    """The tag covers the build context: each COPY source of every Dockerfile is one of its inputs."""
    for service in image_tags.SERVICES:
        inputs = [pattern.format(service=service) for pattern in image_tags.IMAGE_CONTENT]
        dockerfile = (ROOT / "Dockerfiles" / f"{service}.Dockerfile").read_text()
        copies = re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.MULTILINE)
        assert copies, service
        for line in copies:
            for source in line.split()[:-1]:
                assert any(source == path or source.startswith(path + "/") for path in inputs), (service, source)
