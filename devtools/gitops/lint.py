"""`invoke lint`: yamllint, a kustomize build of every kustomization, strict schema validation
against the Kubernetes version the cluster pins, the project's manifest rules, and the offline
checks of the workflows and Dockerfiles."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from devtools.gitops import cluster_model
from devtools.gitops import manifest_rules as rules
from devtools.gitops.ci_checks import ci_problems
from devtools.gitops.manifests import (
    ROOT,
    Rendered,
    RenderError,
    kustomization_dirs,
    remote_resources,
    render,
    yaml_files,
)

VERSIONS_FILE = ROOT / "clusters" / "vagrant" / "versions.env"
CRD_SCHEMAS = {
    ("bitnami.com/v1alpha1", "SealedSecret"): "sealedsecret.yaml",
    ("argoproj.io/v1alpha1", "Application"): "application.yaml",
    ("argoproj.io/v1alpha1", "AppProject"): "appproject.yaml",
}


def kubernetes_version(versions_file: Path = VERSIONS_FILE) -> str:
    """The schema version for the pinned K3s release: v1.34.12+k3s1 -> 1.34.0."""
    text = versions_file.read_text()
    match = re.search(r"^K3S_VERSION=v(\d+)\.(\d+)\.\d+\+k3s\d+$", text, re.MULTILINE)
    if not match:
        raise ValueError(f"{versions_file}: no K3S_VERSION=vX.Y.Z+k3sN line")
    return f"{match[1]}.{match[2]}.0"


@cache
def _crd_schema(filename: str) -> dict[str, Any]:
    return yaml.safe_load((Path(__file__).parent / "crd_schemas" / filename).read_text())


def _where(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def schema_problems(objects: Iterable[Rendered], version: str) -> list[str]:
    problems = []
    for item in objects:
        key = (item.obj.get("apiVersion"), item.kind)
        if key in CRD_SCHEMAS:
            validator = jsonschema.Draft202012Validator(_crd_schema(CRD_SCHEMAS[key]))
            problems += [
                f"{item}: {_where(error.absolute_path)}: {error.message}" for error in validator.iter_errors(item.obj)
            ]
            continue
        try:
            kubernetes_validate.validate(item.obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{item}: {_where(error.absolute_path)}: {error.message} (Kubernetes {version} schema)")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{item}: no schema for {key[0]} {key[1]} in Kubernetes {version}")
    return problems


def yamllint_problems(paths: Iterable[Path], root: Path = ROOT) -> list[str]:
    config = YamlLintConfig(file=str(root / ".yamllint.yaml"))
    problems = []
    for path in paths:
        relative = path.relative_to(root)
        if config.is_file_ignored(str(relative)):
            continue
        for problem in linter.run(path.read_text(), config, str(relative)):
            problems.append(f"{relative}:{problem.line}:{problem.column}: {problem.desc} ({problem.rule or 'syntax'})")
    return problems


DEPLOYED_STACKS = re.compile(r"^clusters/[^/]+/observability$")


def is_target(source: str) -> bool:
    """A kustomization that a cluster deploys as a whole: an overlay, or a cluster's observability stack."""
    return source.startswith("overlays/") or bool(DEPLOYED_STACKS.match(source))


def rule_problems(source: str, objects: list[Rendered]) -> list[str]:
    if source.startswith("overlays/"):
        selected = rules.TARGET_RULES
    elif is_target(source):
        selected = rules.DEPLOYED_RULES
    elif source.startswith("base"):
        # Bases leave image names and tags to the overlays.
        selected = [rule for rule in rules.UNIVERSAL_RULES if rule is not rules.images_are_immutable]
    else:
        selected = rules.UNIVERSAL_RULES
    problems = [problem for rule in selected for problem in rule(objects)]
    return problems + rules.charts_are_pinned(objects)


def lint(root: Path = ROOT, log: Any = print, *, allow_remote: bool = False) -> list[str]:
    """Every problem found, each naming its file or object; an empty list means clean.

    allow_remote renders kustomizations that build on remote URLs too (it needs the network).
    """
    files = yaml_files(root)
    problems = yamllint_problems(files, root) + rules.secrets_in_files(files, root)
    log(f"yamllint: {len(files)} files")
    version = kubernetes_version(root / "clusters" / "vagrant" / "versions.env")
    remote: dict[str, list[str]] = {}
    rendered: dict[Path, list[Rendered]] = {}

    def render_once(directory: Path) -> list[Rendered]:
        if directory.resolve() not in rendered:
            rendered[directory.resolve()] = render(directory, root)
        return rendered[directory.resolve()]

    for directory in kustomization_dirs(root):
        source = str(directory.relative_to(root))
        urls = remote_resources(directory)
        if urls:
            remote[source] = urls
        if urls and not allow_remote:
            log(f"skip  {source}: needs the network for {len(urls)} remote resource(s); checked for pinning")
            continue
        try:
            objects = render_once(directory)
        except RenderError as error:
            problems.append(str(error))
            continue
        found = schema_problems(objects, version) + rule_problems(source, objects)
        log(f"{'ok  ' if not found else 'FAIL'}  {source}: {len(objects)} objects")
        problems += found
    problems += rules.remote_references_are_pinned(remote) + rules.dashboards_are_provisioned(root)
    found = cluster_model.problems(root, allow_remote=allow_remote, renderer=render_once)
    log(f"{'ok  ' if not found else 'FAIL'}  clusters as Argo CD syncs them (waves, namespaces, projects)")
    problems += found
    found = ci_problems(root)
    status = "ok  " if not found else "FAIL"
    log(f"{status}  workflows, Dependabot, Dockerfiles (schemas, pinning, permissions, hadolint)")
    return problems + found
