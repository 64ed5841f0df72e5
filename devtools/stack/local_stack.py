"""The three services as local background processes against the local PostgreSQL and RabbitMQ.

State lives in one folder (`.stack/` by default): `stack.json` with the
ports, names and server settings chosen at `up`, and a `.pid` and `.log`
per service, so `start`, `stop` and `status` in a later command find the
same stack, and a restarted service reaches the same servers whatever the
shell that restarts it has set. A service is ready when its own process
holds its port and answers /readyz: another program that answers on that
port is named, never taken for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pika
import psutil
import psycopg
from psycopg import sql

from devtools import ROOT
from devtools.stack.local_services import apply_defaults, process_environment, server_settings
from devtools.stack.processes import describe, port_holders, process_tree
from devtools.waiting import Timeout, answers_ok, wait_for
from moviestream_common.rabbitmq import BillingQueue, RabbitSettings

SERVICES = ("inventory-app", "billing-app", "api-gateway")  # start order: the gateway needs the inventory
PORT_RELEASE_SECONDS = 5.0
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "python:moviestream_common.gunicorn_config"]


class StackError(RuntimeError):
    pass


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class StackConfig:
    state_dir: Path = ROOT / ".stack"
    gateway_port: int = 3000
    inventory_port: int = 8080
    billing_port: int = 8081
    inventory_database: str = "movies_db"
    billing_database: str = "billing_db"
    queue: str = "billing_queue"
    # Loopback unless told otherwise: a developer's stack is not for the network (the images bind 0.0.0.0).
    host: str = "127.0.0.1"
    settings: dict[str, str] = field(default_factory=server_settings)
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """Where to reach the services: `host`, or loopback when they listen on every address."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104

    def port(self, service: str) -> int:
        return {"api-gateway": self.gateway_port, "inventory-app": self.inventory_port}.get(service, self.billing_port)

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = asdict(self) | {"state_dir": str(self.state_dir)}
        path = self.state_dir / "stack.json"
        path.touch(mode=0o600)  # the settings may hold a password
        path.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path = ROOT / ".stack") -> StackConfig:
        path = state_dir / "stack.json"
        if not path.exists():
            return cls(state_dir=state_dir)
        data = json.loads(path.read_text())
        return cls(**(data | {"state_dir": Path(data["state_dir"])}))


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config

    # -- what each service runs with --------------------------------------

    def command(self, service: str) -> list[str]:
        if service == "billing-app":
            return [sys.executable, "-m", "billing_app"]
        # On the command line, gunicorn's --bind wins over the images' configuration file.
        gunicorn = [*GUNICORN, "--bind", f"{self.config.host}:{self.config.port(service)}"]
        if service == "api-gateway":
            return [*gunicorn, "--worker-class", "aiohttp.GunicornUVLoopWebWorker", "api_gateway:serve"]
        return [*gunicorn, "inventory_app:create_app()"]

    def environment(self, service: str) -> dict[str, str]:
        """The service's environment from the stack's saved settings, not from the shell that runs this."""
        config = self.config
        env = process_environment() | config.settings
        env |= {
            "PORT": str(config.port(service)),
            "HOST": config.host,  # billing-app's probes; gunicorn gets --bind
            "BILLING_QUEUE": config.queue,
            "PYTHONUNBUFFERED": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(config.state_dir / "metrics" / service),
        }
        if service == "inventory-app":
            env["PGDATABASE"] = config.inventory_database
        elif service == "billing-app":
            env["PGDATABASE"] = config.billing_database
        else:
            env["INVENTORY_URL"] = f"http://{config.address}:{config.inventory_port}"
        return env | config.extra_env.get(service, {})

    # -- files ----------------------------------------------------------------

    def pid_file(self, service: str) -> Path:
        return self.config.state_dir / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.config.state_dir / f"{service}.log"

    def pid(self, service: str) -> int | None:
        """The service's pid if it is running: the process started, not a later one given the same pid."""
        try:
            pid_text, _, started_text = self.pid_file(service).read_text().partition(" ")
            pid, started = int(pid_text), float(started_text or 0)
        except (FileNotFoundError, ValueError):
            return None
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return None  # it was our child and has exited
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE or (started and abs(process.create_time() - started) > 1):
                return None
        except psutil.NoSuchProcess:
            return None
        return pid

    def running(self) -> dict[str, int]:
        return {service: pid for service in SERVICES if (pid := self.pid(service)) is not None}

    # -- lifecycle ------------------------------------------------------------

    def ensure_databases(self) -> None:
        env = self.environment("inventory-app")
        params = {"host": env["PGHOST"], "port": env["PGPORT"], "user": env["PGUSER"], "dbname": "postgres"}
        if env.get("PGPASSWORD"):
            params["password"] = env["PGPASSWORD"]
        with psycopg.connect(**params, autocommit=True, connect_timeout=5) as conn:
            for name in (self.config.inventory_database, self.config.billing_database):
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def up(self, timeout: float = 60) -> None:
        running = self.running()
        if running:
            pids = ", ".join(f"{service} pid {pid}" for service, pid in running.items())
            raise StackError(
                f"the local stack in {self.config.state_dir} is already running ({pids}); "
                "`invoke stack.status` shows it, `invoke stack.down` stops it"
            )
        for service in SERVICES:  # before any starts, so a taken port leaves nothing half-started
            self._check_port_free(service)
        self.config.save()
        self.ensure_databases()
        for service in SERVICES:
            self.start(service, timeout=timeout)

    def down(self) -> None:
        for service in reversed(SERVICES):
            self.stop(service)

    def start(self, service: str, timeout: float = 60) -> int:
        self._check(service)
        pid = self.pid(service)
        if pid is None:
            self._check_port_free(service)
            self.config.state_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_file(service).open("ab")
            process = subprocess.Popen(
                self.command(service),
                env=self.environment(service),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
            log.close()
            pid = process.pid
            with contextlib.suppress(psutil.NoSuchProcess):
                self.pid_file(service).write_text(f"{pid} {psutil.Process(pid).create_time()}\n")
        try:
            wait_for(lambda: self.ready(service) or self.pid(service) is None, timeout=timeout, what=f"{service}")
        except Timeout:
            raise StackError(
                f"{service} did not become ready in {timeout:g} s{self._port_holders_note(service)}\n"
                f"{self.log_tail(service)}"
            ) from None
        if self.pid(service) is None:
            raise StackError(
                f"{service} exited during start-up{self._port_holders_note(service)}\n{self.log_tail(service)}"
            )
        return pid

    def stop(self, service: str, timeout: float = 30) -> None:
        """SIGTERM, and SIGKILL if it has not exited after `timeout` seconds."""
        self._check(service)
        pid = self.pid(service)
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            try:
                wait_for(lambda: self.pid(service) is None, timeout=timeout, what=f"{service} to stop")
            except Timeout:
                self._signal(pid, signal.SIGKILL)
                wait_for(lambda: self.pid(service) is None, timeout=10, what=f"{service} to die")
        self.pid_file(service).unlink(missing_ok=True)

    def kill(self, service: str) -> None:
        """SIGKILL: the service gets no chance to finish anything."""
        self._check(service)
        pid = self.pid(service)
        if pid is not None:
            self._signal(pid, signal.SIGKILL)
            wait_for(lambda: self.pid(service) is None, timeout=10, what=f"{service} to die")
        self.pid_file(service).unlink(missing_ok=True)

    def ready(self, service: str) -> bool:
        """Is the service's own process listening on its port, and does /readyz answer 200 there?"""
        pid = self.pid(service)
        if pid is None:
            return False
        holders = port_holders(self.config.port(service))
        if not holders or not holders <= process_tree(pid):
            return False
        return answers_ok(f"http://{self.config.address}:{self.config.port(service)}/readyz")

    def _check_port_free(self, service: str) -> None:
        port = self.config.port(service)
        # A process killed a moment ago may still be closing its socket (then no process is named for it).
        with contextlib.suppress(Timeout):
            wait_for(lambda: not port_holders(port), timeout=PORT_RELEASE_SECONDS, what=f"port {port} to be free")
        holders = port_holders(port)
        if holders:
            raise StackError(f"cannot start {service}: port {port} is already held by {describe(holders)}")

    def _port_holders_note(self, service: str) -> str:
        pid = self.pid(service)
        strangers = port_holders(self.config.port(service)) - (process_tree(pid) if pid else set())
        return f"; port {self.config.port(service)} is held by {describe(strangers)}" if strangers else ""

    def status(self) -> list[dict[str, object]]:
        rows = []
        for service in SERVICES:
            pid = self.pid(service)
            state = "stopped" if pid is None else ("ready" if self.ready(service) else "not ready")
            rows.append({"service": service, "state": state, "pid": pid, "port": self.config.port(service)})
        return rows

    def log_tail(self, service: str, lines: int = 20) -> str:
        self._check(service)
        path = self.log_file(service)
        if not path.exists():
            return f"(no log at {path})"
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return f"last lines of {path}:\n" + "\n".join(tail)

    @staticmethod
    def _check(service: str) -> None:
        if service not in SERVICES:
            raise StackError(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")

    @staticmethod
    def _signal(pid: int, signum: signal.Signals) -> None:
        """SIGTERM goes to the service's main process, which stops its workers gracefully;
        SIGKILL goes to its whole process group, which it leads, so no worker survives."""
        with contextlib.suppress(ProcessLookupError):
            if signum == signal.SIGKILL:
                os.killpg(pid, signum)
            else:
                os.kill(pid, signum)


class ScratchStack:
    """A stack of its own: free ports, and databases and a queue named `<purpose>_..._<random>`.

    `with ScratchStack("bench") as scratch:` starts the three services; leaving the block stops them
    and drops the databases and both queues, so nothing of a test or a benchmark stays behind.
    """

    def __init__(
        self, purpose: str, extra_env: dict[str, dict[str, str]] | None = None, state_dir: Path | None = None
    ) -> None:
        apply_defaults()
        suffix = uuid.uuid4().hex[:8]
        self.config = StackConfig(
            state_dir=state_dir or Path(tempfile.mkdtemp(prefix=f"{purpose}-stack-")),
            gateway_port=free_port(),
            inventory_port=free_port(),
            billing_port=free_port(),
            inventory_database=f"{purpose}_movies_{suffix}",
            billing_database=f"{purpose}_billing_{suffix}",
            queue=f"billing_queue_{purpose}_{suffix}",
            extra_env=extra_env or {},
        )
        self.stack = Stack(self.config)
        self.queue = BillingQueue(self.config.queue)
        self.gateway_url = f"http://127.0.0.1:{self.config.gateway_port}"
        self.inventory_url = f"http://127.0.0.1:{self.config.inventory_port}"

    def __enter__(self) -> ScratchStack:
        try:
            self.stack.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self, database: str) -> psycopg.Connection:
        return psycopg.connect(dbname=database, autocommit=True, connect_timeout=5)

    def broker(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(RabbitSettings.from_env().parameters())

    def close(self) -> None:
        self.stack.down()
        with self.connect("postgres") as conn:
            for name in (self.config.inventory_database, self.config.billing_database):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection = self.broker()
        try:
            channel = connection.channel()
            channel.queue_delete(self.queue.name)
            channel.queue_delete(self.queue.dead_letter)
        finally:
            connection.close()
