"""devtools.gitops.kube against a stand-in Kubernetes API over HTTP: the requests the real client makes.

The stand-in serves discovery, stores what is applied, and records every
request, so the tests see what an API server would: server-side apply as
`application/apply-patch+yaml` with our field manager and force, a kind that
appears once its definition is applied, 404 for what does not exist.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from devtools.gitops.kube import FIELD_MANAGER, Cluster

RESOURCES = {
    "v1": [("secrets", "Secret", True), ("pods", "Pod", True), ("namespaces", "Namespace", False)],
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True)],
    "apiextensions.k8s.io/v1": [("customresourcedefinitions", "CustomResourceDefinition", False)],
    "argoproj.io/v1alpha1": [("applications", "Application", True)],
}


class ApiServer:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], str, Any]] = []

    def served(self) -> list[str]:
        crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/applications.argoproj.io"
        return [gv for gv in RESOURCES if gv != "argoproj.io/v1alpha1" or crd in self.objects]

    def discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            return {"major": "1", "minor": "34", "gitVersion": "v1.34.12"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            groups = [gv for gv in self.served() if "/" in gv]
            return {
                "kind": "APIGroupList",
                "groups": [
                    {
                        "name": gv.split("/")[0],
                        "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                        "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]},
                    }
                    for gv in groups
                ],
            }
        for gv in self.served():
            if path == ("/api/v1" if gv == "v1" else f"/apis/{gv}"):
                return {
                    "kind": "APIResourceList",
                    "groupVersion": gv,
                    "resources": [
                        {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
                         "verbs": ["get", "list", "patch", "delete"]}
                        for name, kind, namespaced in RESOURCES[gv]
                    ],
                }  # fmt: skip
        return None


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ApiServer, Path]]:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the client's discovery cache goes there
    server_state = ApiServer()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            body = yaml.safe_load(raw) if raw else None
            server_state.requests.append(
                (self.command, url.path, parse_qs(url.query), self.headers.get("Content-Type", ""), body)
            )
            found = server_state.discovery(url.path)
            if self.command == "GET" and found is not None:
                return self._send(200, found)
            if self.command == "PATCH":
                server_state.objects[url.path] = body
                return self._send(200, body)
            if self.command == "DELETE":  # the API answers with the object it deletes
                return self._send(200, server_state.objects.pop(url.path))
            if url.path in server_state.objects:
                return self._send(200, server_state.objects[url.path])
            listed = [obj for path, obj in server_state.objects.items() if path.rsplit("/", 1)[0] == url.path]
            if listed or url.path.endswith(("/deployments", "/statefulsets", "/pods", "/applications")):
                return self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": listed})
            return self._send(
                404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            )

        do_GET = do_PATCH = do_DELETE = _handle

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    yield server_state, kubeconfig
    server.shutdown()


def deployment(name: str, wanted: int, available: int, generation: int = 1, observed: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "argocd", "generation": generation},
        "spec": {"replicas": wanted, "selector": {}, "template": {}},
        "status": {"observedGeneration": observed, "updatedReplicas": available, "availableReplicas": available},
    }


def test_apply_is_a_forced_server_side_apply_with_our_field_manager(api) -> None:
    server, kubeconfig = api
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k", "namespace": "kube-system"}}
    Cluster(kubeconfig).apply(secret)
    [patch] = [r for r in server.requests if r[0] == "PATCH"]
    _method, path, query, content_type, body = patch
    assert path == "/api/v1/namespaces/kube-system/secrets/k"
    assert content_type == "application/apply-patch+yaml"
    assert query["fieldManager"] == [FIELD_MANAGER]
    assert query["force"] == ["true"]
    assert body == secret


def test_a_kind_defined_by_a_just_applied_definition_is_found(api) -> None:
    server, kubeconfig = api
    cluster = Cluster(kubeconfig)
    assert cluster.applications() == [], "no Application kind yet"
    cluster.apply({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "applications.argoproj.io"}})  # fmt: skip
    application = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                   "metadata": {"name": "root", "namespace": "argocd"}}  # fmt: skip
    cluster.apply(application)
    assert "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/root" in server.objects


def test_exists_is_false_for_what_the_server_does_not_have(api) -> None:
    _server, kubeconfig = api
    cluster = Cluster(kubeconfig)
    assert cluster.exists("v1", "Secret", "nope", "kube-system") is False
    assert cluster.exists("argoproj.io/v1alpha1", "Application", "root", "argocd") is False
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "yes", "namespace": "kube-system"}})
    assert cluster.exists("v1", "Secret", "yes", "kube-system") is True


def test_a_workload_is_ready_only_when_its_newest_spec_is_rolled_out(api) -> None:
    server, kubeconfig = api
    base = "/apis/apps/v1/namespaces/argocd/deployments/"
    server.objects[base + "done"] = deployment("done", 1, 1)
    server.objects[base + "starting"] = deployment("starting", 1, 0)
    server.objects[base + "old-spec"] = deployment("old-spec", 1, 1, generation=2, observed=1)
    cluster = Cluster(kubeconfig)
    assert cluster.workloads_ready("argocd") == ["Deployment/starting", "Deployment/old-spec"]
    assert cluster.workloads_ready("argocd", [("Deployment", "done"), ("Deployment", "absent")]) == [
        "Deployment/absent (missing)"
    ]


def test_applications_report_sync_health_and_what_went_wrong(api) -> None:
    server, kubeconfig = api
    cluster = Cluster(kubeconfig)
    cluster.apply({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "applications.argoproj.io"}})  # fmt: skip
    server.objects["/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/workload"] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "workload", "namespace": "argocd"},
        "status": {
            "sync": {"status": "OutOfSync"},
            "health": {"status": "Degraded"},
            "conditions": [{"type": "SyncError", "message": "one or more objects failed to apply"}],
            "operationState": {"message": "waiting for healthy state of apps/Deployment/api-gateway"},
        },
    }
    [status] = cluster.applications()
    assert (status.name, status.sync, status.health, status.done) == ("workload", "OutOfSync", "Degraded", False)
    assert status.message == (
        "one or more objects failed to apply; waiting for healthy state of apps/Deployment/api-gateway"
    )


def test_deleting_pods_by_selector_deletes_each_one(api) -> None:
    server, kubeconfig = api
    pods = "/api/v1/namespaces/kube-system/pods/"
    for name in ("a", "b"):
        server.objects[pods + name] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}}
    assert Cluster(kubeconfig).delete_pods("kube-system", "name=sealed-secrets-controller") == 2
    assert [r[1] for r in server.requests if r[0] == "DELETE"] == [pods + "a", pods + "b"]
