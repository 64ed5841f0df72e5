"""The three service images and their content tags: a hash of exactly what each image is built from.

A service's tag changes when its Dockerfile, its own code, the shared package, the lock (or the
script that reads it) or .dockerignore change at a commit, and only then: a README edit or a change under a
service's tests/ (which .dockerignore keeps out of the build context) builds nothing new. The tag
is the first 12 hex digits of a SHA-256 over the git tree entries (mode, blob id, path) of those
paths, so it names the content, can never mean two builds, and passes the lint's immutable-tag rule.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from devtools import ROOT

SERVICES = ("inventory-app", "billing-app", "api-gateway")
# What the build context of Dockerfiles/<service>.Dockerfile takes from the repository.
IMAGE_CONTENT = (
    "Dockerfiles/{service}.Dockerfile",
    ".dockerignore",
    "requirements",
    "devtools/gitops/lockfile.py",
    "apps/common",
    "apps/{service}",
)
# .dockerignore keeps each package's tests out of the build context.
NOT_IN_IMAGE = re.compile(r"^apps/[^/]+/tests/")
TAG_LENGTH = 12


class ImageTagError(RuntimeError):
    pass


def _tree_entries(rev: str, paths: list[str], root: Path) -> list[tuple[str, str]]:
    """(entry, path) for every file under `paths` at `rev`; entry is git's "mode type blob"."""
    result = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--full-tree", rev, "--", *paths],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ImageTagError(f"git cannot read {rev!r}: {result.stderr.strip()}")
    entries = []
    for record in filter(None, result.stdout.split("\0")):
        entry, path = record.split("\t", 1)
        entries.append((entry, path))
    return entries


def content_tag(service: str, rev: str = "HEAD", root: Path = ROOT) -> str:
    """The tag of `service`'s image built from `rev`."""
    if service not in SERVICES:
        raise ImageTagError(f"unknown service {service!r}; choose from {', '.join(SERVICES)}")
    paths = [pattern.format(service=service) for pattern in IMAGE_CONTENT]
    entries = [(entry, path) for entry, path in _tree_entries(rev, paths, root) if not NOT_IN_IMAGE.match(path)]
    for required in (f"Dockerfiles/{service}.Dockerfile", f"apps/{service}/"):
        if not any(path == required or path.startswith(required) for _, path in entries):
            raise ImageTagError(f"{rev} has no {required.rstrip('/')}: cannot tag the {service} image")
    digest = hashlib.sha256()
    for entry, path in entries:
        digest.update(f"{entry}\t{path}\0".encode())
    return digest.hexdigest()[:TAG_LENGTH]


def content_tags(rev: str = "HEAD", root: Path = ROOT) -> dict[str, str]:
    """Every service's content tag at `rev`."""
    return {service: content_tag(service, rev, root) for service in SERVICES}
