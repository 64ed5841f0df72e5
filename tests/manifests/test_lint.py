"""`invoke lint` on the repository, and on copies of it broken on purpose, one way each."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.gitops.lint import lint
from devtools.gitops.manifests import ROOT

COPIED = ["base", "overlays", "sealed-secrets", "clusters", ".yamllint.yaml"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the repository's manifests in a git work tree of its own."""
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        elif source.exists():
            shutil.copy(source, tmp_path / name)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def problems_of(repo: Path) -> list[str]:
    return lint(repo, log=lambda *_: None)


def test_the_repository_copy_is_clean(repo: Path) -> None:
    assert problems_of(repo) == []


def test_a_plaintext_secret_is_refused(repo: Path) -> None:
    (repo / "overlays/vagrant/leak.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: leak\nstringData:\n  password: hunter2\n"
    )
    edit(
        repo / "overlays/vagrant/kustomization.yaml",
        "  - ../../sealed-secrets/vagrant\n",
        "  - ../../sealed-secrets/vagrant\n  - leak.yaml\n",
    )
    problems = problems_of(repo)
    assert "overlays/vagrant/leak.yaml: Secret/leak holds data; seal it (invoke seal-secrets)" in problems
    assert "overlays/vagrant: Secret/leak: a Secret with data in git; seal it (invoke seal-secrets)" in problems


def test_an_unpinned_image_is_refused(repo: Path) -> None:
    text = (repo / "overlays/vagrant/kustomization.yaml").read_text()
    tag = text.split("api-gateway\n    newTag: ")[1].split("\n")[0]
    edit(repo / "overlays/vagrant/kustomization.yaml", f"newTag: {tag}", "newTag: latest")
    assert problems_of(repo) == [
        "overlays/vagrant: Deployment/api-gateway: image 'registry.moviestream.internal/moviestream/api-gateway:latest' "
        "needs an immutable tag (a version or a git SHA, never latest)"
    ]


def test_a_missing_cpu_request_is_refused(repo: Path) -> None:
    edit(
        repo / "base/inventory-app/deployment.yaml",
        "            requests:\n              cpu: 100m\n",
        "            requests:\n",
    )
    problems = problems_of(repo)
    assert "overlays/vagrant: Deployment/inventory-app: container inventory-app has no cpu request" in problems
    assert all("cpu request" in problem for problem in problems)


def test_a_wrong_hpa_bound_is_refused(repo: Path) -> None:
    edit(repo / "base/api-gateway/hpa.yaml", "maxReplicas: 3", "maxReplicas: 5")
    problems = problems_of(repo)
    assert "overlays/vagrant: HorizontalPodAutoscaler/api-gateway: replicas must be 1 to 3, are 1 to 5" in problems


def test_replicas_on_an_autoscaled_deployment_are_refused(repo: Path) -> None:
    edit(repo / "base/api-gateway/deployment.yaml", "spec:\n  # No replicas", "spec:\n  replicas: 2\n  # No replicas")
    assert "overlays/vagrant: Deployment/api-gateway: sets spec.replicas, but a HorizontalPodAutoscaler owns it" in (
        problems_of(repo)
    )


def test_a_schema_error_is_refused_with_its_path(repo: Path) -> None:
    edit(repo / "base/inventory-app/service.yaml", "      port: 8080", "      port: 8080\n      protocl: TCP")
    problems = problems_of(repo)
    assert (
        "base/inventory-app: Service/inventory-app: spec.ports.0: Additional properties are not allowed "
        "('protocl' was unexpected) (Kubernetes 1.34.0 schema)"
    ) in problems


def test_a_custom_resource_schema_error_is_refused(repo: Path) -> None:
    edit(repo / "sealed-secrets/vagrant/rabbitmq-sealedsecret.yaml", "encryptedData:", "encryptedDta:")
    problems = problems_of(repo)
    assert any(
        p.startswith("sealed-secrets/vagrant: SealedSecret/rabbitmq: spec: Additional properties are not allowed")
        for p in problems
    )


def test_a_credential_literal_is_refused(repo: Path) -> None:
    edit(
        repo / "base/api-gateway/deployment.yaml",
        "          env:\n",
        "          env:\n            - name: RABBITMQ_PASSWORD_OVERRIDE\n              value: guest\n",
    )
    assert (
        "overlays/vagrant: Deployment/api-gateway: container api-gateway sets RABBITMQ_PASSWORD_OVERRIDE as a literal; "
        "read it from a Secret (valueFrom.secretKeyRef)"
    ) in problems_of(repo)


def test_a_secret_reference_nothing_provides_is_refused(repo: Path) -> None:
    edit(
        repo / "base/billing-app/statefulset.yaml",
        "name: billing-db\n                  key: password",
        "name: billing-db\n                  key: pasword",
    )
    assert (
        "overlays/vagrant: StatefulSet/billing-app: PGPASSWORD reads billing-db/pasword, which no SealedSecret holds"
        in (problems_of(repo))
    )


def test_an_unpinned_remote_base_is_refused(repo: Path) -> None:
    remote = repo / "clusters/vagrant/extra"
    remote.mkdir(parents=True)
    (remote / "kustomization.yaml").write_text(
        "resources:\n  - https://raw.githubusercontent.com/argoproj/argo-cd/stable/manifests/install.yaml\n"
    )
    assert problems_of(repo) == [
        "clusters/vagrant/extra: remote resource https://raw.githubusercontent.com/argoproj/argo-cd/stable/manifests/"
        "install.yaml is not pinned to an exact version"
    ]


def test_a_yaml_style_error_names_file_and_line(repo: Path) -> None:
    edit(repo / "base/rabbitmq/service.yaml", "  selector:", "  selector:   ")
    assert "base/rabbitmq/service.yaml:6:12: trailing spaces (trailing-spaces)" in problems_of(repo)


def test_a_broken_kustomization_is_reported(repo: Path) -> None:
    edit(repo / "overlays/cloud/kustomization.yaml", "  - api-gateway-ingress.yaml\n", "  - missing.yaml\n")
    [problem] = [p for p in problems_of(repo) if p.startswith("overlays/cloud")]
    assert problem.startswith("overlays/cloud: kustomize build failed:")


def test_an_application_without_the_cluster_settings_is_refused(repo: Path) -> None:
    edit(repo / "clusters/vagrant/apps/kustomization.yaml", "  - ../../platform/cluster-settings\n", "")
    problems = problems_of(repo)
    assert (
        "clusters/vagrant/apps: Application/argocd: REPO_URL is not filled in "
        "(include ../settings and clusters/platform/cluster-settings)"
    ) in problems
    assert (
        "clusters/vagrant/apps: Application/workload: overlays/CLUSTER is not filled in "
        "(include ../settings and clusters/platform/cluster-settings)"
    ) in problems


def test_rabbitmq_without_its_memory_limit_is_refused(repo: Path) -> None:
    edit(repo / "base/rabbitmq/statefulset.yaml", "resource: limits.memory", "resource: requests.memory")
    assert (
        "overlays/vagrant: StatefulSet/rabbitmq: RabbitMQ must get its memory limit (RABBITMQ_MEMORY_LIMIT from "
        "limits.memory) as total_memory_available_override_value, or it sizes its alarm from the node's RAM"
    ) in problems_of(repo)


def test_a_secret_volume_with_a_key_nothing_provides_is_refused(repo: Path) -> None:
    edit(repo / "base/postgres/statefulset.yaml", "{key: password, path: password}", "{key: pasword, path: password}")
    problems = problems_of(repo)
    assert (
        "overlays/vagrant: StatefulSet/billing-db: volume credentials mounts billing-db/pasword, which no SealedSecret holds"
        in problems
    )


def test_a_password_file_variable_is_not_a_credential_literal_but_a_password_is(repo: Path) -> None:
    statefulset = repo / "base/postgres/statefulset.yaml"
    edit(statefulset, "value: /run/secrets/postgres/password", "value: hunter2")
    assert (
        "overlays/vagrant: StatefulSet/inventory-db: container postgres sets POSTGRES_PASSWORD_FILE as a literal; "
        "read it from a Secret (valueFrom.secretKeyRef)"
    ) in problems_of(repo)


def test_a_dashboard_left_out_of_grafanas_configmap_fails_lint(repo: Path) -> None:
    (repo / "base/grafana/dashboards/extra.json").write_text('{"title": "extra", "panels": []}\n')
    (repo / "base/grafana/dashboards/broken.json").write_text('{"title": \n')
    edit(repo / "base/grafana/kustomization.yaml", "      - dashboards/moviestream.json\n", "")
    problems = problems_of(repo)
    assert "base/grafana/dashboards/extra.json: not in the grafana-dashboards configMapGenerator; list it" in problems
    assert (
        "base/grafana/dashboards/moviestream.json: not in the grafana-dashboards configMapGenerator; list it"
        in problems
    )
    assert any(problem.startswith("base/grafana/dashboards/broken.json: not JSON") for problem in problems)


def test_a_cluster_role_that_writes_or_reads_secrets_fails_lint(repo: Path) -> None:
    edit(repo / "base/headlamp/clusterrole.yaml", "      - configmaps\n", "      - configmaps\n      - secrets\n")
    edit(repo / "base/alloy/clusterrole.yaml", "    verbs: [get]\n", "    verbs: [get, create]\n")
    problems = problems_of(repo)
    for cluster in ("vagrant", "cloud"):
        assert any(
            p.startswith(f"clusters/{cluster}/observability: ClusterRole/observability-headlamp-viewer: reads secrets")
            for p in problems
        )
        assert (
            f"clusters/{cluster}/observability: ClusterRole/observability-alloy: may create; only get, list and watch"
        ) in problems
