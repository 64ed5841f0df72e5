from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.gitops.manifests import ROOT
from devtools.testing.tools import needs_tool

from .conftest import Sandbox

SEAL_COMMIT = "Seal the vagrant cluster's secrets with its own key"


def test_the_first_create_seals_pushes_builds_and_hands_the_cluster_to_argo_cd(sandbox: Sandbox) -> None:
    result = sandbox.run("create")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "cluster created"
    assert "Gateway:      http://192.168.56.10:3000   (API docs: http://192.168.56.10:3000/docs)" in lines
    assert f"kubectl:      export KUBECONFIG={sandbox.root}/.cluster/kubeconfig" in lines
    assert any(line.startswith("Deploy:       git push cluster main") for line in lines)
    # Sealed with a key of this cluster's own, committed alone.
    assert sandbox.git("log", "-1", "--format=%s") == SEAL_COMMIT
    changed = sandbox.git("show", "--name-only", "--format=", "HEAD").split()
    assert changed
    assert all(name.startswith("sealed-secrets/vagrant/") for name in changed)
    assert (sandbox.home.parent / "keys" / "vagrant" / "sealing-key.pem").exists()
    # The master first, then the agent with the token that pins the server's CA.
    vagrant = sandbox.calls_of("vagrant")
    up = [call for call in vagrant if call.startswith("vagrant up")]
    assert up == [
        "vagrant up master --provision --provider virtualbox",
        "vagrant up agent --provision --provider virtualbox",
    ]
    token = sandbox.root / ".cluster" / "k3s-join-token"
    assert token.read_text().startswith("K10")
    assert token.stat().st_mode & 0o077 == 0
    # This commit is the cluster's main; the push credential stays in .cluster/.
    assert sandbox.git("rev-parse", "HEAD") == sandbox.git("--git-dir", str(sandbox.bare), "rev-parse", "main")
    assert sandbox.git("config", "remote.cluster.url") == "http://192.168.56.10:8418/moviestream.git"
    assert "moviestream:" not in (sandbox.root / ".git" / "config").read_text()
    assert (sandbox.root / ".cluster" / "git-credentials").stat().st_mode & 0o077 == 0
    password = (sandbox.root / ".cluster" / "git-password").read_text().strip()
    filled = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=http\nhost=192.168.56.10:8418\npath=moviestream.git\n\n",
        cwd=sandbox.root,
        env=sandbox.env | {"GIT_TERMINAL_PROMPT": "0"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"username=moviestream\npassword={password}\n" in filled, "git finds the push credential by itself"
    invoke = sandbox.calls_of("invoke")
    assert (
        invoke[-1] == f"invoke bootstrap --cluster vagrant --kubeconfig {sandbox.root}/.cluster/kubeconfig --timeout 5"
    )
    assert "invoke seal-secrets --cluster vagrant --commit" in invoke


def test_a_second_create_seals_nothing_new_pushes_nothing_and_repairs(sandbox: Sandbox) -> None:
    assert sandbox.run("create").returncode == 0
    head = sandbox.git("rev-parse", "HEAD")
    second = sandbox.run("create")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1] == "cluster created"
    assert sandbox.git("rev-parse", "HEAD") == head, "no second seal commit"
    assert "the cluster's main already holds" in second.stdout
    assert (
        sandbox.calls_of("invoke").count(
            f"invoke bootstrap --cluster vagrant --kubeconfig {sandbox.root}/.cluster/kubeconfig --timeout 5"
        )
        == 2
    )
    assert not any("destroy" in call or " delete " in call for call in sandbox.calls.read_text().splitlines())


def test_a_new_commit_is_pushed_on_the_next_create(sandbox: Sandbox) -> None:
    assert sandbox.run("create").returncode == 0
    sandbox.commit_file("NOTES.md", "more\n", "Notes")
    result = sandbox.run("create")
    assert result.returncode == 0, result.stderr
    assert "pushing" in result.stdout
    assert sandbox.git("--git-dir", str(sandbox.bare), "log", "-1", "--format=%s", "main") == "Notes"


def test_uncommitted_changes_are_named_and_only_the_commit_is_deployed(sandbox: Sandbox) -> None:
    (sandbox.root / "tasks.py").write_text((sandbox.root / "tasks.py").read_text() + "\n# edited\n")
    result = sandbox.run("create")
    assert result.returncode == 0, result.stderr
    assert "only commits are deployed:" in result.stderr
    assert f"{sandbox.git('log', '-1', '--format=%h')} {SEAL_COMMIT} goes to the cluster" in result.stderr
    assert "M tasks.py" in result.stderr
    assert "# edited" not in sandbox.git("--git-dir", str(sandbox.bare), "show", "main:tasks.py")


def test_a_cluster_main_with_commits_this_clone_lacks_is_not_overwritten(sandbox: Sandbox, tmp_path: Path) -> None:
    assert sandbox.run("create").returncode == 0
    other = tmp_path / "other"
    sandbox.git("clone", "-q", str(sandbox.bare), str(other), cwd=tmp_path)
    (other / "PROMOTED").write_text("x\n")
    sandbox.git("add", "PROMOTED", cwd=other)
    sandbox.git(
        "-c", "user.name=Master", "-c", "user.email=m@example.invalid", "commit", "-qm", "Deploy images", cwd=other
    )
    sandbox.git("push", "-q", "origin", "main", cwd=other)
    sandbox.commit_file("NOTES.md", "mine\n", "Mine")
    result = sandbox.run("create")
    assert result.returncode == 1
    assert "the cluster's main has commits this checkout lacks" in result.stderr
    assert "git pull cluster main" in result.stderr
    assert sandbox.git("--git-dir", str(sandbox.bare), "log", "-1", "--format=%s", "main") == "Deploy images"


def test_an_image_build_that_fails_twice_shows_its_log_and_hands_nothing_to_argo_cd(sandbox: Sandbox) -> None:
    result = sandbox.run("create", FAKE_BUILD="failed")
    assert result.returncode == 1
    assert "Step 3/9: pip install failed" in result.stderr
    assert "failed twice (log above); nothing was promoted" in result.stderr
    assert sandbox.calls_of("vagrant").count("vagrant ssh master -c sudo moviestream-builds retry") == 1
    assert not any(call.startswith("invoke bootstrap") for call in sandbox.calls_of("invoke"))
    assert "cluster created" not in result.stdout


def test_a_build_that_failed_once_is_built_again_and_create_goes_on(sandbox: Sandbox) -> None:
    result = sandbox.run("create", FAKE_BUILD="failed-once")
    assert result.returncode == 0, result.stderr
    assert "failed; building it once more (moviestream-builds retry)" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "cluster created"


def _fork(sandbox: Sandbox, tmp_path: Path) -> str:
    """A fork on 'GitHub': a bare repository the clone reaches through url.<bare>.insteadOf."""
    url = "https://github.com/someone/moviestream.git"
    bare = tmp_path / "fork.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    sandbox.git("config", f"url.file://{bare}.insteadOf", url)
    return url


def test_create_with_repo_follows_a_fork_and_starts_no_local_loop(sandbox: Sandbox, tmp_path: Path) -> None:
    fork = _fork(sandbox, tmp_path)
    result = sandbox.run("create", "--repo", fork)
    assert result.returncode == 1, "the fork lacks the commits create made: Argo CD would wait for ever"
    head = sandbox.git("log", "-1", "--format=%h %s")
    assert f"does not have this clone's commit {head}: git push origin main (the fork)" in result.stderr
    assert not sandbox.calls_of("vagrant"), "stopped before any VM was brought up"
    settings = (sandbox.root / "clusters/vagrant/settings/cluster.env").read_text()
    assert f"REPO_URL={fork}\n" in settings
    assert f"Argo CD follows {fork}" in sandbox.git("log", "--format=%s")
    sandbox.git("push", "-q", fork, "HEAD:refs/heads/main")
    result = sandbox.run("create")
    assert result.returncode == 0, result.stderr
    assert sandbox.git("remote") == "", "no cluster remote"
    assert sandbox.git("--git-dir", str(sandbox.bare), "for-each-ref") == "", "nothing pushed to the cluster"
    assert not any("build-status" in call for call in sandbox.calls_of("vagrant"))
    assert any(call.startswith("invoke bootstrap") for call in sandbox.calls_of("invoke"))
    assert "Deploy:" not in result.stdout
    back = sandbox.run("create", "--repo", "local")
    assert back.returncode == 0, back.stderr
    assert (
        "REPO_URL=http://master:8418/moviestream.git\n"
        in (sandbox.root / "clusters/vagrant/settings/cluster.env").read_text()
    )


def test_create_commits_as_itself_where_git_has_no_identity(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.git("config", "--unset", "user.email")
    sandbox.git("config", "--unset", "user.name")
    fork = _fork(sandbox, tmp_path)
    result = sandbox.run("create", "--repo", fork)
    assert "git push origin main" in result.stderr, "the commits are made, then the fork is asked for them"
    authors = sandbox.git("log", "-2", "--format=%an <%ae> %s").splitlines()
    assert authors[0].startswith("moviestream tasks <tasks@moviestream.invalid> Seal the vagrant cluster")
    assert authors[1].startswith("moviestream orchestrator <orchestrator@moviestream.invalid> Argo CD follows")


@pytest.mark.parametrize("value", ["github.com/someone/fork", "https://x y", ""])
def test_create_refuses_a_malformed_repo(sandbox: Sandbox, value: str) -> None:
    result = sandbox.run("create", "--repo", value) if value else sandbox.run("create", "--repo")
    assert result.returncode == 1
    assert "--repo" in result.stderr
    assert sandbox.calls_of("vagrant") == []


def test_a_failed_bootstrap_says_create_resumes(sandbox: Sandbox) -> None:
    result = sandbox.run("create", FAKE_BOOTSTRAP_RC="1")
    assert result.returncode == 1
    assert "./orchestrator.sh create continues from where it stopped" in result.stderr
    assert "cluster created" not in result.stdout


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
    sandbox.git("config", f"url.file://{sandbox.bare}.insteadOf", "http://10.20.30.40:8418/moviestream.git")
    result = sandbox.run("create", VAGRANT_MASTER_IP="10.20.30.40")
    assert result.returncode == 0, result.stderr
    assert "server: https://10.20.30.40:6443" in (sandbox.root / ".cluster" / "kubeconfig").read_text()
    assert sandbox.git("config", "remote.cluster.url") == "http://10.20.30.40:8418/moviestream.git"


def test_stop_halts_and_never_destroys(sandbox: Sandbox) -> None:
    result = sandbox.run("stop")
    assert result.returncode == 0
    assert result.stdout.strip().splitlines()[-1] == "cluster stopped"
    assert sandbox.calls_of("vagrant") == ["vagrant halt"]


def test_start_boots_without_provisioning_and_waits_for_the_nodes(sandbox: Sandbox) -> None:
    result = sandbox.run("start")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "cluster started"
    assert sandbox.calls_of("vagrant")[0] == "vagrant up --no-provision --provider virtualbox"
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


def test_create_refuses_a_key_that_has_no_certificate(sandbox: Sandbox) -> None:
    from devtools.gitops import sealing

    key = sandbox.home.parent / "keys" / "vagrant" / "sealing-key.pem"
    key.parent.mkdir(parents=True)
    key.write_bytes(sealing.new_key_pair().private_key_pem)
    result = sandbox.run("create")
    assert result.returncode == 1
    assert "no certificate for" in result.stderr
    assert sandbox.calls_of("vagrant") == []


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
    for name in ("kubeconfig", "k3s-join-token", "git-credentials"):
        assert not (sandbox.root / ".cluster" / name).exists()


def test_kubeconfig_command_prints_the_export_line(sandbox: Sandbox) -> None:
    result = sandbox.run("kubeconfig")
    assert result.returncode == 0
    assert result.stdout.strip() == f"export KUBECONFIG={sandbox.root}/.cluster/kubeconfig"


def test_an_unknown_command_shows_usage_and_exits_2(sandbox: Sandbox) -> None:
    result = sandbox.run("launch")
    assert result.returncode == 2
    assert "Usage: ./orchestrator.sh COMMAND" in result.stderr
    assert "unknown command 'launch'" in result.stderr


def test_status_names_the_remote_the_synced_commit_the_applications_and_the_last_build(sandbox: Sandbox) -> None:
    assert sandbox.run("create").returncode == 0
    main = sandbox.git("rev-parse", "HEAD")
    result = sandbox.run("status")
    assert result.returncode == 0, result.stderr
    assert "master running" in result.stdout
    assert "Argo CD follows: http://master:8418/moviestream.git (main)" in result.stdout
    assert "git remote:      cluster http://192.168.56.10:8418/moviestream.git" in result.stdout
    assert f"cluster's main:  {main[:12]}" in result.stdout
    assert "synced commit:   0123456789ab" in result.stdout
    assert "workload Synced Healthy" in result.stdout
    assert f"last image build: {main[:12]} succeeded" in result.stdout
    assert f"sudo cat /var/log/moviestream/builds/{main}.log" in result.stdout


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


def test_dashboards_prints_every_address_and_a_read_only_token(sandbox: Sandbox) -> None:
    assert sandbox.run("kubeconfig").returncode == 0
    result = sandbox.run("dashboards")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Argo CD:   https://192.168.56.10:30443   (self-signed certificate)" in lines
    assert 'Grafana:   http://192.168.56.10:30030   (dashboards "moviestream" and "moviestream logs")' in lines
    assert "  user:      grafana-owner" in lines
    assert "  password:  from-the-cluster" in lines
    assert "Headlamp:  http://192.168.56.10:30044" in lines
    assert lines[-1] == "viewer-token"
    kubectl = sandbox.calls_of("kubectl")
    tokens = [call for call in kubectl if " create token " in call]
    assert tokens == ["kubectl -n observability create token headlamp-viewer --duration 8h"]
    assert all(
        call.endswith(f"KUBECONFIG={sandbox.root}/.cluster/kubeconfig")
        for call in sandbox.calls.read_text().splitlines()
        if call.startswith("kubectl")
    )


def test_dashboards_falls_back_to_the_local_grafana_password(sandbox: Sandbox) -> None:
    assert sandbox.run("kubeconfig").returncode == 0
    (sandbox.root / ".secrets").mkdir()
    (sandbox.root / ".secrets" / "vagrant.env").write_text(
        "GRAFANA_ADMIN_USER=file-owner\nGRAFANA_ADMIN_PASSWORD=from-the-file\n"
    )
    result = sandbox.run("dashboards", FAKE_NO_GRAFANA_SECRET="1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  user:      file-owner   (from .secrets/vagrant.env: the cluster's Secret could not be read)" in lines
    assert "  password:  from-the-file   (from .secrets/vagrant.env: the cluster's Secret could not be read)" in lines
    (sandbox.root / ".secrets" / "vagrant.env").unlink()
    result = sandbox.run("dashboards", FAKE_NO_GRAFANA_SECRET="1")
    lines = result.stdout.splitlines()
    assert "  user:      admin" in lines
    assert "  password:  unknown: neither Secret observability/grafana-admin nor .secrets/vagrant.env holds it" in lines


def test_dashboards_without_the_stack_or_a_kubeconfig_says_what_to_do(sandbox: Sandbox) -> None:
    result = sandbox.run("dashboards")
    assert result.returncode == 1
    assert "no .cluster/kubeconfig: run ./orchestrator.sh kubeconfig (or create) first" in result.stderr
    assert sandbox.run("kubeconfig").returncode == 0
    result = sandbox.run("dashboards", FAKE_NO_OBSERVABILITY="1")
    assert result.returncode == 1
    assert 'serviceaccounts "headlamp-viewer" not found' in result.stderr  # kubectl's own error, not hidden
    assert "no token for ServiceAccount observability/headlamp-viewer (kubectl's error above)" in result.stderr
    assert result.stdout == ""


def test_help_names_the_dashboards_command(sandbox: Sandbox) -> None:
    assert "  dashboards   every dashboard's address (Argo CD, Grafana, Headlamp) and how to sign in" in (
        sandbox.run("help").stdout.splitlines()
    )
