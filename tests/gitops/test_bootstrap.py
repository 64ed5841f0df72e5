"""invoke bootstrap against a cluster held in memory: what is applied, in which order, and when it waits.

The manifests are the repository's own, rendered by kustomize; only the two
remote bases (Argo CD's install.yaml, the controller's controller.yaml) are
replaced by stand-ins holding the objects our patches change, in their
upstream shape.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.gitops import sealed_secrets, sealing
from devtools.gitops.bootstrap import Bootstrap, BootstrapError
from devtools.gitops.kube import AppStatus
from devtools.gitops.manifests import ROOT

ARGOCD_STAND_IN = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: applications.argoproj.io}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: appprojects.argoproj.io}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}
---
apiVersion: v1
kind: Service
metadata: {name: argocd-server}
spec:
  ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080}
    - {name: https, port: 443, protocol: TCP, targetPort: 8080}
  selector: {app.kubernetes.io/name: argocd-server}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: argocd-server}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: argocd-server}}
  template:
    metadata: {labels: {app.kubernetes.io/name: argocd-server}}
    spec:
      containers: [{name: argocd-server, image: quay.io/argoproj/argocd:v3.3.6}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: argocd-application-controller}
spec:
  serviceName: argocd-application-controller
  selector: {matchLabels: {app.kubernetes.io/name: argocd-application-controller}}
  template:
    metadata: {labels: {app.kubernetes.io/name: argocd-application-controller}}
    spec:
      containers: [{name: argocd-application-controller, image: quay.io/argoproj/argocd:v3.3.6}]
"""
CONTROLLER_STAND_IN = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: sealedsecrets.bitnami.com}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sealed-secrets-controller, namespace: kube-system}
spec:
  selector: {matchLabels: {name: sealed-secrets-controller}}
  template:
    metadata: {labels: {name: sealed-secrets-controller}}
    spec:
      containers:
        - name: sealed-secrets-controller
          image: docker.io/bitnami/sealed-secrets-controller:0.40.0
          command: [controller]
          args: []
"""
Key = tuple[str, str | None, str]


class MemoryCluster:
    """Applied objects by kind, namespace and name; workloads become ready after `rollout_polls` looks."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.applied: list[Key] = []
        self.deleted_pods: list[tuple[str, str]] = []
        self.rollout_polls = 1
        self.established = True
        self.app_statuses: Callable[[], list[AppStatus]] = list

    @staticmethod
    def key(obj: dict[str, Any]) -> Key:
        return (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])

    def apply(self, obj: dict[str, Any]) -> None:
        assert "CLUSTER" not in yaml.safe_dump(obj)
        assert "REPO_URL" not in yaml.safe_dump(obj)
        self.objects[self.key(obj)] = obj
        self.applied.append(self.key(obj))

    def exists(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        return (kind, namespace, name) in self.objects

    def crd_established(self, name: str) -> bool:
        return self.established and ("CustomResourceDefinition", None, name) in self.objects

    def workloads_ready(self, namespace: str, names: list[tuple[str, str]] | None = None) -> list[str]:
        if self.rollout_polls > 0:
            self.rollout_polls -= 1
            return [f"Deployment/{name}" for _, name in names or [("Deployment", "something")]]
        return [f"{kind}/{name} (missing)" for kind, name in names or [] if (kind, namespace, name) not in self.objects]

    def delete_pods(self, namespace: str, selector: str) -> int:
        self.deleted_pods.append((namespace, selector))
        return 1

    def applications(self) -> list[AppStatus]:
        return self.app_statuses()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    for name in ("base", "overlays", "sealed-secrets", "clusters"):
        shutil.copytree(ROOT / name, root / name)
    for part, text in (("argocd", ARGOCD_STAND_IN), ("sealed-secrets", CONTROLLER_STAND_IN)):
        directory = root / "clusters" / "platform" / part
        (directory / "upstream.yaml").write_text(text)
        kustomization = directory / "kustomization.yaml"
        lines = kustomization.read_text().splitlines()
        kustomization.write_text("\n".join("  - upstream.yaml" if "://" in line else line for line in lines) + "\n")
    monkeypatch.setenv("MOVIESTREAM_KEYS_DIR", str(tmp_path / "keys"))
    paths = sealed_secrets.ClusterPaths("vagrant", root=root)
    sealed_secrets.create_key_pair(paths, force=False)
    return root


def run(repo: Path, kube: MemoryCluster, *, wait: bool = False, log: list[str] | None = None) -> None:
    Bootstrap("vagrant", kube, root=repo, poll=0, timeout=2, log=(log if log is not None else []).append).run(wait=wait)


def test_a_new_cluster_gets_key_controller_argo_cd_and_root_in_that_order(repo: Path) -> None:
    kube = MemoryCluster()
    run(repo, kube)
    paths = sealed_secrets.ClusterPaths("vagrant", root=repo)
    key_name = sealed_secrets.key_secret_name(sealing.load_certificate(paths.certificate))
    positions = {key: index for index, key in enumerate(kube.applied)}
    key = positions[("Secret", "kube-system", key_name)]
    crd = positions[("CustomResourceDefinition", None, "sealedsecrets.bitnami.com")]
    controller = positions[("Deployment", "kube-system", "sealed-secrets-controller")]
    namespace = positions[("Namespace", None, "argocd")]
    argocd = positions[("Deployment", "argocd", "argocd-server")]
    root = positions[("Application", "argocd", "root")]
    assert key < crd < controller < namespace < argocd < root
    assert kube.deleted_pods == [], "a controller started after its key needs no restart"
    secret = kube.objects[("Secret", "kube-system", key_name)]
    assert secret["metadata"]["labels"]["sealedsecrets.bitnami.com/sealed-secrets-key"] == "active"
    assert base64.b64decode(secret["data"]["tls.key"]) == paths.private_key.read_bytes()
    assert base64.b64decode(secret["data"]["tls.crt"]) == paths.certificate.read_bytes()


def test_the_platform_patches_land_on_the_upstream_objects(repo: Path) -> None:
    kube = MemoryCluster()
    run(repo, kube)
    controller = kube.objects[("Deployment", "kube-system", "sealed-secrets-controller")]
    assert controller["spec"]["template"]["spec"]["containers"][0]["args"] == ["--key-renew-period=0"]
    health = kube.objects[("ConfigMap", "argocd", "argocd-cm")]["data"]
    assert "obj.status.health" in health["resource.customizations.health.argoproj.io_Application"]
    server = kube.objects[("Service", "argocd", "argocd-server")]["spec"]
    assert server["type"] == "NodePort"
    assert {"name": "https", "port": 443, "protocol": "TCP", "nodePort": 30443, "targetPort": 8080} in server["ports"]
    root = kube.objects[("Application", "argocd", "root")]["spec"]["source"]
    assert root == {
        "repoURL": "http://master:8418/moviestream.git",
        "targetRevision": "main",
        "path": "clusters/vagrant/apps",
    }


def test_an_upstream_controller_with_arguments_of_its_own_stops_the_render(repo: Path) -> None:
    """The args patch replaces the list, so it first checks that the list is empty upstream."""
    upstream = repo / "clusters" / "platform" / "sealed-secrets" / "upstream.yaml"
    upstream.write_text(upstream.read_text().replace("args: []", "args: [--update-status]"))
    kube = MemoryCluster()
    with pytest.raises(Exception, match="kustomize build failed"):
        run(repo, kube)


def test_running_again_changes_no_key_and_restarts_nothing(repo: Path) -> None:
    kube = MemoryCluster()
    run(repo, kube)
    secrets = [key for key in kube.objects if key[0] == "Secret"]
    kube.applied.clear()
    kube.rollout_polls = 0
    run(repo, kube)
    assert [key for key in kube.objects if key[0] == "Secret"] == secrets
    assert not any(key[0] == "Secret" for key in kube.applied)
    assert kube.deleted_pods == []


def test_a_new_key_is_added_beside_the_old_and_the_running_controller_restarted(repo: Path) -> None:
    kube = MemoryCluster()
    run(repo, kube)
    [old] = [key for key in kube.objects if key[0] == "Secret"]
    paths = sealed_secrets.ClusterPaths("vagrant", root=repo)
    sealed_secrets.create_key_pair(paths, force=True)
    run(repo, kube)
    secrets = [key for key in kube.objects if key[0] == "Secret"]
    assert len(secrets) == 2
    assert old in secrets, "old SealedSecrets must still open"
    assert kube.deleted_pods == [("kube-system", "name=sealed-secrets-controller")]


def test_a_key_that_is_not_the_certificates_is_refused_before_anything_is_applied(repo: Path) -> None:
    paths = sealed_secrets.ClusterPaths("vagrant", root=repo)
    paths.certificate.write_bytes(sealing.new_key_pair().certificate_pem)
    kube = MemoryCluster()
    with pytest.raises(BootstrapError, match="does not belong to"):
        run(repo, kube)
    assert kube.applied == []


def test_definitions_that_never_serve_stop_the_bootstrap_with_their_names(repo: Path) -> None:
    kube = MemoryCluster()
    kube.established = False
    with pytest.raises(BootstrapError, match="custom resource definitions: not done within 2 s: sealedsecrets"):
        run(repo, kube)
    assert ("Deployment", "kube-system", "sealed-secrets-controller") not in kube.objects


def test_waiting_ends_when_every_application_is_synced_and_healthy(repo: Path) -> None:
    kube = MemoryCluster()
    names = ["argocd", "observability", "root", "sealed-secrets", "storage", "workload"]
    looks = iter(range(100))

    def statuses() -> list[AppStatus]:
        look = next(looks)
        return [AppStatus(name, "Synced", "Healthy" if look > 3 else "Progressing", "") for name in names]

    kube.app_statuses = statuses
    log: list[str] = []
    run(repo, kube, wait=True, log=log)
    assert f"==> waiting until every Application is Synced and Healthy ({', '.join(names)})" in log
    assert log[-1] == "==> every Application is Synced and Healthy"


def test_an_application_that_never_gets_healthy_is_reported_with_its_message(repo: Path) -> None:
    kube = MemoryCluster()
    kube.app_statuses = lambda: [AppStatus("workload", "OutOfSync", "Degraded", "ImagePullBackOff")]
    log: list[str] = []
    with pytest.raises(BootstrapError, match="the Applications: not done within"):
        run(repo, kube, wait=True, log=log)
    assert "    workload: OutOfSync/Degraded ImagePullBackOff" in log
    assert any("argocd (not yet)" in line for line in log)
