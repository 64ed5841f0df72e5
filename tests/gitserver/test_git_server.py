"""The cluster's git server, served as on the master: nginx, fcgiwrap and git http-backend.

nginx runs the site that scripts/provision-gitserver.sh renders, in front of fcgiwrap and a bare
repository that the script set up with the hooks from scripts/gitserver; a client pushes and
fetches over HTTP as the user's clone and Argo CD would. Argo CD is a local HTTPS server with a
self-signed certificate; the registry behind nginx is a small HTTP server that records requests.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devtools.stack.local_stack import free_port
from devtools.testing.scratch_repo import commit_file, git, make_repository
from devtools.testing.tools import needs_tool

from .conftest import PASSWORD, Server, git_env, nginx_serving

pytestmark = [needs_tool("nginx"), needs_tool("fcgiwrap")]
ZERO = "0" * 40


@dataclass
class Recorder:
    """An HTTP(S) server in a thread that answers 200 and keeps every request."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    server: http.server.ThreadingHTTPServer | None = None

    def start(self, context: ssl.SSLContext | None = None) -> Recorder:
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorder.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        # Header names are case-insensitive (urllib sends X-Github-Event).
                        "headers": {name.lower(): value for name, value in self.headers.items()},
                        "body": self.rfile.read(length) if length else b"",
                    }
                )
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(b"ok")

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _record

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if context:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Served:
    server: Server
    argo_cd: Recorder
    registry: Recorder
    client: Path
    client_env: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def git(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=cwd or self.client, env=self.client_env, capture_output=True, text=True, check=False
        )

    def bare(self, *args: str) -> str:
        return git(self.server.repository, *args, check=False)


def _self_signed(directory: Path) -> ssl.SSLContext:
    key, cert = directory / "argocd.key", directory / "argocd.crt"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=argocd-server"),
            *("-days", "1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def served(server: Server, tmp_path: Path) -> Iterator[Served]:
    argo_cd = Recorder().start(_self_signed(tmp_path))
    registry = Recorder(port=server.registry_upstream_port).start()
    server.step("init-repository", ARGOCD_WEBHOOK_URL=f"https://127.0.0.1:{argo_cd.port}/api/webhook")
    client = make_repository(tmp_path / "client")
    git(client, "remote", "add", "cluster", server.push_url)
    try:
        with nginx_serving(server, tmp_path / "nginx"):
            yield Served(server, argo_cd, registry, client, git_env(tmp_path / "client-home"))
    finally:
        argo_cd.stop()
        registry.stop()


def _status(url: str, method: str = "GET", auth: str | None = None, source: str | None = None) -> int:
    """The HTTP status of one request; `source` binds the client to another loopback address."""
    host, _, rest = url.removeprefix("http://").partition("/")
    address, port = host.split(":")
    with socket.create_connection(
        (address, int(port)), timeout=10, source_address=(source, 0) if source else None
    ) as s:
        headers = f"{method} /{rest} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        if auth:
            headers += f"Authorization: Basic {base64.b64encode(auth.encode()).decode()}\r\n"
        s.sendall((headers + "Content-Length: 0\r\n\r\n").encode())
        return int(s.recv(64).split()[1])


def test_a_push_with_the_password_updates_main_tells_argo_cd_and_queues_a_build(served: Served) -> None:
    head = git(served.client, "rev-parse", "HEAD")
    pushed = served.git("push", "cluster", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert served.bare("rev-parse", "main") == head
    assert "remote: Argo CD was told about the new commit" in pushed.stderr
    assert f"remote: Images for {head[:12]} are built on the master" in pushed.stderr
    assert f"log: {served.server.root / 'logs' / head}.log" in pushed.stderr
    assert served.server.queue.read_text() == head + "\n"

    [event] = served.argo_cd.requests
    assert event["method"] == "POST"
    assert event["path"] == "/api/webhook"
    assert event["headers"]["x-github-event"] == "push"
    assert event["headers"]["content-type"] == "application/json"
    assert json.loads(event["body"]) == {
        "ref": "refs/heads/main",
        "before": ZERO,
        "after": head,
        "repository": {"html_url": served.url.removesuffix(".git"), "default_branch": "main"},
        "commits": [],
    }

    second = commit_file(served.client, "README.md", "# changed\n")
    assert served.git("push", "cluster", "main").returncode == 0
    assert json.loads(served.argo_cd.requests[-1]["body"])["before"] == head
    assert json.loads(served.argo_cd.requests[-1]["body"])["after"] == second
    assert served.server.queue.read_text() == second + "\n"


def test_anyone_on_the_allowed_network_clones_without_a_password(served: Served, tmp_path: Path) -> None:
    assert served.git("push", "cluster", "main").returncode == 0
    cloned = served.git("clone", "--quiet", served.url, str(tmp_path / "clone"), cwd=tmp_path)
    assert cloned.returncode == 0, cloned.stderr
    assert git(tmp_path / "clone", "rev-parse", "HEAD") == git(served.client, "rev-parse", "HEAD")
    assert _status(f"{served.url}/info/refs?service=git-upload-pack") == 200


def test_a_push_without_the_password_or_with_a_wrong_one_is_401_and_changes_nothing(served: Served) -> None:
    served.git("remote", "add", "anonymous", served.url)
    refused = served.git("push", "anonymous", "main")
    assert refused.returncode != 0
    assert served.bare("rev-parse", "--verify", "--quiet", "main") == ""
    assert _status(f"{served.url}/info/refs?service=git-receive-pack") == 401
    assert _status(f"{served.url}/git-receive-pack", method="POST") == 401
    assert _status(f"{served.url}/info/refs?service=git-receive-pack", auth="moviestream:wrong") == 401
    assert _status(f"{served.url}/info/refs?service=git-receive-pack", auth=f"moviestream:{PASSWORD}") == 200
    assert not served.server.queue.exists()


def test_a_new_password_replaces_the_old_one(served: Served) -> None:
    new = "another-long-password-for-pushes"
    served.server.step("write-credential", GIT_PASSWORD=new)
    refs = f"{served.url}/info/refs?service=git-receive-pack"
    assert _status(refs, auth=f"moviestream:{PASSWORD}") == 401
    assert _status(refs, auth=f"moviestream:{new}") == 200
    assert PASSWORD not in (served.server.root / "etc" / "git.htpasswd").read_text()


def test_git_http_backend_itself_refuses_a_push_nginx_did_not_authenticate(served: Served) -> None:
    # Behind nginx's auth_basic, a second lock: without REMOTE_USER, receive-pack stays off.
    env = {
        "GIT_PROJECT_ROOT": str(served.server.root / "srv"),
        "GIT_HTTP_EXPORT_ALL": "",
        "PATH_INFO": "/moviestream.git/info/refs",
        "QUERY_STRING": "service=git-receive-pack",
        "REQUEST_METHOD": "GET",
        "PATH": os.environ["PATH"],
    }
    answer = subprocess.run(["git", "http-backend"], env=env, capture_output=True, text=True, check=False)
    assert "Status: 403 Forbidden" in answer.stdout
    assert "Service not enabled: 'receive-pack'" in answer.stderr
    answer = subprocess.run(
        ["git", "http-backend"], env=env | {"REMOTE_USER": "moviestream"}, capture_output=True, text=True, check=False
    )
    assert "Status: 403" not in answer.stdout


def test_only_main_is_deployed_other_branches_tags_and_deletions_are_refused(served: Served) -> None:
    assert served.git("push", "cluster", "main").returncode == 0
    branch = served.git("push", "cluster", "HEAD:refs/heads/feature")
    assert branch.returncode != 0
    assert "remote: refused refs/heads/feature: only main is deployed (feature is not)." in branch.stderr
    assert "git push cluster HEAD:main" in branch.stderr
    served.git("tag", "v1")
    tag = served.git("push", "cluster", "v1")
    assert tag.returncode != 0
    assert "remote: refused refs/tags/v1: only main is deployed (tags are not)." in tag.stderr
    deletion = served.git("push", "cluster", ":main")
    assert deletion.returncode != 0
    assert "remote: refused: main cannot be deleted; it is what the cluster runs" in deletion.stderr
    assert served.bare("for-each-ref", "--format=%(refname)") == "refs/heads/main"
    assert len(served.argo_cd.requests) == 1


def test_a_non_fast_forward_push_is_refused_with_what_to_do(served: Served) -> None:
    assert served.git("push", "cluster", "main").returncode == 0
    pushed = commit_file(served.client, "README.md", "# first\n")
    assert served.git("push", "cluster", "main").returncode == 0
    served.git("reset", "--hard", "HEAD~1")
    commit_file(served.client, "README.md", "# diverged\n")
    plain = served.git("push", "cluster", "main")
    assert plain.returncode != 0
    assert "git pull" in plain.stderr
    forced = served.git("push", "--force", "cluster", "main")
    assert forced.returncode != 0
    assert "remote: refused: main on the cluster has commits that yours does not" in forced.stderr
    assert "Run `git pull cluster main`, then push again." in forced.stderr
    assert served.bare("rev-parse", "main") == pushed


@pytest.mark.parametrize("webhook", ["https://127.0.0.1:{port}/api/webhook", "not a URL"])
def test_a_push_succeeds_when_argo_cd_cannot_be_told(served: Served, webhook: str) -> None:
    git(served.server.repository, "config", "moviestream.argocdWebhook", webhook.format(port=free_port()))
    pushed = served.git("push", "cluster", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert "remote: Argo CD could not be told" in pushed.stderr
    assert "it will find the commit at its next poll" in pushed.stderr
    assert "Traceback" not in pushed.stderr
    assert served.server.queue.read_text().strip() == git(served.client, "rev-parse", "HEAD")


def test_a_push_succeeds_when_the_build_cannot_be_queued(served: Served) -> None:
    git(served.server.repository, "config", "moviestream.buildQueue", "/nonexistent/build-queue")
    pushed = served.git("push", "cluster", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert "remote: the image build could not be queued" in pushed.stderr
    assert "remote: Argo CD was told about the new commit" in pushed.stderr
    assert served.bare("rev-parse", "main") == git(served.client, "rev-parse", "HEAD")


def test_it_listens_on_the_host_only_address_and_serves_only_the_allowed_networks(served: Served) -> None:
    port = served.server.git_port
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.3", port)) != 0, "nginx must not listen on every address"
    refs = f"{served.url}/info/refs?service=git-upload-pack"
    assert _status(refs, source="127.0.0.1") == 200
    assert _status(refs, source="127.0.0.2") == 403
    assert _status(f"http://127.0.0.1:{port}/elsewhere.git/info/refs?service=git-upload-pack") == 404
    site = served.server.step("render", "nginx-site.conf")
    assert "allow 127.0.0.1/32;\n    allow 10.42.0.0/16;\n    deny all;" in site


def test_the_registry_is_read_only_for_the_nodes(served: Served) -> None:
    base = f"http://127.0.0.1:{served.server.registry_port}/v2/moviestream/inventory-app/manifests/abc"
    assert _status(base) == 200
    assert _status(base, method="HEAD") == 200
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        assert _status(base, method=method) == 403
    assert _status(base, source="127.0.0.2") == 403
    assert [request["method"] for request in served.registry.requests] == ["GET", "HEAD"]
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{served.server.registry_port}/other")
