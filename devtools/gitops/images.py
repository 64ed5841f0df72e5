"""Building and pushing the three service images with the Docker SDK, tagged with the short git SHA."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, DockerException

from devtools import ROOT
from devtools.gitops.image_tags import SERVICES


class ImageError(RuntimeError):
    pass


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def git_tag(root: Path = ROOT) -> str:
    """The short SHA of HEAD; `-dirty` when the work tree has changes, so no tag names two builds."""
    sha = _git(root, "rev-parse", "--short=12", "HEAD")
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if dirty else sha


def repository(user: str, service: str) -> str:
    if not user:
        raise ImageError("no Docker Hub user: pass --user or set DOCKERHUB_USERNAME")
    return f"{user}/{service}"


def client() -> docker.DockerClient:
    try:
        engine = docker.from_env()
        engine.ping()
    except DockerException as exc:
        raise ImageError(
            f"no Docker engine answers ({exc}); start Docker, or set DOCKER_HOST to one that runs"
        ) from None
    return engine


def build(services: Iterable[str], user: str, tag: str, log: Callable[[str], None] = print) -> list[str]:
    names = {service: f"{repository(user, service)}:{tag}" for service in services}
    engine = client()
    built = []
    for service, name in names.items():
        log(f"building {name}")
        try:
            engine.images.build(
                path=str(ROOT), dockerfile=f"Dockerfiles/{service}.Dockerfile", tag=name, rm=True, pull=True
            )
        except (BuildError, APIError) as exc:
            raise ImageError(f"building {name} failed: {exc}") from None
        built.append(name)
    return built


def push(services: Iterable[str], user: str, tag: str, log: Callable[[str], None] = print) -> list[str]:
    names = [repository(user, service) for service in services]
    engine = client()
    pushed = []
    for name in names:
        log(f"pushing {name}:{tag}")
        for line in engine.images.push(name, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise ImageError(f"pushing {name}:{tag} failed: {line['error']} (docker login first?)")
        pushed.append(f"{name}:{tag}")
    return pushed


def check_services(services: Iterable[str]) -> list[str]:
    chosen = list(services) or list(SERVICES)
    unknown = [service for service in chosen if service not in SERVICES]
    if unknown:
        raise ImageError(f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    return chosen
