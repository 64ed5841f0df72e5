"""A cluster as Argo CD assembles it, modelled offline, and the rules that only hold across its Applications.

Argo CD applies a cluster's root Application (clusters/<cluster>/root, installed
by `invoke bootstrap`), which syncs the Applications and AppProjects of
clusters/<cluster>/apps in sync-wave order, waiting for each wave to be
healthy; each Application in turn syncs its own source in waves. So an object
is applied at the position (its Application's wave, its own wave), and one
that needs another (an HPA its Deployment, a pod its Secret, a volume claim
its StorageClass) must not come before it: Argo CD would wait for ever on a
wave that cannot become healthy.

Sources in this repository are rendered with kustomize, as Argo CD's
repo-server would; a Helm chart from elsewhere is described by CHARTS (what it
deploys, read from the chart's templates); a kustomization that builds on a
remote URL is rendered only when the network is allowed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.gitops.capacity import requests_fit_the_nodes
from devtools.gitops.manifests import Rendered, RenderError, kustomization, remote_resources, render

ROOT_APP = "root"
WAVE_ANNOTATION = "argocd.argoproj.io/sync-wave"
# Before any Application: what `invoke bootstrap` applies itself (root/).
BOOTSTRAP_WAVE = -(10**6)
# Namespaces that exist before Argo CD syncs anything: Kubernetes' own, and
# argocd, which the bootstrap creates to install Argo CD into.
PREEXISTING_NAMESPACES = {"default", "kube-system", "argocd"}
# Kubernetes' default --service-node-port-range.
NODE_PORTS = (30000, 32767)
# Objects every namespace or every K3s cluster has.
BUILT_IN = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt"), ("StorageClass", "local-path")}
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "PersistentVolume",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
}
API_GROUPS = {
    "CustomResourceDefinition": "apiextensions.k8s.io",
    "ClusterRole": "rbac.authorization.k8s.io",
    "ClusterRoleBinding": "rbac.authorization.k8s.io",
    "Role": "rbac.authorization.k8s.io",
    "RoleBinding": "rbac.authorization.k8s.io",
    "StorageClass": "storage.k8s.io",
    "Deployment": "apps",
    "StatefulSet": "apps",
    "DaemonSet": "apps",
    "HorizontalPodAutoscaler": "autoscaling",
    "NetworkPolicy": "networking.k8s.io",
    "Ingress": "networking.k8s.io",
    "Application": "argoproj.io",
    "AppProject": "argoproj.io",
    "SealedSecret": "bitnami.com",
}


@dataclass(frozen=True)
class Chart:
    """What a Helm chart deploys with the values an Application gives it."""

    kinds: frozenset[str]
    provides: Callable[[dict[str, Any]], list[tuple[str, str]]]


CHARTS = {
    # charts/nfs-subdir-external-provisioner/templates (no mountOptions, no PodDisruptionBudget)
    "nfs-subdir-external-provisioner": Chart(
        kinds=frozenset(
            {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "StorageClass"}
        ),
        provides=lambda values: [("StorageClass", (values.get("storageClass") or {}).get("name", "nfs-client"))],
    ),
}


def wave_of(obj: dict[str, Any]) -> int:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return int(annotations.get(WAVE_ANNOTATION, "0"))


@dataclass
class App:
    """One Argo CD Application and, where it can be known offline, what it deploys."""

    item: Rendered
    objects: list[Rendered] | None  # None: not rendered here (remote, or a chart)
    kinds: set[str] = field(default_factory=set)
    kinds_known: bool = False
    provides: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) known without rendering

    @property
    def name(self) -> str:
        return self.item.name

    @property
    def spec(self) -> dict[str, Any]:
        return self.item.obj.get("spec") or {}

    @property
    def wave(self) -> int:
        return BOOTSTRAP_WAVE if self.name == ROOT_APP else wave_of(self.item.obj)

    @property
    def namespace(self) -> str:
        return str((self.spec.get("destination") or {}).get("namespace", ""))

    @property
    def sync_options(self) -> list[str]:
        return list((self.spec.get("syncPolicy") or {}).get("syncOptions") or [])


@dataclass(frozen=True)
class Placed:
    """An object where Argo CD applies it: in which Application, at which position."""

    app: App
    item: Rendered

    @property
    def namespace(self) -> str | None:
        if self.item.kind in CLUSTER_SCOPED:
            return None
        return (self.item.obj.get("metadata") or {}).get("namespace") or self.app.namespace

    @property
    def position(self) -> tuple[int, int]:
        return (self.app.wave, wave_of(self.item.obj))

    def __str__(self) -> str:
        return f"{self.app.name}: {self.item.kind}/{self.item.name} (waves {self.position[0]}/{self.position[1]})"


@dataclass
class ClusterModel:
    name: str
    apps: dict[str, App]
    projects: dict[str, Rendered]
    problems: list[str]
    bootstrap_projects: dict[str, Rendered] = field(default_factory=dict)  # as root/ holds them
    root: Path | None = None  # the repository, for what a cluster declares beside its Applications

    def placed(self) -> Iterator[Placed]:
        for app in self.apps.values():
            for item in app.objects or []:
                yield Placed(app, item)


def _source(app_item: Rendered) -> dict[str, Any]:
    return (app_item.obj.get("spec") or {}).get("source") or {}


Renderer = Callable[[Path], list[Rendered]]


def load(root: Path, cluster: str, *, allow_remote: bool = False, renderer: Renderer | None = None) -> ClusterModel:
    """Render the cluster the way Argo CD would sync it, starting from clusters/<cluster>/root."""
    renderer = renderer or (lambda path: render(path, root))
    problems: list[str] = []

    def rendered(path: Path) -> list[Rendered] | None:
        if not path.is_dir():
            problems.append(f"cluster {cluster}: {path.relative_to(root)} does not exist")
            return None
        if remote_resources(path) and not allow_remote:
            return None
        try:
            return renderer(path)
        except RenderError as error:
            problems.append(f"cluster {cluster}: {error}")
            return None

    bootstrap = rendered(root / "clusters" / cluster / "root") or []
    roots = [item for item in bootstrap if item.kind == "Application" and item.name == ROOT_APP]
    if len(roots) != 1:
        return ClusterModel(cluster, {}, {}, [*problems, f"cluster {cluster}: root/ must hold one Application 'root'"])
    apps: dict[str, App] = {}
    queue = [roots[0]]
    projects = {item.name: item for item in bootstrap if item.kind == "AppProject"}
    while queue:
        item = queue.pop(0)
        source = _source(item)
        app = App(item, None)
        if "chart" in source:
            chart = CHARTS.get(str(source["chart"]))
            if chart is None:
                problems.append(f"cluster {cluster}: Application/{item.name}: chart {source['chart']} is not modelled")
            else:
                values = (source.get("helm") or {}).get("valuesObject") or {}
                app.kinds, app.provides, app.kinds_known = set(chart.kinds), chart.provides(values), True
        elif "path" in source:
            app.objects = rendered(root / str(source["path"]))
            app.kinds = {obj.kind for obj in app.objects or []}
            app.kinds_known = app.objects is not None
        apps[item.name] = app
        for child in app.objects or []:
            if child.kind == "Application":
                queue.append(child)
            elif child.kind == "AppProject":
                projects[child.name] = child
    bootstrap_projects = {item.name: item for item in bootstrap if item.kind == "AppProject"}
    return ClusterModel(cluster, apps, projects, problems, bootstrap_projects, root)


# -- references -------------------------------------------------------------------------------------


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return (spec.get("template") or {}).get("spec") or {}


def _volume_references(volume: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if "secret" in volume:
        yield "Secret", volume["secret"]["secretName"]
    if "configMap" in volume:
        yield "ConfigMap", volume["configMap"]["name"]
    if "persistentVolumeClaim" in volume:
        yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
    for projected in (volume.get("projected") or {}).get("sources") or []:
        if "secret" in projected:
            yield "Secret", projected["secret"]["name"]
        if "configMap" in projected:
            yield "ConfigMap", projected["configMap"]["name"]


def _container_references(container: dict[str, Any]) -> Iterator[tuple[str, str]]:
    kinds = {
        "secretKeyRef": "Secret",
        "configMapKeyRef": "ConfigMap",
        "secretRef": "Secret",
        "configMapRef": "ConfigMap",
    }
    sources = [env.get("valueFrom") or {} for env in container.get("env") or []] + list(container.get("envFrom") or [])
    for source in sources:
        for key, kind in kinds.items():
            if key in source and not source[key].get("optional"):
                yield kind, source[key]["name"]


def _pod_references(pod: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield "ServiceAccount", pod.get("serviceAccountName") or "default"
    for secret in pod.get("imagePullSecrets") or []:
        yield "Secret", secret["name"]
    for volume in pod.get("volumes") or []:
        yield from _volume_references(volume)
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        yield from _container_references(container)


def references(obj: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of every object this one needs to exist before it can become healthy."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "HorizontalPodAutoscaler":
        target = spec.get("scaleTargetRef") or {}
        yield str(target.get("kind")), str(target.get("name"))
    if kind == "Application":
        yield "AppProject", str(spec.get("project", "default"))
    if kind == "PersistentVolumeClaim" and spec.get("storageClassName"):
        yield "StorageClass", spec["storageClassName"]
    for template in spec.get("volumeClaimTemplates") or []:
        if (template.get("spec") or {}).get("storageClassName"):
            yield "StorageClass", template["spec"]["storageClassName"]
    if _pod_spec(obj):
        yield from _pod_references(_pod_spec(obj))


def waves_follow_references(model: ClusterModel) -> list[str]:
    """Everything an object needs is applied in the same or an earlier wave, across all Applications."""
    where: dict[tuple[str, str | None, str], tuple[int, int]] = {}

    def place(kind: str, namespace: str | None, name: str, position: tuple[int, int]) -> None:
        key = (kind, None if kind in CLUSTER_SCOPED else namespace, name)
        where[key] = min(where.get(key, position), position)

    for placed in model.placed():
        place(placed.item.kind, placed.namespace, placed.item.name, placed.position)
        if placed.item.kind == "SealedSecret":  # the controller makes the Secret as soon as it is applied
            place("Secret", placed.namespace, placed.item.name, placed.position)
    for app in model.apps.values():
        for kind, name in app.provides:
            place(kind, app.namespace, name, (app.wave, 0))
    problems = []
    for placed in model.placed():
        for kind, name in references(placed.item.obj):
            if (kind, name) in BUILT_IN:
                continue
            key = (kind, None if kind in CLUSTER_SCOPED else placed.namespace, name)
            if key not in where:
                problems.append(
                    f"cluster {model.name}: {placed} needs {kind}/{name}, which nothing in the cluster makes"
                )
            elif where[key] > placed.position:
                problems.append(
                    f"cluster {model.name}: {placed} needs {kind}/{name}, which comes later (waves "
                    f"{where[key][0]}/{where[key][1]}): Argo CD would wait for ever on this wave"
                )
    return problems


# -- destinations and projects ----------------------------------------------------------------------------


def destinations_exist(model: ClusterModel) -> list[str]:
    """Each Application's namespace exists before it syncs, or the Application creates it."""
    creators = {placed.item.name: placed.app for placed in model.placed() if placed.item.kind == "Namespace"}
    problems = []
    for app in model.apps.values():
        namespace = app.namespace
        if not namespace or namespace in PREEXISTING_NAMESPACES or "CreateNamespace=true" in app.sync_options:
            continue
        creator = creators.get(namespace)
        if creator is None:
            problems.append(
                f"cluster {model.name}: Application/{app.name} deploys into namespace {namespace}, which nothing "
                "creates (add a Namespace, or syncOptions CreateNamespace=true)"
            )
        elif creator is not app and creator.wave > app.wave:
            problems.append(
                f"cluster {model.name}: Application/{app.name} (wave {app.wave}) deploys into namespace {namespace}, "
                f"which Application/{creator.name} creates later (wave {creator.wave})"
            )
    return problems


def _group_kinds(project: Rendered, field_name: str) -> list[tuple[str, str]]:
    entries = (project.obj.get("spec") or {}).get(field_name) or []
    return [(str(entry.get("group", "")), str(entry.get("kind", ""))) for entry in entries]


def _matches(entries: Iterable[tuple[str, str]], group: str, kind: str) -> bool:
    return any(fnmatch.fnmatchcase(group, g) and fnmatch.fnmatchcase(kind, k) for g, k in entries)


def projects_allow_exactly_their_kinds(model: ClusterModel) -> list[str]:
    """Each AppProject lets its Applications deploy what they deploy, from where, to where, and nothing more."""
    problems = []
    by_project: dict[str, list[App]] = {}
    for app in model.apps.values():
        project_name = str(app.spec.get("project", "default"))
        project = model.projects.get(project_name)
        if project is None:
            problems.append(f"cluster {model.name}: Application/{app.name}: no AppProject {project_name}")
            continue
        by_project.setdefault(project_name, []).append(app)
        spec = project.obj.get("spec") or {}
        repo = str(_source(app.item).get("repoURL", ""))
        if not any(fnmatch.fnmatchcase(repo, allowed) for allowed in spec.get("sourceRepos") or []):
            problems.append(
                f"cluster {model.name}: AppProject/{project_name} does not allow {app.name}'s source {repo}"
            )
        destinations = spec.get("destinations") or []
        if not any(fnmatch.fnmatchcase(app.namespace, str(d.get("namespace", ""))) for d in destinations):
            problems.append(
                f"cluster {model.name}: AppProject/{project_name} does not allow {app.name}'s namespace {app.namespace}"
            )
    for project_name, apps in by_project.items():
        project = model.projects[project_name]
        cluster_kinds = _group_kinds(project, "clusterResourceWhitelist")
        namespaced = _group_kinds(project, "namespaceResourceWhitelist")
        used: set[tuple[str, str]] = set()
        for app in apps:
            for kind in sorted(app.kinds):
                group = API_GROUPS.get(kind, "")
                used.add((group, kind))
                allowed = cluster_kinds if kind in CLUSTER_SCOPED else namespaced
                if not _matches(allowed, group, kind):
                    problems.append(
                        f"cluster {model.name}: AppProject/{project_name} does not allow {kind} ({app.name})"
                    )
        if all(app.kinds_known for app in apps):
            for group, kind in [*cluster_kinds, *namespaced]:
                if not any(_matches([(group, kind)], g, k) for g, k in used):
                    problems.append(
                        f"cluster {model.name}: AppProject/{project_name} allows {group or 'core'}/{kind}, "
                        "which none of its Applications deploys"
                    )
    return problems


def bootstrap_agrees_with_git(model: ClusterModel) -> list[str]:
    """root/ applies the AppProjects as the root Application syncs them, or each bootstrap undoes a part of them."""
    return [
        f"cluster {model.name}: AppProject/{name} in clusters/{model.name}/root differs from the one its apps/ syncs "
        "(include the same components in both)"
        for name, item in model.bootstrap_projects.items()
        if name in model.projects and model.projects[name].obj != item.obj
    ]


def node_ports_are_fixed_once(model: ClusterModel) -> list[str]:
    """A fixed nodePort is in the NodePort range and used once on the cluster, or the second Service is refused."""
    problems = []
    owners: dict[int, Placed] = {}
    for placed in model.placed():
        if placed.item.kind != "Service":
            continue
        for port in (placed.item.obj.get("spec") or {}).get("ports") or []:
            number = port.get("nodePort")
            if number is None:
                continue
            if not NODE_PORTS[0] <= int(number) <= NODE_PORTS[1]:
                problems.append(f"cluster {model.name}: {placed}: nodePort {number} is outside {NODE_PORTS}")
            elif int(number) in owners:
                problems.append(f"cluster {model.name}: {placed}: nodePort {number} is already {owners[int(number)]}'s")
            else:
                owners[int(number)] = placed
    return problems


RULES = [
    waves_follow_references,
    destinations_exist,
    projects_allow_exactly_their_kinds,
    bootstrap_agrees_with_git,
    node_ports_are_fixed_once,
    requests_fit_the_nodes,
]


def cluster_names(root: Path) -> list[str]:
    """Every clusters/<name> with a root/ to bootstrap (clusters/platform holds only components)."""
    return sorted(
        path.parent.parent.name
        for path in (root / "clusters").glob("*/root/kustomization.yaml")
        if kustomization(path.parent).get("kind", "Kustomization") == "Kustomization"
    )


def problems(root: Path, *, allow_remote: bool = False, renderer: Renderer | None = None) -> list[str]:
    found = []
    for cluster in cluster_names(root):
        model = load(root, cluster, allow_remote=allow_remote, renderer=renderer)
        found += model.problems + [problem for rule in RULES for problem in rule(model)]
    return found
