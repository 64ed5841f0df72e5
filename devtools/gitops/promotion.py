"""Promotion: writing new image references into an overlay's kustomization, and committing them.

The same code runs wherever images are built: the GitHub images workflow (Docker Hub digests) and
the cluster's own deployer on the master VM (content tags in the local registry), both through
`invoke promote`. The file is edited as kustomize's `edit set image` would (newName with newTag or
digest), with ruamel.yaml's round trip, so its comments and order stay as they were.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.util import load_yaml_guess_indent

from devtools import ROOT
from devtools.gitops.image_tags import SERVICES
from devtools.gitops.manifest_rules import IMMUTABLE_TAG

# The distribution project's reference grammar (docker/distribution reference/regexp.go), in short.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?"
IMAGE_NAME = re.compile(rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^\w[\w.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
KUSTOMIZATION = "kustomization.yaml"


class PromotionError(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    """One service's new image: a name with either a tag or a digest."""

    service: str
    name: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"

    @property
    def short(self) -> str:
        """service:tag, or service@sha256:<first 12 digits>, for a commit subject."""
        return f"{self.service}@{self.digest[:19]}" if self.digest else f"{self.service}:{self.tag}"


@dataclass(frozen=True)
class Promotion:
    changed: list[Image]
    commit: str | None


def parse_image(spec: str) -> Image:
    """SERVICE=NAME:TAG or SERVICE=NAME@sha256:DIGEST, checked before anything is written."""
    service, equals, reference = spec.partition("=")
    if not equals or not reference:
        raise PromotionError(f"{spec!r}: expected SERVICE=IMAGE:TAG or SERVICE=IMAGE@sha256:DIGEST")
    if service not in SERVICES:
        raise PromotionError(f"{spec!r}: unknown service {service!r}; choose from {', '.join(SERVICES)}")
    name, at, digest = reference.partition("@")
    tag = None
    last_colon, last_slash = name.rfind(":"), name.rfind("/")
    if last_colon > last_slash:
        name, tag = name[:last_colon], name[last_colon + 1 :]
    if at and tag is not None:
        raise PromotionError(f"{spec!r}: give a tag or a digest, not both")
    if not at and tag is None:
        raise PromotionError(f"{spec!r}: the image needs a tag (NAME:TAG) or a digest (NAME@sha256:...)")
    if not IMAGE_NAME.match(name):
        raise PromotionError(f"{spec!r}: {name!r} is not a valid image name")
    if at and not DIGEST.match(digest):
        raise PromotionError(f"{spec!r}: {digest!r} is not a digest (sha256: and 64 lowercase hex digits)")
    if tag is not None and not TAG.match(tag):
        raise PromotionError(f"{spec!r}: {tag!r} is not a valid tag")
    if tag is not None and not IMMUTABLE_TAG.match(tag):
        raise PromotionError(f"{spec!r}: {tag!r} can move; use a version, a git SHA, a content tag or a digest")
    return Image(service, name, tag=tag, digest=digest or None)


def parse_images(specs: list[str]) -> list[Image]:
    if not specs:
        raise PromotionError("no image given: pass --image SERVICE=IMAGE:TAG (repeatable)")
    images = [parse_image(spec) for spec in specs]
    services = [image.service for image in images]
    repeated = sorted({service for service in services if services.count(service) > 1})
    if repeated:
        raise PromotionError(f"{', '.join(repeated)} given more than once")
    return images


def round_trip(text: str) -> YAML:
    """A YAML that writes `text` back byte for byte: its list indentation (`- ` at 0 or 2) is kept."""
    _, _, dash_offset = load_yaml_guess_indent(text)
    dash_offset = dash_offset or 0
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=dash_offset + 2, offset=dash_offset)
    return yaml


def _set_entry(entries: CommentedSeq, image: Image) -> bool:
    entry = next((item for item in entries if isinstance(item, dict) and item.get("name") == image.service), None)
    if entry is None:
        entry = CommentedMap(name=image.service)
        entries.append(entry)
    before = dict(entry)
    entry["newName"] = image.name
    # ruamel quotes a tag that would otherwise read back as a number (123456789012, 1e10, 1.10).
    value, drop = ("digest", "newTag") if image.digest else ("newTag", "digest")
    entry[value] = image.digest or image.tag
    entry.pop(drop, None)
    return dict(entry) != before


def write_images(kustomization: Path, images: list[Image]) -> list[Image]:
    """Set each image in the kustomization's `images:`; return those that changed."""
    text = kustomization.read_text()
    yaml = round_trip(text)
    document: Any = yaml.load(text)
    if not isinstance(document, dict) or document.get("kind", "Kustomization") != "Kustomization":
        raise PromotionError(f"{kustomization} is not a Kustomization")
    entries = document.get("images")
    if entries is None:
        entries = document["images"] = CommentedSeq()
    if not isinstance(entries, list):
        raise PromotionError(f"{kustomization}: `images` is not a list")
    changed = [image for image in images if _set_entry(entries, image)]
    if changed:
        out = io.StringIO()
        yaml.dump(document, out)
        with tempfile.NamedTemporaryFile("w", dir=kustomization.parent, delete=False) as handle:
            handle.write(out.getvalue())
        os.chmod(handle.name, kustomization.stat().st_mode & 0o777)
        os.replace(handle.name, kustomization)
    return changed


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PromotionError(f"git {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout.strip()


def kustomization_of(overlay: str, root: Path = ROOT) -> Path:
    path = (root / overlay).resolve() / KUSTOMIZATION
    if not path.is_relative_to(root.resolve()):
        raise PromotionError(f"{overlay} is outside the repository")
    if not path.is_file():
        raise PromotionError(f"{overlay} has no {KUSTOMIZATION}")
    return path


def promote(
    overlay: str, specs: list[str], *, commit: bool = False, source: str = "HEAD", root: Path = ROOT
) -> Promotion:
    """Write the images into `overlay`; with `commit`, commit the file alone, and only if it changed."""
    images = parse_images(specs)
    kustomization = kustomization_of(overlay, root)
    relative = kustomization.relative_to(root.resolve()).as_posix()
    source_commit = ""
    if commit:
        source_commit = _git(root, "rev-parse", "--verify", "--quiet", f"{source}^{{commit}}")
        if _git(root, "status", "--porcelain", "--", relative):
            raise PromotionError(f"{relative} has changes that are not committed; commit or stash them first")
    changed = write_images(kustomization, images)
    if not (commit and changed):
        return Promotion(changed, None)
    overlay_name = kustomization.parent.relative_to(root.resolve()).as_posix()
    subject = f"Deploy images {', '.join(image.short for image in changed)} to {overlay_name}"
    body = f"Built from {source_commit}.\n\n" + "\n".join(f"{i.service}: {i.reference}" for i in changed)
    _git(root, "commit", "--quiet", "-m", subject, "-m", body, "--", relative)
    return Promotion(changed, _git(root, "rev-parse", "HEAD"))
