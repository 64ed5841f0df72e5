#!/usr/bin/env python3
"""The master's deployer: builds the images of the commit pushed to main, then promotes them.

`deployer.py run` (moviestream-build.service, started when the post-receive hook queues a commit):
  1. reads the queued commit (the newest push to main) and checks it out in a work clone;
  2. asks the repository's own `invoke image-tags` for each service's content tag, in a virtual
     environment made from the promote group of the commit's requirements/lock.txt;
  3. builds with buildah, and pushes to the local registry, each image whose tag the registry lacks;
  4. runs `invoke promote --commit` (the task the GitHub images workflow runs) and pushes the
     commit it makes to main through git, so the hooks tell Argo CD; the build that push queues
     finds every image present and nothing to promote, and leaves the status naming main's tip
     (orchestrator.sh waits for exactly that: the status's commit is main, and it succeeded);
  5. removes the queued commit, unless a push queued a newer one meanwhile: it builds that next.
A failed build promotes nothing, so the images that run stay. The queue entry stays until a build is
over, so one that a halt of the VM cut short starts again at boot.

`moviestream-builds status [--json] | wait [--timeout S] | log [COMMIT]` (this file, linked) shows
the builds; orchestrator.sh reads the status file over `vagrant ssh`.

Standard library only, for Ubuntu 22.04's python3 (3.10). Settings: the file MOVIESTREAM_CONFIG
(written by provision-gitserver.sh), then MOVIESTREAM_* environment variables.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

DEFAULT_CONFIG = "/etc/moviestream/deployer.env"
# What `invoke image-tags` and `invoke promote` need: the lock's `promote` group (devtools/gitops/lockfile.py).
LOCK = "requirements/lock.txt"
LOCK_READER = "devtools/gitops/lockfile.py"
COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
IDENTITY = {
    "GIT_AUTHOR_NAME": "moviestream deployer",
    "GIT_AUTHOR_EMAIL": "deployer@moviestream.invalid",
    "GIT_COMMITTER_NAME": "moviestream deployer",
    "GIT_COMMITTER_EMAIL": "deployer@moviestream.invalid",
}
LOG_TAIL = 40
# One build step (a buildah build, a pip install) that takes longer has hung.
STEP_TIMEOUT = 3600


class BuildFailed(Exception):
    pass


@dataclass(frozen=True)
class Config:
    repository: Path
    spool: Path
    state: Path
    logs: Path
    registry: str  # host:port the deployer pushes to and asks
    image_prefix: str  # what git names: <registry name>/<path>
    overlay: str
    python: str

    @classmethod
    def load(cls, environ: dict[str, str] | None = None) -> Config:
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, str] = {}
        path = Path(environ.get("MOVIESTREAM_CONFIG", DEFAULT_CONFIG))
        if path.is_file():
            for line in path.read_text().splitlines():
                key, equals, value = line.partition("=")
                if equals and not key.lstrip().startswith("#"):
                    values[key.strip()] = value.strip()
        values |= {key: value for key, value in environ.items() if key.startswith("MOVIESTREAM_")}
        settings = {field.name: values.get(f"MOVIESTREAM_{field.name.upper()}", "") for field in fields(cls)}
        missing = [f"MOVIESTREAM_{name.upper()}" for name, value in settings.items() if not value]
        if missing:
            raise SystemExit(f"deployer: {', '.join(missing)} not set (in {path} or the environment)")
        paths = {"repository", "spool", "state", "logs"}
        return cls(**{name: Path(value) if name in paths else value for name, value in settings.items()})

    @property
    def queue(self) -> Path:
        return self.spool / "build-queue"

    @property
    def status_file(self) -> Path:
        return self.state / "build-status.json"

    @property
    def work(self) -> Path:
        return self.state / "work"

    @property
    def venv(self) -> Path:
        return self.state / "venv"

    def repository_path(self, service: str) -> str:
        """The image's path inside a registry: the prefix without its registry name."""
        return f"{self.image_prefix.split('/', 1)[1]}/{service}"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def queued(config: Config) -> str | None:
    try:
        return config.queue.read_text().strip()
    except FileNotFoundError:
        return None


def finish_queued(config: Config, commit: str) -> None:
    """Remove the queue entry if it still names `commit` (the hook takes the same lock to write one)."""
    directory = os.open(config.spool, os.O_RDONLY)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        if queued(config) == commit:
            config.queue.unlink()
    finally:
        os.close(directory)


def load_status(config: Config) -> dict[str, Any]:
    try:
        return json.loads(config.status_file.read_text())
    except FileNotFoundError:
        return {}


class Build:
    def __init__(self, config: Config, commit: str) -> None:
        self.config = config
        self.commit = commit
        self.log_path = config.logs / f"{commit}.log"
        self.log: IO[str] | None = None
        self.status: dict[str, Any] = {
            "commit": commit,
            "state": "building",
            "started": now(),
            "finished": None,
            "log": str(self.log_path),
            "services": {},
            "promoted": None,
            "message": "",
        }

    def run(self) -> None:
        self.save()
        print(f"building {self.commit}; log: {self.log_path}", flush=True)
        with self.log_path.open("a") as self.log:
            self.note(f"build of {self.commit} started {self.status['started']}")
            try:
                self.build_and_promote()
                self.status["state"] = "succeeded"
            except BuildFailed as exc:
                self.status.update(state="failed", message=str(exc))
            # A queue entry left behind by a bug here would restart the unit in a loop.
            except Exception as exc:  # noqa: BLE001
                self.status.update(state="failed", message=f"the deployer failed: {exc!r}")
            self.status["finished"] = now()
            self.note(f"build {self.status['state']} {self.status['finished']} {self.status['message']}".rstrip())
        self.save()
        print(f"{self.commit}: {self.status['state']} {self.status['message']}".rstrip(), flush=True)

    def save(self) -> None:
        temporary = self.config.status_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.status, indent=2) + "\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, self.config.status_file)

    def note(self, line: str) -> None:
        assert self.log is not None
        self.log.write(f"==> {line}\n")
        self.log.flush()

    def command(
        self, args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, capture: bool = False
    ) -> str:
        """Run one step, its output going to the log as it comes (with `capture`, stdout is returned instead)."""
        assert self.log is not None
        self.note("$ " + " ".join(args))
        try:
            result = subprocess.run(
                args,
                cwd=cwd,
                env=None if env is None else os.environ | env,
                stdout=subprocess.PIPE if capture else self.log,
                stderr=self.log,
                text=True,
                check=False,
                timeout=STEP_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise BuildFailed(f"`{' '.join(args[:2])}` took more than {STEP_TIMEOUT} s; see {self.log_path}") from None
        self.log.flush()
        if result.returncode != 0:
            raise BuildFailed(f"`{' '.join(args[:2])}` failed (exit {result.returncode}); see {self.log_path}")
        return result.stdout or ""

    def build_and_promote(self) -> None:
        checkout = self.checkout()
        invoke = self.tools(checkout)
        tags: dict[str, str] = json.loads(self.command([invoke, "image-tags", "--as-json"], cwd=checkout, capture=True))
        services = self.status["services"]
        for service, tag in tags.items():
            services[service] = {
                "tag": tag,
                "image": f"{self.config.image_prefix}/{service}:{tag}",
                "action": "pending",
            }
        self.save()
        for service, tag in tags.items():
            if self.in_registry(service, tag):
                services[service]["action"] = "skipped"
            else:
                services[service]["action"] = "building"
                self.save()
                try:
                    self.build_image(checkout, service, tag)
                except BuildFailed:
                    services[service]["action"] = "failed"
                    raise
                services[service]["action"] = "built"
            self.save()
        self.promote(checkout, invoke, tags)

    def checkout(self) -> Path:
        """The commit, in a work copy of its own (cloned afresh if an interrupted build left it broken)."""
        work = self.config.work
        for attempt in ("reuse", "fresh"):
            if attempt == "fresh" or not (work / ".git").is_dir():
                shutil.rmtree(work, ignore_errors=True)
                self.command(["git", "clone", "--quiet", str(self.config.repository), str(work)])
            try:
                self.command(["git", "fetch", "--quiet", "--prune", "origin"], cwd=work)
                self.command(["git", "checkout", "--quiet", "--force", "--detach", self.commit], cwd=work)
                self.command(["git", "clean", "-ffdxq"], cwd=work)
            except BuildFailed:
                if attempt == "fresh":
                    raise
                self.note(f"{work} is unusable (a build cut short?); cloning it again")
                continue
            break
        return work

    def tools(self, checkout: Path) -> str:
        """invoke, in a virtual environment of the commit's locked promote group (remade when the lock changes)."""
        lock, reader = checkout / LOCK, checkout / LOCK_READER
        if not lock.is_file() or not reader.is_file():
            raise BuildFailed(f"{self.commit} has no {LOCK} or {LOCK_READER}: cannot run invoke image-tags and promote")
        digest = hashlib.sha256(lock.read_bytes() + b"\0" + reader.read_bytes())
        venv, stamp = self.config.venv, self.config.venv / ".requirements"
        if not stamp.is_file() or stamp.read_text() != digest.hexdigest():
            self.note(f"making {venv} from {LOCK} (the promote group, hash-checked)")
            self.command([self.config.python, "-m", "venv", "--clear", str(venv)])
            wanted = self.command([self.config.python, str(reader), str(lock), "promote"], capture=True)
            requirements = venv / "requirements.txt"
            requirements.write_text(wanted)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            self.command([*pip, "--require-hashes", "--no-deps", "-r", str(requirements)])
            stamp.write_text(digest.hexdigest())
        return str(venv / "bin" / "invoke")

    def in_registry(self, service: str, tag: str) -> bool:
        url = f"http://{self.config.registry}/v2/{self.config.repository_path(service)}/manifests/{tag}"
        request = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_TYPES})
        try:
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - the local registry
                self.note(f"{service}:{tag} is in the registry; not built again")
                return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise BuildFailed(f"the registry answered {exc.code} for {url}") from None
        except OSError as exc:
            raise BuildFailed(f"the registry at {self.config.registry} does not answer ({exc})") from None

    def build_image(self, checkout: Path, service: str, tag: str) -> None:
        local = f"{self.config.registry}/{self.config.repository_path(service)}:{tag}"
        self.note(f"building {service} as {local}")
        dockerfile = f"Dockerfiles/{service}.Dockerfile"
        # Host network: RUN steps reach PyPI without the CNI plugins buildah would need otherwise.
        self.command(
            ["buildah", "bud", "--layers", "--network", "host", "--file", dockerfile, "--tag", local, "."],
            cwd=checkout,
        )
        self.command(["buildah", "push", "--tls-verify=false", local, f"docker://{local}"])

    def promote(self, checkout: Path, invoke: str, tags: dict[str, str]) -> None:
        images = [
            arg
            for service, tag in tags.items()
            for arg in ("--image", f"{service}={self.config.image_prefix}/{service}:{tag}")
        ]
        before = self.command(["git", "rev-parse", "HEAD"], cwd=checkout, capture=True).strip()
        self.command(
            [invoke, "promote", "--overlay", self.config.overlay, *images, "--commit", "--source", self.commit],
            cwd=checkout,
            env=IDENTITY,
        )
        after = self.command(["git", "rev-parse", "HEAD"], cwd=checkout, capture=True).strip()
        if after == before:
            self.note(f"{self.config.overlay} already names these images")
            return
        try:
            self.command(["git", "push", "--quiet", "origin", "HEAD:refs/heads/main"], cwd=checkout)
        except BuildFailed:
            main = self.command(["git", "ls-remote", "origin", "refs/heads/main"], cwd=checkout, capture=True).split()[
                :1
            ]
            if main and main[0] != self.commit:
                self.status["message"] = f"main moved on to {main[0][:12]} during the build; its build promotes"
                self.note(self.status["message"])
                return
            raise
        self.status["promoted"] = after
        self.note(f"promoted as {after}")


def run(config: Config) -> int:
    config.state.mkdir(parents=True, exist_ok=True)
    config.logs.mkdir(parents=True, exist_ok=True)
    with (config.state / "deployer.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another build is running; it takes the queued commit after its own")
            return 0
        while (commit := queued(config)) is not None:
            if COMMIT.match(commit):
                Build(config, commit).run()
            else:
                print(f"ignoring a malformed queue entry {commit[:80]!r}")
            finish_queued(config, commit)
    return 0


def retry(config: Config) -> int:
    """Queue main's tip again, as the post-receive hook does (after a build that failed for a passing reason)."""
    main = subprocess.run(
        ["git", "--git-dir", str(config.repository), "rev-parse", "--verify", "--quiet", "refs/heads/main"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not COMMIT.match(main):
        print("the repository has no main yet: nothing to build", file=sys.stderr)
        return 1
    directory = os.open(config.spool, os.O_RDONLY)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        temporary = config.queue.with_name(config.queue.name + ".tmp")
        temporary.write_text(main + "\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, config.queue)
    finally:
        os.close(directory)
    print(f"queued {main[:12]} (main) again")
    return 0


def show_status(config: Config, as_json: bool = False) -> int:
    status, queue = load_status(config), queued(config)
    if as_json:
        print(json.dumps({**status, "queued": queue}, indent=2))
        return 0
    if not status:
        print("no image build yet")
    else:
        finished = f", finished {status['finished']}" if status.get("finished") else ""
        print(f"last build: {status['commit'][:12]} {status['state']} (started {status['started']}{finished})")
        for service, info in status.get("services", {}).items():
            print(f"  {service:<14} {info['tag']}  {info['action']}")
        if status.get("promoted"):
            print(f"  promoted as {status['promoted'][:12]}")
        if status.get("message"):
            print(f"  {status['message']}")
        print(f"  log: {status['log']}")
    if queue and not (queue == status.get("commit") and status.get("state") == "building"):
        print(f"queued: {queue[:12]}")
    return 0


def wait(config: Config, timeout: float, poll: float = 1.0) -> int:
    """Until no build is queued or running; then the last build's status (exit 1 if it failed)."""
    deadline = time.monotonic() + timeout
    while queued(config) is not None:
        if time.monotonic() > deadline:
            show_status(config)
            print(f"still building after {timeout:.0f} s (journalctl -u moviestream-build)", file=sys.stderr)
            return 2
        time.sleep(poll)
    show_status(config)
    status = load_status(config)
    if status.get("state") == "failed":
        lines = Path(status["log"]).read_text(errors="replace").splitlines()
        print(f"--- the last {LOG_TAIL} lines of {status['log']}", file=sys.stderr)
        print("\n".join(lines[-LOG_TAIL:]), file=sys.stderr)
        return 1
    return 0


def show_log(config: Config, commit: str | None) -> int:
    if commit is None:
        path = load_status(config).get("log")
        if not path:
            print("no image build yet", file=sys.stderr)
            return 1
        print(Path(path).read_text(errors="replace"), end="")
        return 0
    matches = sorted(config.logs.glob(f"{commit}*.log")) if re.fullmatch(r"[0-9a-f]{4,64}", commit) else []
    if len(matches) != 1:
        print(f"{'no' if not matches else 'more than one'} build log for {commit!r} in {config.logs}", file=sys.stderr)
        return 1
    print(matches[0].read_text(errors="replace"), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moviestream-builds", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="build the queued commits (what the systemd unit runs)")
    status = commands.add_parser("status", help="the last build, and the commit queued")
    status.add_argument("--json", action="store_true", help="print JSON")
    waiting = commands.add_parser("wait", help="wait for the queued build; exit 1 if it failed, 2 on timeout")
    waiting.add_argument("--timeout", type=float, default=3600, help="seconds (default 3600)")
    commands.add_parser("retry", help="queue main's tip again (after a build that failed for a passing reason)")
    log = commands.add_parser("log", help="a build's log (default: the last build's)")
    log.add_argument("commit", nargs="?", help="the commit, or the start of its id")
    args = parser.parse_args(argv)
    config = Config.load()
    if args.command == "run":
        return run(config)
    if args.command == "status":
        return show_status(config, args.json)
    if args.command == "wait":
        return wait(config, args.timeout)
    if args.command == "retry":
        return retry(config)
    return show_log(config, args.commit)


if __name__ == "__main__":
    sys.exit(main())
