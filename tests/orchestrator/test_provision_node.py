"""scripts/provision-node.sh run as Vagrant runs it, in a scratch root with stand-in system programs.

The scratch root holds only /etc/hosts: a directory the script writes to
and does not create itself fails here, as it would on a VM where no package
created it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devtools import ROOT

STAND_INS = {
    # The private network on eth1, with the prefix the test chooses.
    "ip": 'echo "3: eth1    inet ${FAKE_CIDR} brd 192.168.255.255 scope global eth1"\n',
    "dpkg": "exit 0\n",  # every package installed
    "apt-get": 'echo "apt-get $*" >> "$CALLS_LOG"\n',
    "exportfs": 'echo "exportfs $*" >> "$CALLS_LOG"\n',
    "systemctl": 'echo "systemctl $*" >> "$CALLS_LOG"\ncase "$1" in is-active) exit "${FAKE_ACTIVE:-1}" ;; esac\n',
    # The server's /ping answers; a download (-o FILE) writes the stand-in installer.
    "curl": 'for a in "$@"; do [ "$prev" = -o ] && printf "%s\\n" "$INSTALLER" > "$a"; prev="$a"; done\n',
    "k3s": 'echo "k3s version ${FAKE_K3S_VERSION:-none} (abc)"\n',
}
INSTALLER = 'echo "install ROLE-EXEC=$INSTALL_K3S_EXEC VERSION=$INSTALL_K3S_VERSION URL=$K3S_URL TOKEN=$K3S_TOKEN" >> "$CALLS_LOG"'
K10_TOKEN = "K10" + "ab" * 32 + "::server:" + "cd" * 32


class Node:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        (self.root / "etc").mkdir(parents=True)
        (self.root / "etc" / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 master master\n")
        self.calls = tmp_path / "calls.log"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for name, body in STAND_INS.items():
            (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
            (bin_dir / name).chmod(0o755)
        for tool in (
            "bash",
            "sh",
            "awk",
            "sed",
            "head",
            "cat",
            "mkdir",
            "chmod",
            "dirname",
            "mktemp",
            "rm",
            "env",
            "seq",
        ):
            (bin_dir / tool).symlink_to(shutil.which(tool))
        self.env = {
            "PATH": str(bin_dir),
            "PROVISION_ROOT": str(self.root),
            "CALLS_LOG": str(self.calls),
            "INSTALLER": INSTALLER,
            "FAKE_CIDR": "192.168.56.10/24",
            "NODE_IP": "192.168.56.10",
            "MASTER_IP": "192.168.56.10",
            "K3S_VERSION": "v1.34.12+k3s1",
            "K3S_TOKEN": "cd" * 32,
            "ROLE": "server",
        }

    def provision(self, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(ROOT / "scripts" / "provision-node.sh")],
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def read(self, path: str) -> str:
        return (self.root / path.lstrip("/")).read_text()

    def calls_of(self, program: str) -> list[str]:
        return [line for line in self.calls.read_text().splitlines() if line.startswith(program + " ")]


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def test_the_master_exports_nfs_to_its_own_network_and_installs_the_pinned_k3s(node: Node) -> None:
    result = node.provision()
    assert result.returncode == 0, result.stderr
    assert node.read("/etc/exports.d/moviestream.exports") == (
        "/srv/nfs/k8s 192.168.56.0/24(rw,sync,no_subtree_check,no_root_squash)\n"
    )
    assert (node.root / "srv/nfs/k8s").is_dir()
    assert "exportfs -ra" in node.calls_of("exportfs")
    [install] = node.calls_of("install")
    assert "VERSION=v1.34.12+k3s1" in install
    assert "--node-ip 192.168.56.10" in install
    assert "--flannel-iface eth1" in install
    assert "URL= " in install, "the server joins nothing"


@pytest.mark.parametrize(
    ("cidr", "network"), [("10.20.30.40/16", "10.20.0.0/16"), ("192.168.56.10/25", "192.168.56.0/25")]
)
def test_the_export_follows_the_networks_real_prefix(node: Node, cidr: str, network: str) -> None:
    ip = cidr.split("/", maxsplit=1)[0]
    result = node.provision(FAKE_CIDR=cidr, NODE_IP=ip, MASTER_IP=ip)
    assert result.returncode == 0, result.stderr
    assert node.read("/etc/exports.d/moviestream.exports").split()[1].startswith(network + "(")


def test_both_names_of_the_master_are_written_once_and_follow_its_address(node: Node) -> None:
    assert node.provision().returncode == 0
    assert node.provision().returncode == 0
    hosts = node.read("/etc/hosts")
    assert hosts.count("nfs.moviestream.internal") == 1
    assert "192.168.56.10 registry.moviestream.internal\n" in hosts
    assert "127.0.1.1 master master\n" in hosts, "other lines stay"
    result = node.provision(FAKE_CIDR="192.168.57.10/24", NODE_IP="192.168.57.10", MASTER_IP="192.168.57.10")
    assert result.returncode == 0, result.stderr
    hosts = node.read("/etc/hosts")
    assert "192.168.57.10 nfs.moviestream.internal\n" in hosts
    assert "192.168.56.10" not in hosts


def test_both_nodes_pull_the_clusters_images_from_the_masters_registry(node: Node) -> None:
    assert node.provision().returncode == 0
    assert node.read("/etc/rancher/k3s/registries.yaml") == (
        'mirrors:\n  "registry.moviestream.internal":\n    endpoint:\n      - "http://192.168.56.10:5000"\n'
    )


def test_a_running_k3s_is_restarted_only_when_its_mirrors_change(node: Node) -> None:
    assert node.provision(FAKE_ACTIVE="0", FAKE_K3S_VERSION="v1.34.12+k3s1").returncode == 0
    assert "systemctl restart k3s" in node.calls_of("systemctl")
    node.calls.write_text("")
    assert node.provision(FAKE_ACTIVE="0", FAKE_K3S_VERSION="v1.34.12+k3s1").returncode == 0
    assert "systemctl restart k3s" not in node.calls_of("systemctl")
    assert node.calls_of("install") == [], "the pinned version is installed already"


def test_the_agent_refuses_a_join_token_that_does_not_pin_the_servers_ca(node: Node) -> None:
    result = node.provision(ROLE="agent", NODE_IP="192.168.56.11", FAKE_CIDR="192.168.56.11/24")
    assert result.returncode == 1
    assert "the agent needs the server's full join token (K10<CA hash>::...)" in result.stderr
    assert not node.calls.exists() or node.calls_of("install") == []


def test_the_agent_joins_the_server_with_the_full_token_and_exports_nothing(node: Node) -> None:
    result = node.provision(ROLE="agent", NODE_IP="192.168.56.11", FAKE_CIDR="192.168.56.11/24", K3S_TOKEN=K10_TOKEN)
    assert result.returncode == 0, result.stderr
    [install] = node.calls_of("install")
    assert f"URL=https://192.168.56.10:6443 TOKEN={K10_TOKEN}" in install
    assert "ROLE-EXEC=agent --node-ip 192.168.56.11 --flannel-iface eth1" in install
    assert not (node.root / "etc/exports.d").exists()
    assert "192.168.56.10 nfs.moviestream.internal\n" in node.read("/etc/hosts")
