"""invoke lint sums every request on a cluster against its VMs, and refuses clashing NodePorts."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.gitops import capacity, cluster_model

from .test_lint import edit, repo  # noqa: F401 (the fixture)


def vagrant_problems(root: Path) -> list[str]:
    return [problem for problem in cluster_model.problems(root) if problem.startswith("cluster vagrant")]


def test_the_vagrant_cluster_fits_its_vms_with_the_autoscalers_at_their_maximum(repo: Path) -> None:  # noqa: F811
    model = cluster_model.load(repo, "vagrant")
    assert capacity.requests_fit_the_nodes(model) == []
    workload = capacity.rendered_requests(model.apps["workload"].objects or [], nodes=2)
    one_replica_each = capacity.rendered_requests(
        [item for item in model.apps["workload"].objects or [] if item.kind != "HorizontalPodAutoscaler"], nodes=2
    )
    assert workload - one_replica_each == capacity.Requests(400, 512), "two more gateways and inventory-apps"


def test_smaller_vms_fail_lint(repo: Path) -> None:  # noqa: F811
    edit(repo / "clusters/vagrant/vagrant.env", "VAGRANT_AGENT_MEMORY=4096", "VAGRANT_AGENT_MEMORY=1024")
    problems = vagrant_problems(repo)
    assert len(problems) == 1
    assert problems[0].startswith("cluster vagrant: its pods request 1690m CPU, 2828Mi memory at their most replicas")
    assert "more than the 3000m CPU, 2560Mi memory the VMs (4000m CPU, 5120Mi memory) leave" in problems[0]


def test_a_request_too_large_for_the_vms_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(repo / "base/loki/statefulset.yaml", "memory: 192Mi", "memory: 6Gi")
    [problem] = vagrant_problems(repo)
    assert "its pods request 1690m CPU, 8780Mi memory" in problem


def test_an_application_whose_requests_are_unknown_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(repo / "clusters/vagrant/apps/storage.yaml", "name: storage\n", "name: nfs\n")
    assert (
        "cluster vagrant: Application/nfs is not rendered here, so its requests are unknown: "
        "add what its manifests request to NOT_RENDERED in devtools/gitops/capacity.py"
    ) in vagrant_problems(repo)


def test_a_malformed_capacity_file_is_named(repo: Path) -> None:  # noqa: F811
    edit(repo / "clusters/vagrant/vagrant.env", "VAGRANT_MASTER_CPUS=2", "VAGRANT_MASTER_CPUS=two")
    [problem] = vagrant_problems(repo)
    assert problem.startswith("cluster vagrant: ")
    assert "vagrant.env: needs VAGRANT_<MASTER|AGENT>_<CPUS|MEMORY>" in problem


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (
            {"containers": [{"resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}}}, {}]},
            capacity.Requests(500, 1024),
        ),
        (
            {
                "initContainers": [{"resources": {"requests": {"cpu": "1", "memory": "64M"}}}],
                "containers": [{"resources": {"requests": {"cpu": "250m", "memory": "128Mi"}}}],
            },
            capacity.Requests(1000, 128),
        ),
    ],
)
def test_a_pod_requests_its_containers_sum_or_its_largest_init_container(pod, expected) -> None:
    assert capacity.pod_requests(pod) == expected


@pytest.mark.parametrize("quantity", ["lots", "1Qi", "--1"])
def test_an_unreadable_memory_quantity_is_refused(quantity: str) -> None:
    with pytest.raises(ValueError, match="not a memory quantity"):
        capacity.memory_mib(quantity)


@pytest.mark.parametrize(("quantity", "mib"), [("1Ti", 1048576), ("1e9", 954), ("512Mi", 512), ("0.5Gi", 512)])
def test_memory_quantities_read_as_kubernetes_reads_them(quantity: str, mib: int) -> None:
    assert capacity.memory_mib(quantity) == mib


@pytest.mark.parametrize(("quantity", "millis"), [("100m", 100), ("2", 2000), ("0.25", 250), ("1e-1", 100)])
def test_cpu_quantities_read_as_kubernetes_reads_them(quantity: str, millis: int) -> None:
    assert capacity.cpu_millis(quantity) == millis


def test_a_node_port_used_twice_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(repo / "clusters/vagrant/observability/kustomization.yaml", "value: 30044", "value: 30030")
    assert any(
        "Service/headlamp (waves 1/0): nodePort 30030 is already" in problem and "Service/grafana" in problem
        for problem in vagrant_problems(repo)
    )


def test_a_node_port_outside_the_range_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(repo / "clusters/vagrant/observability/kustomization.yaml", "value: 30044", "value: 4466")
    assert (
        "cluster vagrant: observability: Service/headlamp (waves 1/0): nodePort 4466 is outside (30000, 32767)"
        in vagrant_problems(repo)
    )
