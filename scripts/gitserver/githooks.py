#!/usr/bin/env python3
"""The cluster repository's hooks, installed as both pre-receive and post-receive (the name picks).

pre-receive:  only main is deployed, so only a fast-forward of main is accepted; other branches,
              tags and deletions are refused, each with what to do instead.
post-receive: after main moved, tells Argo CD at once (a GitHub-style push event to the URL in
              git config moviestream.argocdWebhook, for the repository moviestream.repoURL) and
              queues an image build of the new commit (moviestream.buildQueue, which a systemd
              path unit watches). The push has already happened: nothing here can fail it.

Standard library only, for Ubuntu 22.04's python3 (3.10). Lines printed here reach the pusher
prefixed with "remote:".
"""

from __future__ import annotations

import fcntl
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

MAIN = "refs/heads/main"
WEBHOOK_TIMEOUT = 5


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def _config(key: str) -> str:
    return _git("config", "--get", key).stdout.strip()


def _absent(sha: str) -> bool:
    """git writes an all-zero object id for a ref that is created or deleted."""
    return set(sha) == {"0"}


def refusal(old: str, new: str, ref: str) -> str | None:
    """Why this update is refused, or None when it is a fast-forward of main."""
    if ref != MAIN:
        kind = "tags are" if ref.startswith("refs/tags/") else f"{ref.removeprefix('refs/heads/')} is"
        return (
            f"refused {ref}: only main is deployed ({kind} not). Push your commits to main: git push cluster HEAD:main"
        )
    if _absent(new):
        return "refused: main cannot be deleted; it is what the cluster runs"
    if not _absent(old) and _git("merge-base", "--is-ancestor", old, new).returncode != 0:
        return (
            "refused: main on the cluster has commits that yours does not (the cluster commits its image "
            "promotions onto main). Run `git pull cluster main`, then push again."
        )
    return None


def pre_receive(updates: list[tuple[str, str, str]]) -> int:
    problems = [problem for update in updates if (problem := refusal(*update))]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def push_event(old: str, new: str, repo_url: str) -> bytes:
    """The fields of GitHub's push event that Argo CD's webhook handler reads."""
    event = {
        "ref": MAIN,
        "before": old,
        "after": new,
        "repository": {"html_url": repo_url.removesuffix(".git"), "default_branch": "main"},
        "commits": [],
    }
    return json.dumps(event).encode()


def notify_argo_cd(old: str, new: str) -> None:
    url, repo_url = _config("moviestream.argocdWebhook"), _config("moviestream.repoURL")
    if not url or not repo_url:
        return
    # Argo CD's certificate is its own self-signed one; the request carries nothing secret.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    try:
        request = urllib.request.Request(url, data=push_event(old, new, repo_url), headers=headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT, context=context):  # noqa: S310
            print("Argo CD was told about the new commit")
    except (OSError, ValueError) as exc:  # URLError and TLS errors are OSErrors; a bad URL a ValueError
        print(f"Argo CD could not be told ({exc}); it will find the commit at its next poll")


def queue_build(new: str) -> None:
    queue = _config("moviestream.buildQueue")
    if not queue:
        return
    path = Path(queue)
    try:
        # The deployer holds this lock while it decides whether the queued commit is done.
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            fcntl.flock(directory, fcntl.LOCK_EX)
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text(new + "\n")
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        finally:
            os.close(directory)
    except OSError as exc:
        print(f"the image build could not be queued ({exc}); images stay as they are")
        return
    log = Path(_config("moviestream.buildLogs") or path.parent) / f"{new}.log"
    print(f"Images for {new[:12]} are built on the master if their content changed; log: {log}")
    print("./orchestrator.sh status shows the build; `git pull cluster main` brings its promotion commit")


def post_receive(updates: list[tuple[str, str, str]]) -> int:
    for old, new, ref in updates:
        if ref == MAIN and not _absent(new):
            queue_build(new)
            notify_argo_cd(old, new)
    return 0


def main() -> int:
    updates = [(old, new, ref) for old, new, ref in (line.split() for line in sys.stdin if line.strip())]
    hooks = {"pre-receive": pre_receive, "post-receive": post_receive}
    name = Path(sys.argv[0]).name
    if name not in hooks:
        print(f"{name}: install this file as pre-receive or post-receive", file=sys.stderr)
        return 2
    return hooks[name](updates)


if __name__ == "__main__":
    sys.exit(main())
