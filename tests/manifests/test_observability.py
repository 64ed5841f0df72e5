"""The observability stack reaches exactly what it needs: NetworkPolicies and Prometheus's targets, as rendered."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest
import yaml

from devtools import ROOT
from devtools.gitops.manifests import render

Pod = tuple[str, dict[str, str]]  # namespace, labels


@cache
def rendered() -> list[dict[str, Any]]:
    objects = render(ROOT / "overlays" / "vagrant") + render(ROOT / "clusters" / "vagrant" / "observability")
    return [item.obj for item in objects]


def pods() -> dict[str, tuple[Pod, list[int]]]:
    """Every workload's pod: its namespace and labels, and its container ports."""
    found = {}
    for obj in rendered():
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}:
            template = obj["spec"]["template"]
            ports = [p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports") or []]
            found[obj["metadata"]["name"]] = ((obj["metadata"]["namespace"], template["metadata"]["labels"]), ports)
    return found


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        assert expression["operator"] == "In", "the test reads In only"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def peer_matches(peer: dict[str, Any], own_namespace: str, other: Pod) -> bool:
    namespace, labels = other
    if "ipBlock" in peer:
        return False  # addresses outside the pod network (the API server); no pod is one
    if "namespaceSelector" in peer:
        namespace_ok = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        namespace_ok = namespace == own_namespace
    return namespace_ok and selects(peer.get("podSelector"), labels)


def allowed(direction: str, pod: Pod, other: Pod, port: int) -> bool:
    """Whether the policies of `pod`'s namespace let it accept (Ingress) or open (Egress) a connection to `other`."""
    namespace, labels = pod
    policies = [
        obj
        for obj in rendered()
        if obj["kind"] == "NetworkPolicy"
        and obj["metadata"]["namespace"] == namespace
        and direction in obj["spec"].get("policyTypes", [])
        and selects(obj["spec"]["podSelector"], labels)
    ]
    if not policies:
        return True
    key, peers_key = direction.lower(), "from" if direction == "Ingress" else "to"
    for policy in policies:
        for rule in policy["spec"].get(key) or []:
            peers, ports = rule.get(peers_key), [p["port"] for p in rule.get("ports") or []]
            if (not peers or any(peer_matches(peer, namespace, other) for peer in peers)) and (
                not ports or port in ports
            ):
                return True
    return False


def connects(source: str, target: str, port: int) -> bool:
    found = pods()
    return allowed("Egress", found[source][0], found[target][0], port) and allowed(
        "Ingress", found[target][0], found[source][0], port
    )


def prometheus_targets() -> set[tuple[str, int]]:
    """(workload, container port) that the moviestream job's keep rule selects."""
    config = next(
        obj for obj in rendered() if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("prometheus")
    )
    job = next(
        j for j in yaml.safe_load(config["data"]["prometheus.yml"])["scrape_configs"] if j["job_name"] == "moviestream"
    )
    keep = next(rule for rule in job["relabel_configs"] if rule.get("action") == "keep")
    namespaces = job["kubernetes_sd_configs"][0]["namespaces"]["names"]
    return {
        (name, port)
        for name, ((namespace, labels), ports) in pods().items()
        for port in ports
        if namespace in namespaces and re.fullmatch(keep["regex"], f"{labels['app.kubernetes.io/name']};{port}")
    }


def test_prometheus_scrapes_the_three_services_and_rabbitmqs_plugin() -> None:
    assert prometheus_targets() == {
        ("api-gateway", 3000),
        ("inventory-app", 8080),
        ("billing-app", 8080),
        ("rabbitmq", 15692),
    }


def test_every_prometheus_target_is_reachable_through_both_namespaces_policies() -> None:
    for workload, port in prometheus_targets():
        assert connects("prometheus", workload, port), f"prometheus -> {workload}:{port}"
    assert connects("prometheus", "kube-state-metrics", 8080)


@pytest.mark.parametrize(
    ("source", "target", "port"),
    [("alloy", "loki", 3100), ("grafana", "loki", 3100), ("grafana", "prometheus", 9090)],
)
def test_the_stack_reaches_what_it_needs(source: str, target: str, port: int) -> None:
    assert connects(source, target, port)


@pytest.mark.parametrize(
    ("source", "target", "port"),
    [
        ("prometheus", "inventory-db", 5432),
        ("prometheus", "rabbitmq", 5672),
        ("prometheus", "loki", 3100),
        ("alloy", "prometheus", 9090),
        ("alloy", "inventory-app", 8080),
        ("grafana", "kube-state-metrics", 8080),
        ("headlamp", "prometheus", 9090),
        ("api-gateway", "grafana", 3000),
        ("inventory-app", "loki", 3100),
        ("loki", "prometheus", 9090),
    ],
)
def test_nothing_else_is_reachable(source: str, target: str, port: int) -> None:
    assert not connects(source, target, port)
