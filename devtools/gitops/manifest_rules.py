"""The project's rules for what may be deployed, checked over rendered manifests.

Each rule takes the rendered objects of one target (an overlay) and returns
one message per violation, naming the object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from devtools.gitops.manifests import Rendered

# component -> (kind, container port); the HPA column is HPA_BOUNDS
COMPONENTS = {
    "inventory-db": ("StatefulSet", 5432),
    "billing-db": ("StatefulSet", 5432),
    "rabbitmq": ("StatefulSet", 5672),
    "inventory-app": ("Deployment", 8080),
    "billing-app": ("StatefulSet", 8080),
    "api-gateway": ("Deployment", 3000),
}
HPA_BOUNDS = {"inventory-app": (1, 3, 60), "api-gateway": (1, 3, 60)}
CREDENTIAL_NAME = re.compile(r"PASS(WORD)?|SECRET|TOKEN|PRIVATE|API_?KEY|CREDENTIAL|(^|_)USER(NAME)?$", re.IGNORECASE)
IMMUTABLE_TAG = re.compile(r"^(v?\d+(\.\d+){1,2}([-.][0-9A-Za-z.]+)?|sha-[0-9a-f]{7,40}|[0-9a-f]{7,40})$")
PINNED_REF = re.compile(r"(\?ref=|/download/|/)v?\d+\.\d+\.\d+(/|$|[?&])")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}

Rule = Callable[[list[Rendered]], list[str]]


def _pod_spec(item: Rendered) -> dict[str, Any]:
    spec = item.obj.get("spec") or {}
    if item.kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def _containers(item: Rendered) -> Iterator[dict[str, Any]]:
    pod = _pod_spec(item)
    yield from pod.get("initContainers") or []
    yield from pod.get("containers") or []


def _workloads(objects: Iterable[Rendered]) -> Iterator[Rendered]:
    return (item for item in objects if item.kind in WORKLOADS)


def components_match_the_table(objects: list[Rendered]) -> list[str]:
    problems = []
    workloads = {item.name: item for item in _workloads(objects)}
    for name, (kind, port) in COMPONENTS.items():
        item = workloads.get(name)
        if item is None:
            problems.append(f"{name}: missing (expected a {kind})")
            continue
        if item.kind != kind:
            problems.append(f"{item}: must be a {kind}")
        ports = {p.get("containerPort") for c in _containers(item) for p in c.get("ports") or []}
        if port not in ports:
            problems.append(f"{item}: must expose container port {port} (has {sorted(ports)})")
    return problems


def autoscalers_have_their_bounds(objects: list[Rendered]) -> list[str]:
    problems = []
    hpas = {item.name: item for item in objects if item.kind == "HorizontalPodAutoscaler"}
    for name, (minimum, maximum, cpu) in HPA_BOUNDS.items():
        item = hpas.get(name)
        if item is None:
            problems.append(f"HorizontalPodAutoscaler/{name}: missing")
            continue
        spec = item.obj.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        if (target.get("kind"), target.get("name")) != ("Deployment", name):
            problems.append(f"{item}: must scale Deployment/{name}, scales {target.get('kind')}/{target.get('name')}")
        if spec.get("minReplicas") != minimum or spec.get("maxReplicas") != maximum:
            problems.append(
                f"{item}: replicas must be {minimum} to {maximum}, "
                f"are {spec.get('minReplicas')} to {spec.get('maxReplicas')}"
            )
        utilisation = [
            m["resource"]["target"].get("averageUtilization")
            for m in spec.get("metrics") or []
            if m.get("type") == "Resource" and m.get("resource", {}).get("name") == "cpu"
        ]
        if utilisation != [cpu]:
            problems.append(f"{item}: must target {cpu}% CPU, targets {utilisation or 'no CPU'}")
    return problems


def autoscaled_deployments_leave_replicas_alone(objects: list[Rendered]) -> list[str]:
    scaled = {
        (item.obj["spec"]["scaleTargetRef"].get("kind"), item.obj["spec"]["scaleTargetRef"].get("name"))
        for item in objects
        if item.kind == "HorizontalPodAutoscaler"
    }
    return [
        f"{item}: sets spec.replicas, but a HorizontalPodAutoscaler owns it"
        for item in _workloads(objects)
        if (item.kind, item.name) in scaled and "replicas" in (item.obj.get("spec") or {})
    ]


def no_plaintext_secrets(objects: list[Rendered]) -> list[str]:
    return [
        f"{item}: a Secret with data in git; seal it (invoke seal-secrets)"
        for item in objects
        if item.kind == "Secret" and (item.obj.get("data") or item.obj.get("stringData"))
    ]


def _names_a_file(env: dict[str, Any]) -> bool:
    """POSTGRES_PASSWORD_FILE=/run/secrets/... names where the credential is mounted, not the credential."""
    return env.get("name", "").endswith("_FILE") and str(env.get("value", "")).startswith("/")


def no_credential_literals(objects: list[Rendered]) -> list[str]:
    problems = []
    for item in _workloads(objects):
        for container in _containers(item):
            for env in container.get("env") or []:
                if "value" in env and CREDENTIAL_NAME.search(env.get("name", "")) and not _names_a_file(env):
                    problems.append(
                        f"{item}: container {container.get('name')} sets {env['name']} as a literal; "
                        "read it from a Secret (valueFrom.secretKeyRef)"
                    )
    for item in objects:
        if item.kind == "ConfigMap":
            for key in item.obj.get("data") or {}:
                if CREDENTIAL_NAME.search(key):
                    problems.append(f"{item}: holds {key}; credentials belong in a SealedSecret")
    return problems


def images_are_immutable(objects: list[Rendered]) -> list[str]:
    problems = []
    for item in _workloads(objects):
        for container in _containers(item):
            image = container.get("image", "")
            if "@sha256:" in image:
                continue
            tag = image.rpartition(":")[2] if ":" in image.split("/")[-1] else ""
            if not IMMUTABLE_TAG.match(tag):
                problems.append(
                    f"{item}: image {image!r} needs an immutable tag (a version or a git SHA, never latest)"
                )
    return problems


def containers_are_hardened_and_sized(objects: list[Rendered]) -> list[str]:
    problems = []
    for item in _workloads(objects):
        pod = _pod_spec(item)
        pod_security = pod.get("securityContext") or {}
        for container in _containers(item):
            where = f"{item}: container {container.get('name')}"
            security = container.get("securityContext") or {}
            resources = container.get("resources") or {}
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources.get(bound) or {}):
                        problems.append(f"{where} has no {resource} {bound[:-1]}")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in container:
                    problems.append(f"{where} has no {probe}")
            if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
                problems.append(f"{where} may run as root (set runAsNonRoot)")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where} must set allowPrivilegeEscalation: false")
            if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where} must drop ALL capabilities")
            seccomp = (security.get("seccompProfile") or pod_security.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                problems.append(f"{where} must use the RuntimeDefault seccomp profile")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where} must have a read-only root filesystem")
    return problems


def secret_references_resolve(objects: list[Rendered]) -> list[str]:
    """Every secretKeyRef and secret volume names a SealedSecret of the same target that holds its keys."""
    sealed = {}
    for item in objects:
        if item.kind == "SealedSecret":
            template = (item.obj.get("spec") or {}).get("template") or {}
            meta = template.get("metadata") or {}
            if (meta.get("name"), meta.get("namespace")) != (item.name, item.obj["metadata"].get("namespace")):
                return [f"{item}: its template must produce a Secret of the same name and namespace"]
            sealed[item.name] = set((item.obj.get("spec") or {}).get("encryptedData") or {})
    if not sealed:
        return []
    problems = []
    for item in _workloads(objects):
        for container in _containers(item):
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref.get("key") not in sealed.get(ref.get("name"), set()):
                    problems.append(
                        f"{item}: {env['name']} reads {ref.get('name')}/{ref.get('key')}, which no SealedSecret holds"
                    )
        problems += _secret_volume_problems(item, sealed)
    return problems


def _secret_volume_problems(item: Rendered, sealed: dict[str, set[str]]) -> list[str]:
    problems = []
    for volume in _pod_spec(item).get("volumes") or []:
        source = volume.get("secret")
        if source is None:
            continue
        where, name = f"{item}: volume {volume.get('name')} mounts", source.get("secretName")
        if name not in sealed:
            problems.append(f"{where} Secret {name}, which no SealedSecret makes")
            continue
        for key in [entry.get("key") for entry in source.get("items") or []]:
            if key not in sealed[name]:
                problems.append(f"{where} {name}/{key}, which no SealedSecret holds")
    return problems


def rabbitmq_alarm_follows_its_limit(objects: list[Rendered]) -> list[str]:
    """RabbitMQ is told its container's memory limit, so its memory alarm fires before the OOM killer."""
    problems = []
    for item in _workloads(objects):
        for container in _containers(item):
            if container.get("name") != "rabbitmq":
                continue
            env = {entry.get("name"): entry for entry in container.get("env") or []}
            field = ((env.get("RABBITMQ_MEMORY_LIMIT") or {}).get("valueFrom") or {}).get("resourceFieldRef") or {}
            args = str((env.get("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS") or {}).get("value", ""))
            if field.get("resource") != "limits.memory" or (
                "total_memory_available_override_value $(RABBITMQ_MEMORY_LIMIT)" not in args
            ):
                problems.append(
                    f"{item}: RabbitMQ must get its memory limit (RABBITMQ_MEMORY_LIMIT from limits.memory) as "
                    "total_memory_available_override_value, or it sizes its alarm from the node's RAM"
                )
    return problems


READ_VERBS = {"get", "list", "watch"}


def cluster_roles_only_read(objects: list[Rendered]) -> list[str]:
    """What we grant cluster-wide (collectors, Headlamp's viewer) reads, names what it reads, and never Secrets."""
    problems = []
    for item in objects:
        if item.kind != "ClusterRole":
            continue
        for rule in item.obj.get("rules") or []:
            verbs, resources = set(rule.get("verbs") or []), set(rule.get("resources") or [])
            if not verbs <= READ_VERBS:
                problems.append(f"{item}: may {', '.join(sorted(verbs - READ_VERBS))}; only get, list and watch")
            if "*" in resources or "*" in (rule.get("apiGroups") or []) or rule.get("nonResourceURLs"):
                problems.append(f"{item}: names a wildcard or URLs; list the resources it reads")
            if resources & {"secrets", "serviceaccounts/token", "pods/exec", "pods/attach", "pods/portforward"}:
                problems.append(f"{item}: reads secrets or acts in pods ({', '.join(sorted(resources))})")
    return problems


PLACEHOLDERS = {
    "REPO_URL",
    "REPO_REVISION",
    "clusters/CLUSTER/argocd",
    "clusters/CLUSTER/sealed-secrets",
    "clusters/CLUSTER/apps",
    "clusters/CLUSTER/observability",
    "overlays/CLUSTER",
}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def placeholders_are_filled(objects: list[Rendered]) -> list[str]:
    """clusters/platform/cluster-settings fills them in from a cluster's settings; none may reach a cluster."""
    return [
        f"{item}: {value} is not filled in (include ../settings and clusters/platform/cluster-settings)"
        for item in objects
        for value in sorted(set(_strings(item.obj)) & PLACEHOLDERS)
    ]


# Rules for everything a cluster deploys as a whole (an overlay, an observability stack).
DEPLOYED_RULES: list[Rule] = [
    autoscaled_deployments_leave_replicas_alone,
    cluster_roles_only_read,
    no_plaintext_secrets,
    no_credential_literals,
    images_are_immutable,
    containers_are_hardened_and_sized,
    secret_references_resolve,
    rabbitmq_alarm_follows_its_limit,
]
# The workload's overlays: the above, and the exercise's components and autoscalers.
TARGET_RULES: list[Rule] = [components_match_the_table, autoscalers_have_their_bounds, *DEPLOYED_RULES]
# Rules that hold for everything rendered, targets or not (clusters/ included).
UNIVERSAL_RULES: list[Rule] = [
    no_plaintext_secrets,
    no_credential_literals,
    images_are_immutable,
    placeholders_are_filled,
]


def secrets_in_files(paths: Iterable[Path], root: Path) -> list[str]:
    """No YAML file in git, rendered or not, holds a Secret with data."""
    problems = []
    for path in paths:
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # yamllint reports it
        for document in documents:
            is_secret = isinstance(document, dict) and document.get("kind") == "Secret"
            if is_secret and (document.get("data") or document.get("stringData")):
                name = (document.get("metadata") or {}).get("name")
                problems.append(f"{path.relative_to(root)}: Secret/{name} holds data; seal it (invoke seal-secrets)")
    return problems


def dashboards_are_provisioned(root: Path) -> list[str]:
    """Every base/grafana/dashboards/*.json is valid JSON and in Grafana's dashboards ConfigMap, which lists files."""
    base = root / "base" / "grafana"
    if not base.is_dir():
        return []
    generators = (yaml.safe_load((base / "kustomization.yaml").read_text()) or {}).get("configMapGenerator") or []
    listed = {
        str(name).partition("=")[2] or str(name)
        for generator in generators
        if generator.get("name") == "grafana-dashboards"
        for name in generator.get("files") or []
    }
    problems = []
    for path in sorted((base / "dashboards").glob("*.json")):
        relative = str(path.relative_to(base))
        if relative not in listed:
            problems.append(f"base/grafana/{relative}: not in the grafana-dashboards configMapGenerator; list it")
        try:
            json.loads(path.read_text())
        except json.JSONDecodeError as error:
            problems.append(f"base/grafana/{relative}: not JSON ({error})")
    return problems


def remote_references_are_pinned(references: dict[str, list[str]]) -> list[str]:
    """Every remote base names an exact version (a vX.Y.Z tag or release)."""
    return [
        f"{source}: remote resource {url} is not pinned to an exact version"
        for source, urls in references.items()
        for url in urls
        if not PINNED_REF.search(url)
    ]


def charts_are_pinned(objects: list[Rendered]) -> list[str]:
    """Argo CD Applications that install a Helm chart name its exact version."""
    problems = []
    for item in objects:
        if item.kind != "Application":
            continue
        spec = item.obj.get("spec") or {}
        for source in [spec["source"]] if "source" in spec else spec.get("sources") or []:
            if "chart" in source and not re.fullmatch(r"v?\d+\.\d+\.\d+", str(source.get("targetRevision", ""))):
                problems.append(f"{item}: chart {source['chart']} must be pinned to an exact version")
    return problems
