"""The few things the bootstrap asks of a cluster, over the official Kubernetes client.

Objects are applied server-side (as `kubectl apply --server-side
--force-conflicts` does), under the field manager Argo CD's own server-side
syncs use: when Argo CD later syncs the same objects (it manages itself and
the controller), it owns every field the bootstrap set, so a field a newer
upstream manifest drops is removed instead of staying behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

FIELD_MANAGER = "argocd-controller"  # common.ArgoCDSSAManager in Argo CD 3.3


@dataclass(frozen=True)
class AppStatus:
    name: str
    sync: str
    health: str
    message: str

    @property
    def done(self) -> bool:
        return self.sync == "Synced" and self.health == "Healthy"


class ClusterApi(Protocol):
    def apply(self, obj: dict[str, Any]) -> None: ...
    def exists(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool: ...
    def crd_established(self, name: str) -> bool: ...
    def workloads_ready(self, namespace: str, names: list[tuple[str, str]] | None = None) -> list[str]: ...
    def delete_pods(self, namespace: str, selector: str) -> int: ...
    def applications(self) -> list[AppStatus]: ...


def _ready(kind: str, obj: Any) -> bool:
    """Rolled out: the newest spec is observed, and every wanted replica is updated and ready."""
    spec, status = obj.spec, obj.status
    wanted = spec.replicas if spec.replicas is not None else 1
    if (status.observed_generation or 0) < (obj.metadata.generation or 0):
        return False
    if kind == "Deployment":
        return (status.updated_replicas or 0) >= wanted and (status.available_replicas or 0) >= wanted
    return (status.updated_replicas or 0) >= wanted and (status.ready_replicas or 0) >= wanted


class Cluster:
    """A cluster reached through a kubeconfig file."""

    def __init__(self, kubeconfig: Path) -> None:
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        self.dynamic = dynamic.DynamicClient(api_client)
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)

    def _resource(self, api_version: str, kind: str) -> Any:
        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            # A custom resource whose definition was applied since discovery last ran.
            self.dynamic.resources.invalidate_cache()
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: dict[str, Any]) -> None:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        namespace = obj.get("metadata", {}).get("namespace") if resource.namespaced else None
        self.dynamic.server_side_apply(
            resource, body=obj, namespace=namespace, field_manager=FIELD_MANAGER, force_conflicts=True
        )

    def exists(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        try:
            resource = self._resource(api_version, kind)
            resource.get(name=name, namespace=namespace)
        except (NotFoundError, ResourceNotFoundError):
            return False
        return True

    def crd_established(self, name: str) -> bool:
        resource = self._resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        try:
            conditions = resource.get(name=name).status.conditions or []
        except NotFoundError:
            return False
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    def workloads_ready(self, namespace: str, names: list[tuple[str, str]] | None = None) -> list[str]:
        """The Deployments and StatefulSets (all, or those named) not rolled out yet, as Kind/name."""
        found = [("Deployment", d) for d in self.apps.list_namespaced_deployment(namespace).items]
        found += [("StatefulSet", s) for s in self.apps.list_namespaced_stateful_set(namespace).items]
        pending = [
            f"{kind}/{obj.metadata.name}"
            for kind, obj in found
            if (names is None or (kind, obj.metadata.name) in names) and not _ready(kind, obj)
        ]
        if names is not None:
            present = {(kind, obj.metadata.name) for kind, obj in found}
            pending += [f"{kind}/{name} (missing)" for kind, name in names if (kind, name) not in present]
        return pending

    def delete_pods(self, namespace: str, selector: str) -> int:
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        for pod in pods:
            try:
                self.core.delete_namespaced_pod(pod.metadata.name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return len(pods)

    def applications(self) -> list[AppStatus]:
        try:
            resource = self._resource("argoproj.io/v1alpha1", "Application")
            items = resource.get(namespace="argocd").to_dict().get("items") or []
        except (NotFoundError, ResourceNotFoundError):
            return []
        statuses = []
        for item in items:
            status = item.get("status") or {}
            conditions = [c.get("message", "") for c in status.get("conditions") or []]
            operation = (status.get("operationState") or {}).get("message", "")
            statuses.append(
                AppStatus(
                    name=item["metadata"]["name"],
                    sync=(status.get("sync") or {}).get("status", "Unknown"),
                    health=(status.get("health") or {}).get("status", "Unknown"),
                    message="; ".join(m for m in [*conditions, operation] if m),
                )
            )
        return sorted(statuses, key=lambda s: s.name)
