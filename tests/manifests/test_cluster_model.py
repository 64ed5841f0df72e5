"""The rules that hold across a cluster's Applications, as Argo CD syncs them, on copies broken one way each."""

from __future__ import annotations

from pathlib import Path

from devtools import ROOT
from devtools.gitops import cluster_model

from .test_lint import edit, problems_of, repo  # noqa: F401 (the fixture)


def model_problems(root: Path) -> list[str]:
    return cluster_model.problems(root)


def test_the_clusters_are_modelled_from_their_root_application(repo: Path) -> None:  # noqa: F811
    assert cluster_model.cluster_names(repo) == ["cloud", "e2e", "vagrant"]
    model = cluster_model.load(repo, "vagrant")
    assert model.problems == []
    assert sorted(model.apps) == ["argocd", "observability", "root", "sealed-secrets", "storage", "workload"]
    assert model.apps["argocd"].objects is None, "a remote base is not rendered offline"
    assert model.apps["storage"].provides == [("StorageClass", "shared-nfs")]
    assert model.apps["workload"].wave == 0
    assert {item.kind for item in model.apps["workload"].objects or []} >= {"HorizontalPodAutoscaler", "SealedSecret"}


def test_an_autoscaler_in_an_earlier_wave_than_its_deployment_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(repo / "base/inventory-app/hpa.yaml", 'argocd.argoproj.io/sync-wave: "3"', 'argocd.argoproj.io/sync-wave: "0"')
    problems = problems_of(repo)
    for cluster in ("cloud", "e2e", "vagrant"):
        assert (
            f"cluster {cluster}: workload: HorizontalPodAutoscaler/inventory-app (waves 0/0) needs "
            "Deployment/inventory-app, which comes later (waves 0/2): Argo CD would wait for ever on this wave"
        ) in problems
    assert len(problems) == 3


def test_storage_synced_after_the_workload_that_claims_it_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(repo / "clusters/vagrant/apps/storage.yaml", 'sync-wave: "-5"', 'sync-wave: "5"')
    problems = model_problems(repo)
    assert (
        "cluster vagrant: workload: StatefulSet/inventory-db (waves 0/1) needs StorageClass/shared-nfs, "
        "which comes later (waves 5/0): Argo CD would wait for ever on this wave"
    ) in problems


def test_a_pod_reading_a_secret_nothing_makes_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(
        repo / "base/inventory-app/deployment.yaml",
        "                name: inventory-app\n          env:\n",
        "                name: inventory-app\n            - secretRef: {name: nowhere}\n          env:\n",
    )
    problems = model_problems(repo)
    assert (
        "cluster vagrant: workload: Deployment/inventory-app (waves 0/2) needs Secret/nowhere, "
        "which nothing in the cluster makes"
    ) in problems


def test_a_namespace_nothing_creates_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(repo / "clusters/vagrant/apps/storage.yaml", "      - CreateNamespace=true\n", "")
    assert (
        "cluster vagrant: Application/storage deploys into namespace nfs-provisioner, which nothing creates "
        "(add a Namespace, or syncOptions CreateNamespace=true)"
    ) in model_problems(repo)


def test_a_project_missing_a_kind_its_application_deploys_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(
        repo / "clusters/platform/projects/workload.yaml",
        "    - {group: autoscaling, kind: HorizontalPodAutoscaler}\n",
        "",
    )
    problems = model_problems(repo)
    assert "cluster vagrant: AppProject/workload does not allow HorizontalPodAutoscaler (workload)" in problems


def test_a_project_allowing_a_kind_nothing_deploys_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(
        repo / "clusters/platform/projects/workload.yaml",
        "    - {group: apps, kind: Deployment}\n",
        "    - {group: apps, kind: Deployment}\n    - {group: batch, kind: Job}\n",
    )
    assert (
        "cluster vagrant: AppProject/workload allows batch/Job, which none of its Applications deploys"
        in model_problems(repo)
    )


def test_an_application_from_a_repository_its_project_does_not_allow_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(
        repo / "clusters/vagrant/projects/kustomization.yaml",
        "        value: https://kubernetes-sigs.github.io/nfs-subdir-external-provisioner/\n",
        "        value: https://example.invalid/charts/\n",
    )
    assert (
        "cluster vagrant: AppProject/platform does not allow storage's source "
        "https://kubernetes-sigs.github.io/nfs-subdir-external-provisioner/"
    ) in model_problems(repo)


def test_a_root_whose_projects_differ_from_what_argo_cd_syncs_fails_lint(repo: Path) -> None:  # noqa: F811
    """A second bootstrap would strip what apps/ adds, until the root Application heals it."""
    edit(repo / "clusters/vagrant/root/kustomization.yaml", "  - ../projects\n", "")
    assert model_problems(repo) == [
        "cluster vagrant: AppProject/platform in clusters/vagrant/root differs from the one its apps/ syncs "
        "(include the same components in both)"
    ]


def test_observability_runs_on_vagrant_and_cloud_after_storage_sealed_secrets_and_the_workload() -> None:
    for cluster in ("vagrant", "cloud"):
        apps = cluster_model.load(ROOT, cluster).apps
        assert apps["sealed-secrets"].wave < apps["workload"].wave < apps["observability"].wave
        assert "storage" not in apps or apps["storage"].wave < apps["observability"].wave
    assert "observability" not in cluster_model.load(ROOT, "e2e").apps


def test_observability_synced_before_the_storage_it_claims_fails_lint(repo: Path) -> None:  # noqa: F811
    edit(repo / "clusters/platform/observability/observability.yaml", 'sync-wave: "1"', 'sync-wave: "-6"')
    assert (
        "cluster vagrant: observability: StatefulSet/loki (waves -6/1) needs StorageClass/shared-nfs, "
        "which comes later (waves -5/0): Argo CD would wait for ever on this wave"
    ) in model_problems(repo)
