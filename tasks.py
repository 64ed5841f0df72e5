"""Developer tasks: `invoke --list` shows them all, `invoke --help TASK` explains one."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Collection, Context, Exit, task

if TYPE_CHECKING:
    from devtools.stack import local_stack

# Each task imports what it needs, so that `invoke promote` and `invoke image-tags` run on the
# master VM's small virtual environment (invoke, ruamel.yaml, PyYAML) without the rest.


def _stack(state_dir: str | None = None) -> local_stack.Stack:
    from devtools.stack import local_stack

    config = local_stack.StackConfig.load(*([local_stack.Path(state_dir)] if state_dir else []))
    return local_stack.Stack(config)


def _run_stack_action(action, *args) -> None:
    from devtools.stack import local_stack

    try:
        action(*args)
    except local_stack.StackError as exc:
        raise Exit(f"error: {exc}", code=1) from None


@task(
    help={
        "gateway_port": "api-gateway port (default 3000)",
        "inventory_port": "inventory-app port (default 8080)",
        "billing_port": "billing-app health port (default 8081)",
        "host": "address the services listen on (default 127.0.0.1; 0.0.0.0 opens them to the network)",
    }
)
def up(
    c: Context, gateway_port: int = 3000, inventory_port: int = 8080, billing_port: int = 8081, host: str = "127.0.0.1"
) -> None:
    """Start the three services in the background against the local PostgreSQL and RabbitMQ."""
    from devtools.stack import local_stack, preflight

    found = preflight.problems()
    if found:
        raise Exit("error: " + "\n".join(found), code=1)
    config = local_stack.StackConfig(
        gateway_port=gateway_port, inventory_port=inventory_port, billing_port=billing_port, host=host
    )
    stack = local_stack.Stack(config)
    _run_stack_action(stack.up)
    status(c)
    print(f"gateway: http://127.0.0.1:{gateway_port}  (API docs: http://127.0.0.1:{gateway_port}/docs)")
    print(f"metrics: http://127.0.0.1:{gateway_port}/metrics, :{inventory_port}/metrics, :{billing_port}/metrics")


@task
def down(c: Context) -> None:
    """Stop every service of the local stack."""
    _run_stack_action(_stack().down)
    status(c)


@task(help={"service": "inventory-app, billing-app or api-gateway"})
def start(c: Context, service: str) -> None:
    """Start one service of the local stack (with the ports and settings saved at stack.up)."""
    _run_stack_action(_stack().start, service)
    status(c)


@task(help={"service": "inventory-app, billing-app or api-gateway"})
def stop(c: Context, service: str) -> None:
    """Stop one service of the local stack gracefully (SIGTERM)."""
    _run_stack_action(_stack().stop, service)
    status(c)


@task(help={"as_json": "print JSON instead of a table"})
def status(c: Context, as_json: bool = False) -> None:
    """Show each local service: running or not, ready or not, its pid and port."""
    rows = _stack().status()
    if as_json:
        print(json.dumps(rows))
        return
    for row in rows:
        print(f"{row['service']:<14} {row['state']:<10} port {row['port']:<6} pid {row['pid'] or '-'}")


@task(help={"service": "inventory-app, billing-app or api-gateway", "lines": "how many lines"})
def logs(c: Context, service: str, lines: int = 40) -> None:
    """Print the last lines of one service's log."""
    _run_stack_action(lambda: print(_stack().log_tail(service, lines)))


@task
def test(c: Context) -> None:
    """Run every test suite (the same as ./test.sh, inside the current environment)."""
    c.run(f"{sys.executable} -m pytest", pty=sys.stdout.isatty(), env=dict(os.environ))


@task(
    iterable=["only"],
    help={
        "only": "run only this measurement (repeatable): gateway, inventory, intake, drain, search, memory",
        "duration": "seconds per HTTP load run (default 10)",
        "connections": "concurrent connections (default 32)",
        "backlog": "orders in the drained backlog (default 20000)",
        "max_movies": "largest movie table for the search row (default 1000000)",
    },
)
def bench(
    c: Context,
    only: list[str],
    duration: float = 10.0,
    connections: int = 32,
    backlog: int = 20_000,
    max_movies: int = 1_000_000,
) -> None:
    """Measure the services against their anchors (nginx, a minimal Flask app, plain pika...); PASS/FAIL per goal."""
    from devtools.bench import cli as bench_cli
    from devtools.stack import preflight

    found = preflight.problems()
    if found:
        raise Exit("error: " + "\n".join(found), code=1)
    options = ["--duration", str(duration), "--connections", str(connections), "--backlog", str(backlog)]
    options += ["--max-movies", str(max_movies), *(f"--only={name}" for name in only)]
    if bench_cli.main(options):
        raise Exit("invoke bench: some goals FAIL (see above)", code=1)


DEFAULT_GATEWAY = f"http://{os.environ.get('VAGRANT_MASTER_IP', '192.168.56.10')}:3000"


@task(
    help={
        "url": f"the gateway to load (default {DEFAULT_GATEWAY}, the Vagrant cluster's)",
        "users": "simulated visitors (default 50)",
        "spawn_rate": "visitors started per second (default 10)",
        "duration": "how long, e.g. 90s, 5m (default 3m)",
    }
)
def load(c: Context, url: str = DEFAULT_GATEWAY, users: int = 50, spawn_rate: float = 10, duration: str = "3m") -> None:
    """Drive a running gateway with Locust (headless): reads, searches, writes and orders; summary at the end."""
    locustfile = Path(__file__).parent / "devtools" / "loadtest" / "locustfile.py"
    result = c.run(
        f"{sys.executable} -m locust -f {locustfile} --headless --host {url} --users {users} "
        f"--spawn-rate {spawn_rate} --run-time {duration} --only-summary --stop-timeout 5",
        warn=True,
        pty=sys.stdout.isatty(),
    )
    if result is None or result.exited:
        raise Exit(f"invoke load: Locust reported failures or could not reach {url}", code=1)


@task(help={"cluster": "which cluster's key (default vagrant)", "force": "replace the key (the old one is kept aside)"})
def sealing_key(c: Context, cluster: str = "vagrant", force: bool = False) -> None:
    """Make sure the Sealed Secrets key pair exists: private key outside git, certificate in sealed-secrets/."""
    from devtools import ROOT
    from devtools.gitops import sealed_secrets, sealing

    paths = sealed_secrets.ClusterPaths(cluster)
    try:
        outcome = sealed_secrets.create_key_pair(paths, force=force)
    except sealing.SealingError as exc:
        raise Exit(f"error: {exc}", code=1) from None
    print(f"key {outcome}: {paths.private_key}  (back it up; never commit it)")
    print(f"certificate: {paths.certificate.relative_to(ROOT)}  (commit it with the SealedSecrets)")
    if outcome != sealed_secrets.KEY_KEPT:
        print(f"next: invoke seal-secrets --cluster {cluster}")


@task(
    help={
        "cluster": "which cluster's certificate to seal with (default vagrant)",
        "commit": "commit sealed-secrets/<cluster>/ (and nothing else) if it changed",
    }
)
def seal_secrets(c: Context, cluster: str = "vagrant", commit: bool = False) -> None:
    """Seal the values in .secrets/<cluster>.env (random passwords for missing ones) into sealed-secrets/<cluster>/."""
    from devtools import ROOT
    from devtools.gitops import sealed_secrets, sealing

    paths = sealed_secrets.ClusterPaths(cluster)
    try:
        written = sealed_secrets.seal_all(paths)
    except sealing.SealingError as exc:
        raise Exit(f"error: {exc}", code=1) from None
    for path in written:
        print(f"sealed {path.relative_to(ROOT)}")
    print(f"plaintext stays in {paths.values} (git-ignored)")
    if commit and sealed_secrets.commit_sealed(paths, f"Seal the {cluster} cluster's secrets with its own key"):
        print(f"committed sealed-secrets/{cluster}/")


@task(
    help={
        "cluster": "which clusters/<cluster> to install (default vagrant)",
        "kubeconfig": "the cluster's kubeconfig (default: $KUBECONFIG, else ~/.kube/config)",
        "wait": "wait until every Application is Synced and Healthy (default on; --no-wait skips)",
        "timeout": "seconds to wait at each step (default 1500)",
    }
)
def bootstrap(
    c: Context, cluster: str = "vagrant", kubeconfig: str = "", wait: bool = True, timeout: int = 1500
) -> None:
    """Hand a cluster to Argo CD: sealing key, Sealed Secrets, Argo CD, the root Application (safe to repeat)."""
    from kubernetes.client.exceptions import ApiException

    from devtools.gitops import sealing
    from devtools.gitops.bootstrap import Bootstrap, BootstrapError
    from devtools.gitops.kube import Cluster
    from devtools.gitops.manifests import RenderError

    config = Path(kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube/config")
    if not config.is_file():
        raise Exit(f"error: no kubeconfig at {config}", code=1)
    try:
        Bootstrap(cluster, Cluster(config), timeout=timeout).run(wait=wait)
    except (BootstrapError, sealing.SealingError, RenderError) as exc:
        raise Exit(f"error: {exc}", code=1) from None
    except ApiException as exc:
        raise Exit(f"error: the cluster refused a request: {exc.status} {exc.reason}: {exc.body}", code=1) from None


@task(help={"remote": "also render kustomizations that build on remote URLs (needs the network)"})
def lint(c: Context, remote: bool = False) -> None:
    """yamllint, kustomize builds, schemas, manifest and cluster rules, workflow checks, checkov, detect-secrets."""
    from devtools import ROOT
    from devtools.gitops import lint as manifest_lint
    from devtools.gitops import scanners

    problems = manifest_lint.lint(ROOT, allow_remote=remote)
    for name, scan in (("checkov", scanners.policy_problems), ("detect-secrets", scanners.secret_problems)):
        found = scan(ROOT)
        print(f"{'ok  ' if not found else 'FAIL'}  {name}")
        problems += found
    if problems:
        raise Exit("invoke lint found problems:\n" + "\n".join(f"  {p}" for p in problems), code=1)
    print("invoke lint: clean")


@task(
    help={
        "check": "only report whether the locks match their inputs",
        "upgrade": "move every pin to the newest release its range allows",
    }
)
def lock(c: Context, check: bool = False, upgrade: bool = False) -> None:
    """Compile requirements/*.in into the hash-locked requirements/*.txt (uv pip compile); --check fails when stale."""
    from devtools.gitops import lockfile

    root = Path(__file__).parent
    try:
        if check:
            problems = lockfile.stale(root)
            if problems:
                raise Exit("the locks are stale; run `invoke lock`:\n" + "\n".join(f"  {p}" for p in problems), code=1)
            print("invoke lock: requirements/*.txt match their inputs")
            return
        for name in lockfile.LOCKS:
            lockfile.compile_lock(root, name, upgrade=upgrade)
            print(f"compiled requirements/{name}")
    except RuntimeError as exc:
        raise Exit(f"error: {exc}", code=1) from None


@task
def secrets_baseline(c: Context) -> None:
    """Record detect-secrets' current findings in .secrets.baseline as false positives (read them first)."""
    from devtools.gitops import scanners

    count = scanners.write_secrets_baseline(Path(__file__).parent)
    print(f"{scanners.BASELINE}: {count} finding(s) recorded as false positives")


IMAGE_HELP = {
    "service": "one service (repeatable); all three by default",
    "user": "Docker Hub user or organisation (default: $DOCKERHUB_USERNAME)",
    "tag": "image tag (default: the short git SHA)",
}


def _image_args(service: list[str], user: str, tag: str) -> tuple[list[str], str, str]:
    from devtools.gitops import images

    return images.check_services(service), user or os.environ.get("DOCKERHUB_USERNAME", ""), tag or images.git_tag()


@task(iterable=["service"], help=IMAGE_HELP)
def build(c: Context, service: list[str], user: str = "", tag: str = "") -> None:
    """Build the service images (Docker SDK) as <user>/<service>:<short git SHA>."""
    from devtools.gitops import images

    try:
        built = images.build(*_image_args(service, user, tag))
    except images.ImageError as exc:
        raise Exit(f"error: {exc}", code=1) from None
    print("built " + " ".join(built))


@task(iterable=["service"], help=IMAGE_HELP)
def push(c: Context, service: list[str], user: str = "", tag: str = "") -> None:
    """Push the images that `invoke build` made (after `docker login`)."""
    from devtools.gitops import images

    try:
        pushed = images.push(*_image_args(service, user, tag))
    except images.ImageError as exc:
        raise Exit(f"error: {exc}", code=1) from None
    print("pushed " + " ".join(pushed))


@task(
    iterable=["image"],
    help={
        "overlay": "the overlay to write, e.g. overlays/vagrant",
        "image": "SERVICE=IMAGE:TAG or SERVICE=IMAGE@sha256:DIGEST (repeatable)",
        "commit": "commit the kustomization alone, and only if it changed",
        "source": "the commit the images were built from, named in the commit message (default HEAD)",
    },
)
def promote(c: Context, overlay: str, image: list[str], commit: bool = False, source: str = "HEAD") -> None:
    """Write new image references into an overlay's kustomization (what CI and the cluster's deployer run)."""
    from devtools.gitops import promotion

    try:
        result = promotion.promote(overlay, image, commit=commit, source=source)
    except promotion.PromotionError as exc:
        raise Exit(f"error: {exc}", code=1) from None
    if not result.changed:
        print(f"{overlay} already names these images; nothing to do")
        return
    for changed in result.changed:
        print(f"{changed.service}: {changed.reference}")
    if result.commit:
        print(f"committed {result.commit}")


@task(help={"rev": "the commit to compute the tags at (default HEAD)", "as_json": "print JSON instead of lines"})
def image_tags(c: Context, rev: str = "HEAD", as_json: bool = False) -> None:
    """Print each service's content tag: a hash of what its image is built from at REV."""
    from devtools.gitops import image_tags as tags

    try:
        found = tags.content_tags(rev)
    except tags.ImageTagError as exc:
        raise Exit(f"error: {exc}", code=1) from None
    if as_json:
        print(json.dumps(found))
        return
    for service, tag in found.items():
        print(f"{service:<14} {tag}")


stack = Collection("stack", up, down, start, stop, status, logs)
namespace = Collection(
    test, lint, lock, secrets_baseline, sealing_key, seal_secrets, bootstrap, build, push, promote, image_tags,
    bench, load, stack,
)  # fmt: skip
