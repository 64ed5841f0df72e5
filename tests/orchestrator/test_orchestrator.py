from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from devtools.gitops.manifests import ROOT
from devtools.testing.tools import needs_tool

from .conftest import Sandbox


def test_create_brings_up_the_cluster_and_hands_it_to_argo_cd(sandbox: Sandbox) -> None:
    result = sandbox.run("create")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "cluster created"
    assert "Gateway:      http://192.168.56.10:3000   (API docs: http://192.168.56.10:3000/docs)" in lines
    assert f"kubectl:      export KUBECONFIG={sandbox.root}/.cluster/kubeconfig" in lines
    assert "argocd-initial-admin-secret" in result.stdout
    vagrant = sandbox.calls_of("vagrant")
    assert vagrant[0] == "vagrant up --provision"
    assert not any("destroy" in call for call in vagrant)
    kubectl = sandbox.calls_of("kubectl")
    order = [
        next(
            i
            for i, call in enumerate(kubectl)
            if " create secret tls sealed-secrets-key-moviestream -n kube-system" in call
        ),
        kubectl.index(
            f"kubectl apply --server-side --force-conflicts -k {sandbox.root}/clusters/vagrant/sealed-secrets"
        ),
        kubectl.index(f"kubectl apply --server-side --force-conflicts -k {sandbox.root}/clusters/vagrant/argocd"),
        kubectl.index(f"kubectl apply -k {sandbox.root}/clusters/vagrant/root"),
    ]
    assert order == sorted(order), "key, controller, Argo CD, then the root application"
    assert "sealedsecrets.bitnami.com/sealed-secrets-key: active" in sandbox.applied.read_text()


def test_kubeconfig_goes_to_its_own_file_with_the_masters_address(sandbox: Sandbox) -> None:
    assert sandbox.run("create").returncode == 0
    kubeconfig = sandbox.root / ".cluster" / "kubeconfig"
    assert "server: https://192.168.56.10:6443" in kubeconfig.read_text()
    assert "127.0.0.1" not in kubeconfig.read_text()
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert not (sandbox.home / ".kube").exists()
    assert all(
        call.endswith(f"KUBECONFIG={kubeconfig}")
        for call in sandbox.calls.read_text().splitlines()
        if call.startswith("kubectl")
    )


def test_the_master_address_follows_its_setting(sandbox: Sandbox) -> None:
    assert sandbox.run("create", VAGRANT_MASTER_IP="10.20.30.40").returncode == 0
    assert "server: https://10.20.30.40:6443" in (sandbox.root / ".cluster" / "kubeconfig").read_text()


def test_create_twice_repairs_and_destroys_nothing(sandbox: Sandbox) -> None:
    assert sandbox.run("create").returncode == 0
    second = sandbox.run("create")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1] == "cluster created"
    assert sandbox.calls_of("vagrant").count("vagrant up --provision") == 2
    assert not any("destroy" in call or " delete " in call for call in sandbox.calls.read_text().splitlines())


def test_create_derives_the_repository_from_origin_and_says_to_push(sandbox: Sandbox) -> None:
    result = sandbox.run("create")
    settings = (sandbox.root / "clusters/vagrant/repository/repository.env").read_text()
    assert "REPO_URL=https://github.com/someone/fork.git\n" in settings
    assert "REPO_REVISION=main\n" in settings
    assert "commit and push clusters/vagrant/repository/repository.env" in result.stderr
    again = sandbox.run("create")
    assert "commit and push" not in again.stderr


def test_stop_halts_and_never_destroys(sandbox: Sandbox) -> None:
    result = sandbox.run("stop")
    assert result.returncode == 0
    assert result.stdout.strip().splitlines()[-1] == "cluster stopped"
    assert sandbox.calls_of("vagrant") == ["vagrant halt"]


def test_start_boots_without_provisioning_and_waits_for_the_nodes(sandbox: Sandbox) -> None:
    result = sandbox.run("start")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "cluster started"
    assert sandbox.calls_of("vagrant")[0] == "vagrant up --no-provision"
    assert "kubectl get nodes --no-headers" in sandbox.calls_of("kubectl")


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("vagrant", "vagrant (https://developer.hashicorp.com/vagrant/install)"),
        ("kubectl", "kubectl (https://kubernetes.io/docs/tasks/tools/)"),
        ("VBoxManage", "VirtualBox"),
    ],
)
def test_a_missing_prerequisite_is_named_and_nothing_runs(sandbox: Sandbox, missing: str, message: str) -> None:
    (sandbox.root.parent / "bin" / missing).unlink()
    result = sandbox.run("create")
    assert result.returncode == 1
    assert "missing prerequisites" in result.stderr
    assert message in result.stderr
    assert sandbox.calls_of("vagrant") == []


def test_create_without_the_sealing_key_explains_how_to_make_one(sandbox: Sandbox, tmp_path) -> None:
    result = sandbox.run("create", MOVIESTREAM_KEYS_DIR=str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "invoke sealing-key --force" in result.stderr
    assert sandbox.calls_of("vagrant") == []


def test_create_refuses_a_key_that_does_not_match_the_certificate(sandbox: Sandbox) -> None:
    from devtools.gitops import sealing

    other = sandbox.root.parent / "keys" / "vagrant" / "sealing-key.pem"
    other.write_bytes(sealing.new_key_pair().private_key_pem)
    result = sandbox.run("create")
    assert result.returncode == 1
    assert "does not belong to sealed-secrets/vagrant/sealing-cert.pem" in result.stderr


def test_create_gives_up_with_a_diagnosis_when_an_application_stays_unhealthy(sandbox: Sandbox) -> None:
    result = sandbox.run("create", FAKE_APPS="stuck", ORCHESTRATOR_TIMEOUT="1")
    assert result.returncode == 1
    assert "workload OutOfSync Progressing" in result.stdout
    assert "--- applications" in result.stderr
    assert "not every application was Synced and Healthy within 1s" in result.stderr
    assert "cluster created" not in result.stdout


def test_destroy_asks_first_and_refuses_without_a_terminal(sandbox: Sandbox) -> None:
    result = sandbox.run("destroy", stdin="yes\n")
    assert result.returncode == 1
    assert "pass -y" in result.stderr
    assert sandbox.calls_of("vagrant") == []


def test_destroy_with_yes_deletes_the_vms_and_the_cluster_files(sandbox: Sandbox) -> None:
    assert sandbox.run("create").returncode == 0
    result = sandbox.run("destroy", "-y")
    assert result.returncode == 0
    assert result.stdout.strip().splitlines()[-1] == "cluster destroyed"
    assert "vagrant destroy -f" in sandbox.calls_of("vagrant")
    assert not (sandbox.root / ".cluster" / "kubeconfig").exists()


def test_kubeconfig_command_prints_the_export_line(sandbox: Sandbox) -> None:
    result = sandbox.run("kubeconfig")
    assert result.returncode == 0
    assert result.stdout.strip() == f"export KUBECONFIG={sandbox.root}/.cluster/kubeconfig"


def test_an_unknown_command_shows_usage_and_exits_2(sandbox: Sandbox) -> None:
    result = sandbox.run("launch")
    assert result.returncode == 2
    assert "Usage: ./orchestrator.sh COMMAND" in result.stderr
    assert "unknown command 'launch'" in result.stderr


def test_status_shows_vms_nodes_and_applications(sandbox: Sandbox) -> None:
    assert sandbox.run("create").returncode == 0
    result = sandbox.run("status")
    assert result.returncode == 0
    assert "master running" in result.stdout
    assert "kubectl get applications.argoproj.io -n argocd" in sandbox.calls_of("kubectl")


@needs_tool("shellcheck")
def test_every_shell_script_is_shellcheck_clean() -> None:
    scripts = [
        ROOT / "orchestrator.sh",
        ROOT / "test.sh",
        ROOT / ".ci" / "run",
        *sorted((ROOT / "scripts").glob("*.sh")),
    ]
    result = subprocess.run(
        ["shellcheck", "--severity=style", *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def _vagrant_validate(root, home) -> subprocess.CompletedProcess[str]:
    # --ignore-provider: the VirtualBox and libvirt blocks are not checked, so no
    # provider has to be installed; the machines, network and provisioners are.
    return subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"VAGRANT_HOME": str(home)},
        timeout=300,
    )


def _vagrant_project(tmp_path):
    """What the Vagrantfile reads, copied, so validating writes no .cluster/ into the checkout."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "Vagrantfile", root)
    shutil.copytree(ROOT / "scripts", root / "scripts")
    shutil.copytree(ROOT / "clusters", root / "clusters")
    return root


@needs_tool("vagrant")
def test_the_vagrantfile_validates(tmp_path) -> None:
    root = _vagrant_project(tmp_path)
    result = _vagrant_validate(root, tmp_path / "vagrant-home")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout
    assert (root / ".cluster" / "k3s-token").stat().st_mode & 0o077 == 0, "the join token is private"


@needs_tool("vagrant")
def test_vagrant_validate_catches_a_missing_provisioning_script(tmp_path) -> None:
    root = _vagrant_project(tmp_path)
    (root / "scripts" / "provision-node.sh").unlink()
    result = _vagrant_validate(root, tmp_path / "vagrant-home")
    assert result.returncode != 0
    assert "provision-node.sh" in result.stdout + result.stderr
