"""scripts/provision-gitserver.sh's steps on scratch paths: templates, the credential, the repository."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from devtools import ROOT
from devtools.testing.scratch_repo import git, make_repository
from devtools.testing.tools import needs_tool

from .conftest import PASSWORD, Server

FILES = ROOT / "scripts" / "gitserver"
TEMPLATES = sorted(path.name for path in FILES.iterdir() if re.search(r"@[A-Z_]+@", path.read_text()))


def test_the_templates_are_the_files_that_need_settings() -> None:
    assert TEMPLATES == [
        "deployer.env",
        "docker-registry.conf",
        "moviestream-build.path",
        "moviestream-build.service",
        "nginx-site.conf",
        "registry.yml",
    ]


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_renders_completely(server: Server, template: str) -> None:
    rendered = server.step("render", template)
    assert not re.search(r"@[A-Z_]+@", rendered)
    assert rendered.endswith("\n")


def test_the_site_listens_on_the_master_address_alone(server: Server) -> None:
    site = server.step("render", "nginx-site.conf", MASTER_IP="192.168.56.10", HOST_NETWORK_CIDR="192.168.56.0/24")
    assert re.findall(r"listen (\S+);", site) == [
        f"192.168.56.10:{server.git_port}",
        f"192.168.56.10:{server.registry_port}",
    ]
    assert site.count("allow 192.168.56.0/24;") == 2
    assert site.count("allow 10.42.0.0/16;") == 1, "pods fetch from git; only the nodes pull images"
    assert site.count("deny all;") == 3


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"MASTER_IP": "1.2.3"}, "MASTER_IP must be an IPv4 address, not '1.2.3'"),
        ({"MASTER_IP": "192.168.56.256"}, "MASTER_IP must be an IPv4 address"),
        ({"MASTER_IP": ""}, "MASTER_IP must be an IPv4 address, not ''"),
        ({"HOST_NETWORK_CIDR": "192.168.56.0"}, "HOST_NETWORK_CIDR must look like 192.168.56.0/24"),
        ({"HOST_NETWORK_CIDR": "192.168.56.0/33"}, "HOST_NETWORK_CIDR must look like 192.168.56.0/24"),
        ({"HOST_NETWORK_CIDR": "any"}, "HOST_NETWORK_CIDR must look like 192.168.56.0/24, not 'any'"),
    ],
)
def test_a_bad_address_is_refused_before_anything_is_written(server: Server, settings: dict, message: str) -> None:
    result = server.run("render", "nginx-site.conf", **settings)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ("10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15 metric 100\n"
         "192.168.56.0/24 dev eth1 proto kernel scope link src 192.168.56.10\n", "allow 192.168.56.0/24;"),
        ("10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15\n",
         "no network route has the source 192.168.56.10: set HOST_NETWORK_CIDR"),
    ],
)  # fmt: skip
def test_without_host_network_cidr_the_network_of_the_master_address_is_used(
    server: Server, tmp_path: Path, routes: str, expected: str
) -> None:
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    (tmp_path / "routes").write_text(routes)
    (stand_ins / "ip").write_text(f"#!/bin/sh\ncat {tmp_path / 'routes'}\n")
    (stand_ins / "ip").chmod(0o755)
    result = server.run(
        "render",
        "nginx-site.conf",
        MASTER_IP="192.168.56.10",
        HOST_NETWORK_CIDR="",
        PATH=f"{stand_ins}:{server.env['PATH']}",
    )
    assert expected in result.stdout + result.stderr


def test_an_upload_that_landed_inside_an_old_copy_is_the_one_used(server: Server, tmp_path: Path) -> None:
    upload = tmp_path / "upload"
    shutil.copytree(FILES, upload)
    (upload / "registry.yml").write_text("old: copy\n")
    shutil.copytree(FILES, upload / "gitserver")
    rendered = server.step("render", "registry.yml", GITSERVER_FILES=str(upload))
    assert "addr:" in rendered
    assert "old: copy" not in rendered


def test_a_setting_that_cannot_be_rendered_or_an_unknown_template_is_refused(server: Server) -> None:
    odd = server.run("render", "registry.yml", MOVIESTREAM_REGISTRY_UPSTREAM="127.0.0.1:5001|x")
    assert odd.returncode == 1
    assert "REGISTRY_UPSTREAM holds a character that cannot go into registry.yml" in odd.stderr
    missing = server.run("render", "no-such-file")
    assert missing.returncode == 1
    assert "no template" in missing.stderr
    unknown = server.run("bogus")
    assert unknown.returncode == 1
    assert "unknown command 'bogus'" in unknown.stderr


def test_a_template_naming_an_unknown_setting_is_refused(server: Server, tmp_path: Path) -> None:
    files = tmp_path / "files"
    shutil.copytree(FILES, files)
    (files / "extra.conf").write_text("port @GIT_PORT@\nuser @NOBODY_KNOWS@\n")
    result = server.run("render", "extra.conf", GITSERVER_FILES=str(files))
    assert result.returncode == 1
    assert "extra.conf names @NOBODY_KNOWS@, a setting this script does not know" in result.stderr


@needs_tool("systemd-analyze")
def test_the_systemd_units_are_valid(server: Server, tmp_path: Path) -> None:
    units = ("moviestream-build.service", "moviestream-build.path")
    for unit in units:
        (tmp_path / unit).write_text(server.step("render", unit))
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / unit) for unit in units)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    path_unit = (tmp_path / "moviestream-build.path").read_text()
    assert f"PathExists={server.queue}\n" in path_unit


def test_the_credential_is_kept_as_a_hash_readable_by_the_web_server_only(server: Server) -> None:
    htpasswd = server.root / "etc" / "git.htpasswd"
    line = htpasswd.read_text()
    assert re.fullmatch(r"moviestream:\$apr1\$[./0-9A-Za-z]{1,8}\$[./0-9A-Za-z]{22}\n", line)
    assert PASSWORD not in line
    assert stat.S_IMODE(htpasswd.stat().st_mode) == 0o640
    server.step("write-credential", GIT_PASSWORD="a-new-password-of-enough-length")
    assert htpasswd.read_text() != line


@pytest.mark.parametrize(
    ("password", "message"), [("", "GIT_PASSWORD is not set"), ("short", "at least 16 characters")]
)
def test_a_missing_or_short_password_is_refused_and_the_old_one_kept(
    server: Server, password: str, message: str
) -> None:
    htpasswd = server.root / "etc" / "git.htpasswd"
    before = htpasswd.read_text()
    result = server.run("write-credential", GIT_PASSWORD=password)
    assert result.returncode == 1
    assert message in result.stderr
    assert htpasswd.read_text() == before


def test_the_repository_is_set_up_once_and_follows_new_settings(server: Server, tmp_path: Path) -> None:
    def config(key: str) -> str:
        return git(server.repository, "config", "--get", key, check=False)

    assert config("receive.denyNonFastForwards") == "true"
    assert config("receive.denyDeletes") == "true"
    assert config("receive.fsckObjects") == "true"
    assert config("core.sharedRepository") == "1"
    assert config("moviestream.repoURL") == server.url
    assert config("moviestream.buildQueue") == str(server.queue)
    assert config("moviestream.argocdWebhook") == ""
    for hook in ("pre-receive", "post-receive"):
        installed = server.root / "lib" / "hooks" / hook
        assert installed.read_bytes() == (FILES / "githooks.py").read_bytes()
        assert installed.stat().st_mode & stat.S_IXUSR
    assert config("core.hooksPath") == str(server.root / "lib" / "hooks")

    client = make_repository(tmp_path / "client")
    assert (
        subprocess.run(["git", "push", "-q", str(server.repository), "main"], cwd=client, check=False).returncode == 0
    )
    server.step(
        "init-repository",
        REPO_URL_IN_CLUSTER="http://192.168.56.10:8418/moviestream.git",
        ARGOCD_WEBHOOK_URL="https://192.168.56.10:30443/api/webhook",
    )
    assert git(server.repository, "rev-parse", "main") == git(client, "rev-parse", "HEAD"), "the history stays"
    assert config("moviestream.repoURL") == "http://192.168.56.10:8418/moviestream.git"
    assert config("moviestream.argocdWebhook") == "https://192.168.56.10:30443/api/webhook"
    server.step("init-repository")
    assert config("moviestream.argocdWebhook") == "", "an empty ARGOCD_WEBHOOK_URL turns the webhook off"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"GIT_PASSWORD": ""}, "GIT_PASSWORD is not set"),
        ({"REPO_URL_IN_CLUSTER": ""}, "REPO_URL_IN_CLUSTER is not set"),
        ({"MASTER_IP": "master"}, "MASTER_IP must be an IPv4 address, not 'master'"),
        ({"HOST_NETWORK_CIDR": "192.168.56.0/"}, "HOST_NETWORK_CIDR must look like 192.168.56.0/24"),
        ({"GITSERVER_FILES": "/nonexistent"}, "/nonexistent is missing: upload scripts/gitserver there first"),
    ],
)
@pytest.mark.parametrize("command", ["provision", "git-server"])
def test_provisioning_checks_its_settings_before_it_touches_the_machine(
    server: Server, tmp_path: Path, settings: dict, message: str, command: str
) -> None:
    # Should a check ever be skipped, these stand-ins stop the script before it installs anything.
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    for program in ("apt-get", "dpkg", "systemctl"):
        (stand_ins / program).write_text(f"#!/bin/sh\necho {program} >>{tmp_path}/touched\nexit 1\n")
        (stand_ins / program).chmod(0o755)
    result = server.run(command, PATH=f"{stand_ins}:{server.env['PATH']}", **settings)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / "touched").exists()
