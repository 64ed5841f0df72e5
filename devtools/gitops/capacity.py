"""Whether a cluster's pods fit its VMs: every container's requests, summed over all its Applications.

What is counted, per Application of the cluster model:
- rendered here (the workload, the observability stack; with --remote also Argo CD and the
  Sealed Secrets controller): each pod's requests (its containers' sum, or its largest init
  container if that is more, as the scheduler counts), times the replicas it can reach:
  spec.replicas (1 if unset), an autoscaler's maxReplicas for what it scales, a DaemonSet's
  pod once per node;
- not rendered offline: NOT_RENDERED, the requests their manifests declare, with the source;
- what K3s deploys itself, outside Argo CD: K3S_ADDONS.
Against: the VMs' CPUs and memory (clusters/<cluster>/vagrant.env), less RESERVED for what
runs outside any request: the OS, the K3s processes, the master's git server and registry,
and Argo CD, whose containers request nothing but use memory. A cluster without a
vagrant.env (cloud, e2e) has no capacity known here and is not checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes.utils import parse_quantity

if TYPE_CHECKING:
    from devtools.gitops.cluster_model import ClusterModel
    from devtools.gitops.manifests import Rendered

CAPACITY_FILE = "vagrant.env"
NODES = ("MASTER", "AGENT")


@dataclass(frozen=True)
class Requests:
    cpu: int  # millicores
    memory: int  # MiB

    def __add__(self, other: Requests) -> Requests:
        return Requests(self.cpu + other.cpu, self.memory + other.memory)

    def __sub__(self, other: Requests) -> Requests:
        return Requests(self.cpu - other.cpu, self.memory - other.memory)

    def __mul__(self, times: int) -> Requests:
        return Requests(self.cpu * times, self.memory * times)

    def __str__(self) -> str:
        return f"{self.cpu}m CPU, {self.memory}Mi memory"


NONE = Requests(0, 0)
# Application -> (its requests, where that number comes from), for what is not rendered offline.
NOT_RENDERED = {
    "argocd": (NONE, "manifests/install.yaml of Argo CD v3.3.14 sets no resources on any container"),
    "sealed-secrets": (NONE, "controller.yaml of Sealed Secrets v0.40.0 sets no resources (render with --remote)"),
    "storage": (NONE, "nfs-subdir-external-provisioner 4.0.18's default values set resources: {}"),
}
# K3s's packaged add-ons (manifests/ of k3s-io/k3s); K3s's Traefik is disabled (scripts/provision-node.sh).
K3S_ADDONS = {"coredns": Requests(100, 70), "metrics-server": Requests(100, 70)}
# Estimates, not measurements: what runs beside the pods or in pods that request nothing.
RESERVED = {
    "the OS, K3s server and containerd on the master": Requests(300, 1024),
    "the master's git server, registry and image builds": Requests(200, 256),
    "Argo CD's seven containers (no requests, about this much in use)": Requests(300, 768),
    "the OS, K3s agent and containerd on the agent": Requests(200, 512),
}


def _quantity(quantity: Any, what: str) -> Decimal:
    """A Kubernetes quantity (100m, 96Mi, 1e3, 1Ti...), read by the Kubernetes client's own parser."""
    try:
        return parse_quantity(quantity)
    except ValueError:
        raise ValueError(f"not a {what} quantity: {quantity!r}") from None


def cpu_millis(quantity: Any) -> int:
    return round(_quantity(quantity, "CPU") * 1000)


def memory_mib(quantity: Any) -> int:
    return round(_quantity(quantity, "memory") / 2**20)


def read_capacity(path: Path) -> tuple[Requests, int] | None:
    """The nodes' total CPUs and memory, and how many nodes, from a vagrant.env; None without one."""
    if not path.is_file():
        return None
    values = dict(re.findall(r"^(VAGRANT_\w+)=(\S+)$", path.read_text(), re.MULTILINE))
    try:
        nodes = [
            Requests(int(values[f"VAGRANT_{node}_CPUS"]) * 1000, int(values[f"VAGRANT_{node}_MEMORY"]))
            for node in NODES
        ]
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path}: needs VAGRANT_<MASTER|AGENT>_<CPUS|MEMORY> as whole numbers ({error})") from None
    return sum(nodes, NONE), len(nodes)


def _container_requests(container: dict[str, Any]) -> Requests:
    requests = (container.get("resources") or {}).get("requests") or {}
    return Requests(cpu_millis(requests.get("cpu", 0)), memory_mib(requests.get("memory", 0)))


def pod_requests(pod: dict[str, Any]) -> Requests:
    containers = sum((_container_requests(c) for c in pod.get("containers") or []), NONE)
    for init in pod.get("initContainers") or []:
        own = _container_requests(init)
        containers = Requests(max(containers.cpu, own.cpu), max(containers.memory, own.memory))
    return containers


def _replicas(item: Rendered, autoscaled: dict[tuple[str, str], int], nodes: int) -> int:
    if item.kind == "DaemonSet":
        return nodes
    if (item.kind, item.name) in autoscaled:
        return autoscaled[(item.kind, item.name)]
    return int((item.obj.get("spec") or {}).get("replicas", 1))


def rendered_requests(objects: Iterable[Rendered], nodes: int) -> Requests:
    objects = list(objects)
    autoscaled = {
        (target.get("kind"), target.get("name")): int(item.obj["spec"].get("maxReplicas", 1))
        for item in objects
        if item.kind == "HorizontalPodAutoscaler"
        for target in [item.obj["spec"].get("scaleTargetRef") or {}]
    }
    total = NONE
    for item in objects:
        if item.kind in {"Deployment", "StatefulSet", "DaemonSet"}:
            pod = ((item.obj.get("spec") or {}).get("template") or {}).get("spec") or {}
            total += pod_requests(pod) * _replicas(item, autoscaled, nodes)
    return total


def requests_fit_the_nodes(model: ClusterModel) -> list[str]:
    """Every request on the cluster, at the most replicas, fits the VMs beside what runs outside requests."""
    if model.root is None:
        return []
    try:
        capacity = read_capacity(model.root / "clusters" / model.name / CAPACITY_FILE)
    except ValueError as error:
        return [f"cluster {model.name}: {error}"]
    if capacity is None:
        return []
    total, nodes = capacity
    problems = []
    requested = sum(K3S_ADDONS.values(), NONE)
    for app in model.apps.values():
        if app.objects is not None:
            try:
                requested += rendered_requests(app.objects, nodes)
            except ValueError as error:
                problems.append(f"cluster {model.name}: Application/{app.name}: {error}")
        elif app.name in NOT_RENDERED:
            requested += NOT_RENDERED[app.name][0]
        else:
            problems.append(
                f"cluster {model.name}: Application/{app.name} is not rendered here, so its requests are unknown: "
                "add what its manifests request to NOT_RENDERED in devtools/gitops/capacity.py"
            )
    available = Requests(
        total.cpu - sum(r.cpu for r in RESERVED.values()), total.memory - sum(r.memory for r in RESERVED.values())
    )
    if requested.cpu > available.cpu or requested.memory > available.memory:
        problems.append(
            f"cluster {model.name}: its pods request {requested} at their most replicas, more than the "
            f"{available} the VMs ({total}) leave beside what runs without requests; "
            "lower some requests or give the VMs more (clusters/vagrant/vagrant.env)"
        )
    return problems
