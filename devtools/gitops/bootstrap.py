"""Handing a cluster to Argo CD: the one program every cluster starts with.

`invoke bootstrap --cluster NAME --kubeconfig FILE` runs it, and so do
`./orchestrator.sh create` and the e2e workflow. In order, each step safe to
repeat:

1. the cluster's sealing key, as a Secret named by the key's fingerprint
   (a new key is a new Secret, so SealedSecrets sealed for an older one
   still open), labelled for the controller;
2. the Sealed Secrets controller (clusters/NAME/sealed-secrets), restarted
   when a key was added while it ran, because it reads its keys at start;
3. Argo CD (clusters/NAME/argocd), every Deployment and StatefulSet rolled out;
4. the root Application (clusters/NAME/root), after which Argo CD syncs the
   rest from git, wave by wave, and keeps itself and the controller in sync;
5. optionally, waiting until every Application is Synced and Healthy.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from devtools import ROOT
from devtools.gitops import sealing
from devtools.gitops.kube import AppStatus, ClusterApi
from devtools.gitops.manifests import Rendered, render
from devtools.gitops.sealed_secrets import ClusterPaths, key_secret_name

CONTROLLER_NAMESPACE = "kube-system"
CONTROLLER = "sealed-secrets-controller"
CONTROLLER_SELECTOR = "name=sealed-secrets-controller"
KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
ARGOCD_NAMESPACE = "argocd"
FIRST = ("Namespace", "CustomResourceDefinition")


class BootstrapError(RuntimeError):
    pass


def key_secret(certificate_pem: bytes, private_key_pem: bytes) -> dict[str, Any]:
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": key_secret_name(certificate),
            "namespace": CONTROLLER_NAMESPACE,
            "labels": {KEY_LABEL: "active", "app.kubernetes.io/part-of": "moviestream"},
        },
        "data": {
            "tls.crt": base64.b64encode(certificate_pem).decode(),
            "tls.key": base64.b64encode(private_key_pem).decode(),
        },
    }


@dataclass
class Bootstrap:
    cluster: str
    kube: ClusterApi
    root: Path = ROOT
    timeout: float = 900
    poll: float = 5
    log: Callable[[str], None] = print
    renderer: Callable[[Path], list[Rendered]] | None = None

    def _render(self, part: str) -> list[dict[str, Any]]:
        directory = self.root / "clusters" / self.cluster / part
        if not directory.is_dir():
            raise BootstrapError(f"no {directory.relative_to(self.root)}: is {self.cluster} a cluster of clusters/?")
        renderer = self.renderer or (lambda path: render(path, self.root))
        return [item.obj for item in renderer(directory)]

    def _wait(self, what: str, pending: Callable[[], list[str]], timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        last: list[str] = []
        while found := pending():
            if found != last:
                self.log(f"    waiting for {what}: {', '.join(found)}")
                last = found
            if time.monotonic() > deadline:
                raise BootstrapError(f"{what}: not done within {timeout or self.timeout:g} s: {', '.join(found)}")
            time.sleep(self.poll)

    def apply(self, objects: list[dict[str, Any]]) -> None:
        """Namespaces and CRDs first, then (once the CRDs serve) everything else."""
        first = [obj for obj in objects if obj["kind"] in FIRST]
        for obj in first:
            self.kube.apply(obj)
        crds = [obj["metadata"]["name"] for obj in first if obj["kind"] == "CustomResourceDefinition"]
        self._wait("custom resource definitions", lambda: [n for n in crds if not self.kube.crd_established(n)])
        for obj in objects:
            if obj["kind"] not in FIRST:
                self.kube.apply(obj)

    def install_key(self) -> bool:
        """Install this cluster's sealing key; True if it was not there yet."""
        paths = ClusterPaths(self.cluster, root=self.root)
        certificate = sealing.load_certificate(paths.certificate)
        private_key = sealing.load_private_key(paths.private_key)
        if not sealing.belongs_to(private_key, certificate):
            raise BootstrapError(
                f"{paths.private_key} does not belong to {paths.certificate.relative_to(self.root)}; "
                f"run `invoke sealing-key --cluster {self.cluster}` and `invoke seal-secrets --cluster {self.cluster}`"
            )
        secret = key_secret(paths.certificate.read_bytes(), paths.private_key.read_bytes())
        name = secret["metadata"]["name"]
        if self.kube.exists("v1", "Secret", name, CONTROLLER_NAMESPACE):
            self.log(f"==> sealing key {name} is installed")
            return False
        self.log(f"==> installing the sealing key as {CONTROLLER_NAMESPACE}/{name}")
        self.kube.apply(secret)
        return True

    def install_controller(self, key_added: bool) -> None:
        was_running = self.kube.exists("apps/v1", "Deployment", CONTROLLER, CONTROLLER_NAMESPACE)
        self.log("==> installing the Sealed Secrets controller")
        self.apply(self._render("sealed-secrets"))
        if key_added and was_running:
            # The controller reads its keys only when it starts.
            self.log("==> restarting the controller so that it loads the new key")
            self.kube.delete_pods(CONTROLLER_NAMESPACE, CONTROLLER_SELECTOR)
        self._wait(
            "the Sealed Secrets controller",
            lambda: self.kube.workloads_ready(CONTROLLER_NAMESPACE, [("Deployment", CONTROLLER)]),
        )

    def install_argocd(self) -> None:
        self.log("==> installing Argo CD")
        self.apply(self._render("argocd"))
        self._wait("Argo CD", lambda: self.kube.workloads_ready(ARGOCD_NAMESPACE))

    def install_root(self) -> list[str]:
        """Apply the root Application; return the Applications it will sync (root included)."""
        self.log("==> applying the root Application: Argo CD deploys the rest from git")
        root = self._render("root")
        self.apply(root)
        return sorted(obj["metadata"]["name"] for obj in [*root, *self._render("apps")] if obj["kind"] == "Application")

    def wait_for_applications(self, expected: list[str], timeout: float | None = None) -> list[AppStatus]:
        def pending() -> list[str]:
            statuses = {status.name: status for status in self.kube.applications()}
            return [
                f"{name} {statuses[name].sync}/{statuses[name].health}" if name in statuses else f"{name} (not yet)"
                for name in expected
                if name not in statuses or not statuses[name].done
            ]

        self.log(f"==> waiting until every Application is Synced and Healthy ({', '.join(expected)})")
        try:
            self._wait("the Applications", pending, timeout)
        except BootstrapError:
            for status in self.kube.applications():
                self.log(f"    {status.name}: {status.sync}/{status.health} {status.message}")
            raise
        return self.kube.applications()

    def run(self, *, wait: bool = True) -> None:
        key_added = self.install_key()
        self.install_controller(key_added)
        self.install_argocd()
        expected = self.install_root()
        if wait:
            self.wait_for_applications(expected)
            self.log("==> every Application is Synced and Healthy")
