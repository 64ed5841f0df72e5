"""`invoke promote`: image references written into an overlay as kustomize would, and committed once."""

from __future__ import annotations

import difflib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devtools import ROOT
from devtools.gitops.promotion import PromotionError, promote, round_trip
from devtools.testing.scratch_repo import commit_file, git, make_repository
from devtools.testing.tools import needs_tool

INVOKE = Path(sys.executable).parent / "invoke"
DIGEST = "sha256:" + "0123456789abcdef" * 4
LOCAL = "registry.moviestream.internal/moviestream"
OVERLAY = "overlays/vagrant"
KUSTOMIZATION = f"{OVERLAY}/kustomization.yaml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repository(tmp_path / "repo")


def images_of(repo: Path) -> dict[str, dict[str, str]]:
    document = yaml.safe_load((repo / KUSTOMIZATION).read_text())
    return {entry["name"]: {k: v for k, v in entry.items() if k != "name"} for entry in document["images"]}


def test_tags_and_digests_are_written_and_nothing_else_in_the_file_moves(repo: Path) -> None:
    before = (repo / KUSTOMIZATION).read_text()
    result = promote(
        OVERLAY,
        [f"inventory-app={LOCAL}/inventory-app:0a1b2c3d4e5f", f"api-gateway=docker.io/someone/api-gateway@{DIGEST}"],
        root=repo,
    )
    assert [image.service for image in result.changed] == ["inventory-app", "api-gateway"]
    assert result.commit is None
    assert images_of(repo) == {
        "api-gateway": {"newName": "docker.io/someone/api-gateway", "digest": DIGEST},
        "billing-app": {"newName": "docker.io/moviestream/billing-app", "newTag": "1.0.0"},
        "inventory-app": {"newName": f"{LOCAL}/inventory-app", "newTag": "0a1b2c3d4e5f"},
    }
    after = (repo / KUSTOMIZATION).read_text()
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    removed = [line[2:] for line in diff if line.startswith("- ")]
    added = [line[2:] for line in diff if line.startswith("+ ")]
    assert removed == [
        "    newName: docker.io/moviestream/api-gateway",
        "    newTag: 1.0.0",
        "    newName: docker.io/moviestream/inventory-app",
        "    newTag: 1.0.0",
    ]
    assert added == [
        "    newName: docker.io/someone/api-gateway",
        f"    digest: {DIGEST}",
        f"    newName: {LOCAL}/inventory-app",
        "    newTag: 0a1b2c3d4e5f",
    ]
    assert "# Written by the images workflow and the cluster's deployer" in after
    assert git(repo, "log", "--oneline").count("\n") == 0, "no commit without --commit"


@pytest.mark.parametrize(
    "kustomization",
    sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("**/kustomization.yaml") if ".venv" not in p.parts),
)
def test_every_kustomization_of_the_repository_is_written_back_byte_for_byte(kustomization: str) -> None:
    text = (ROOT / kustomization).read_text()
    yaml = round_trip(text)
    out = io.StringIO()
    yaml.dump(yaml.load(text), out)
    assert out.getvalue() == text


def test_a_tag_that_looks_like_a_number_stays_a_string(repo: Path) -> None:
    for tag in ("123456789012", "1234567e8901", "1.10"):
        promote(OVERLAY, [f"billing-app={LOCAL}/billing-app:{tag}"], root=repo)
        assert images_of(repo)["billing-app"]["newTag"] == tag


@needs_tool("kubectl")
def test_kustomize_renders_what_promote_wrote(tmp_path: Path) -> None:
    overlay = tmp_path / "overlays" / "x"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text("resources:\n  - deployment.yaml\n")
    (overlay / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\nspec:\n  template:\n    spec:\n"
        "      containers:\n        - name: b\n          image: billing-app\n        - name: g\n"
        "          image: api-gateway\n"
    )
    specs = [f"billing-app={LOCAL}/billing-app:123456789012", f"api-gateway=u/api-gateway@{DIGEST}"]
    promote("overlays/x", specs, root=tmp_path)
    rendered = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True)
    assert f"image: {LOCAL}/billing-app:123456789012" in rendered.stdout
    assert f"image: u/api-gateway@{DIGEST}" in rendered.stdout


def test_a_service_missing_from_the_list_and_a_missing_list_are_added(repo: Path) -> None:
    path = repo / KUSTOMIZATION
    path.write_text(path.read_text().split("# Written by")[0])
    promote(OVERLAY, [f"billing-app={LOCAL}/billing-app:abcdef1"], root=repo)
    assert images_of(repo) == {"billing-app": {"newName": f"{LOCAL}/billing-app", "newTag": "abcdef1"}}
    promote(OVERLAY, [f"api-gateway={LOCAL}/api-gateway:abcdef2"], root=repo)
    assert list(images_of(repo)) == ["billing-app", "api-gateway"]
    yaml.safe_load(path.read_text())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("inventory-app", "expected SERVICE=IMAGE:TAG or SERVICE=IMAGE@sha256:DIGEST"),
        ("inventory-app=", "expected SERVICE=IMAGE:TAG or SERVICE=IMAGE@sha256:DIGEST"),
        ("billing=x/billing:1.0.0", "unknown service 'billing'; choose from inventory-app, billing-app, api-gateway"),
        ("inventory-app=x/inventory-app", "the image needs a tag (NAME:TAG) or a digest"),
        ("inventory-app=localhost:5000/inventory-app", "the image needs a tag (NAME:TAG) or a digest"),
        ("inventory-app=x/inventory-app:latest", "'latest' can move"),
        ("inventory-app=x/inventory-app:main", "'main' can move"),
        ("inventory-app=x/inventory-app:1.0.0@" + DIGEST, "give a tag or a digest, not both"),
        ("inventory-app=x/inventory-app@sha256:abc", "is not a digest (sha256: and 64 lowercase hex digits)"),
        ("inventory-app=x/inventory-app@md5:" + "a" * 32, "is not a digest"),
        ("inventory-app=X/Inventory-App:1.0.0", "'X/Inventory-App' is not a valid image name"),
        ("inventory-app=x//inventory-app:1.0.0", "is not a valid image name"),
        ("inventory-app=x/inventory app:1.0.0", "is not a valid image name"),
        ("inventory-app=x/inventory-app:-1.0", "'-1.0' is not a valid tag"),
        ("inventory-app=x/inventory-app:" + "1" * 129, "is not a valid tag"),
    ],
)
def test_a_malformed_reference_is_refused_and_nothing_is_written(repo: Path, spec: str, message: str) -> None:
    before = (repo / KUSTOMIZATION).read_text()
    with pytest.raises(PromotionError, match=re.escape(message)):
        promote(OVERLAY, [f"api-gateway={LOCAL}/api-gateway:abcdef0", spec], root=repo)
    assert (repo / KUSTOMIZATION).read_text() == before


def test_nothing_given_twice_or_a_missing_overlay_is_refused(repo: Path) -> None:
    with pytest.raises(PromotionError, match="no image given"):
        promote(OVERLAY, [], root=repo)
    with pytest.raises(PromotionError, match="billing-app given more than once"):
        promote(OVERLAY, [f"billing-app={LOCAL}/billing-app:abcdef1", f"billing-app={LOCAL}/b:abcdef2"], root=repo)
    with pytest.raises(PromotionError, match=re.escape("overlays/cloud has no kustomization.yaml")):
        promote("overlays/cloud", [f"billing-app={LOCAL}/billing-app:abcdef1"], root=repo)
    with pytest.raises(PromotionError, match="is outside the repository"):
        promote("../..", [f"billing-app={LOCAL}/billing-app:abcdef1"], root=repo)


def test_commit_makes_one_commit_naming_the_images_and_the_source_and_a_second_run_none(repo: Path) -> None:
    source = commit_file(repo, "apps/billing-app/src/billing_app/queue.py", "q = 1\n")
    specs = [f"billing-app={LOCAL}/billing-app:abcdef1", f"inventory-app={LOCAL}/inventory-app:abcdef2"]
    result = promote(OVERLAY, specs, commit=True, root=repo)
    assert result.commit == git(repo, "rev-parse", "HEAD")
    assert git(repo, "rev-parse", "HEAD~1") == source
    assert git(repo, "log", "-1", "--format=%s") == (
        "Deploy images billing-app:abcdef1, inventory-app:abcdef2 to overlays/vagrant"
    )
    body = git(repo, "log", "-1", "--format=%b")
    assert f"Built from {source}." in body
    assert f"billing-app: {LOCAL}/billing-app:abcdef1" in body
    assert git(repo, "show", "--name-only", "--format=", "HEAD") == KUSTOMIZATION
    assert git(repo, "status", "--porcelain") == ""

    again = promote(OVERLAY, specs, commit=True, root=repo)
    assert again.changed == []
    assert again.commit is None
    assert git(repo, "rev-parse", "HEAD") == result.commit


def test_commit_names_only_what_changed_and_a_digest_shortly(repo: Path) -> None:
    promote(OVERLAY, [f"billing-app={LOCAL}/billing-app:abcdef1"], commit=True, root=repo)
    result = promote(
        OVERLAY,
        [f"billing-app={LOCAL}/billing-app:abcdef1", f"api-gateway=u/api-gateway@{DIGEST}"],
        commit=True,
        root=repo,
    )
    assert [image.service for image in result.changed] == ["api-gateway"]
    assert git(repo, "log", "-1", "--format=%s") == "Deploy images api-gateway@sha256:0123456789ab to overlays/vagrant"


def test_commit_leaves_other_work_alone_and_refuses_uncommitted_changes_to_the_overlay(repo: Path) -> None:
    (repo / "README.md").write_text("work in progress\n")
    git(repo, "add", "README.md")
    promote(OVERLAY, [f"billing-app={LOCAL}/billing-app:abcdef1"], commit=True, root=repo)
    assert git(repo, "show", "--name-only", "--format=", "HEAD") == KUSTOMIZATION
    assert git(repo, "status", "--porcelain") == "M  README.md"

    (repo / KUSTOMIZATION).write_text((repo / KUSTOMIZATION).read_text() + "# mine\n")
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(PromotionError, match=re.escape(f"{KUSTOMIZATION} has changes that are not committed")):
        promote(OVERLAY, [f"billing-app={LOCAL}/billing-app:abcdef2"], commit=True, root=repo)
    assert (repo / KUSTOMIZATION).read_text().endswith("# mine\n")
    assert "abcdef2" not in (repo / KUSTOMIZATION).read_text()
    assert git(repo, "rev-parse", "HEAD") == head


def test_the_invoke_task_prints_what_it_did_and_fails_clearly(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "repo", with_tasks=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(INVOKE), "promote", "--overlay", OVERLAY, *args],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    done = invoke("--image", f"api-gateway={LOCAL}/api-gateway:abcdef1", "--commit", "--source", "HEAD")
    assert done.returncode == 0, done.stderr
    assert f"api-gateway: {LOCAL}/api-gateway:abcdef1" in done.stdout
    assert f"committed {git(repo, 'rev-parse', 'HEAD')}" in done.stdout
    same = invoke("--image", f"api-gateway={LOCAL}/api-gateway:abcdef1", "--commit")
    assert same.returncode == 0
    assert "overlays/vagrant already names these images; nothing to do" in same.stdout
    bad = invoke("--image", "api-gateway=docker.io/u/api-gateway:latest")
    assert bad.returncode == 1
    assert "error: 'api-gateway=docker.io/u/api-gateway:latest': 'latest' can move" in bad.stderr
    assert "Traceback" not in bad.stderr
