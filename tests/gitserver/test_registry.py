"""The image registry as on the master: distribution (Debian's and Ubuntu's docker-registry package)
with the configuration provisioning renders, behind nginx's read-only site.

An OCI image (a config blob and its manifest, as buildah pushes by default) goes in on loopback;
the deployer's check finds it by tag; a node pulls it through nginx the way K3s' containerd does,
and cannot push or delete there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import ROOT
from devtools.testing.tools import needs_tool
from devtools.waiting import wait_for

from .conftest import Server, listening, nginx_serving

pytestmark = needs_tool("docker-registry")
REPOSITORY = "moviestream/inventory-app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def registry(server: Server, tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "registry.yml"
    config.write_text(server.step("render", "registry.yml"))
    storage = {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "storage")}
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        env=os.environ | storage,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: listening(server.registry_upstream_port), timeout=15, what="docker-registry")
        yield f"http://127.0.0.1:{server.registry_upstream_port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _request(url: str, method: str = "GET", data: bytes | None = None, **headers: str) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def push_image(base: str, tag: str) -> bytes:
    """What a push does over the registry API: the config blob, then the manifest naming it."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    blob = config.encode()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    status, headers, _ = _request(f"{base}/v2/{REPOSITORY}/blobs/uploads/", method="POST")
    assert status == 202
    location = headers["Location"]
    separator = "&" if "?" in location else "?"
    upload = location if location.startswith("http") else base + location
    status, _, _ = _request(
        f"{upload}{separator}digest={digest}", method="PUT", data=blob, **{"Content-Type": "application/octet-stream"}
    )
    assert status == 201
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": len(blob)},
            "layers": [],
        }
    ).encode()
    status, _, body = _request(
        f"{base}/v2/{REPOSITORY}/manifests/{tag}", method="PUT", data=manifest, **{"Content-Type": OCI_MANIFEST}
    )
    assert status == 201, body
    return manifest


def _deployer_build(server: Server, registry: str):
    spec = importlib.util.spec_from_file_location("deployer", ROOT / "scripts" / "gitserver" / "deployer.py")
    assert spec
    assert spec.loader
    deployer = importlib.util.module_from_spec(spec)
    sys.modules["deployer"] = deployer
    spec.loader.exec_module(deployer)
    config = deployer.Config(
        repository=server.repository, spool=server.root, state=server.root, logs=server.root,
        registry=registry.removeprefix("http://"), image_prefix="registry.moviestream.internal/moviestream",
        overlay="overlays/vagrant", python=sys.executable,
    )  # fmt: skip
    return deployer.Build(config, "0" * 40)


def test_the_deployer_finds_an_image_buildah_pushed_by_its_tag(server: Server, registry: str) -> None:
    build = _deployer_build(server, registry)
    with (server.root / "check.log").open("w") as build.log:
        assert build.in_registry("inventory-app", "0a1b2c3d4e5f") is False
        push_image(registry, "0a1b2c3d4e5f")
        assert build.in_registry("inventory-app", "0a1b2c3d4e5f") is True
        assert build.in_registry("billing-app", "0a1b2c3d4e5f") is False


@needs_tool("nginx")
@needs_tool("fcgiwrap")
def test_the_nodes_pull_through_nginx_and_cannot_push_or_delete(server: Server, registry: str, tmp_path: Path) -> None:
    manifest = push_image(registry, "0a1b2c3d4e5f")
    with nginx_serving(server, tmp_path / "nginx"):
        mirror = f"http://127.0.0.1:{server.registry_port}/v2/{REPOSITORY}"
        # containerd asks the mirror with the upstream's name in ?ns=, and the manifest types it takes.
        status, headers, body = _request(
            f"{mirror}/manifests/0a1b2c3d4e5f?ns=registry.moviestream.internal", Accept=OCI_MANIFEST
        )
        assert status == 200
        assert body == manifest
        assert headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
        config_digest = json.loads(manifest)["config"]["digest"]
        assert _request(f"{mirror}/blobs/{config_digest}")[0] == 200
        assert _request(f"{mirror}/manifests/0a1b2c3d4e5f", method="HEAD", Accept=OCI_MANIFEST)[0] == 200

        assert _request(f"{mirror}/blobs/uploads/", method="POST")[0] == 403
        assert (
            _request(f"{mirror}/manifests/other", method="PUT", data=manifest, **{"Content-Type": OCI_MANIFEST})[0]
            == 403
        )
        assert _request(f"{mirror}/manifests/0a1b2c3d4e5f", method="DELETE")[0] == 403
    assert _request(f"{registry}/v2/{REPOSITORY}/manifests/other")[0] == 404, "nothing got through"
    assert _request(f"{registry}/v2/{REPOSITORY}/manifests/0a1b2c3d4e5f", method="DELETE")[0] == 405, (
        "deleting is off in the registry itself"
    )
