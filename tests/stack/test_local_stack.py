"""`invoke stack.*`'s Stack: ready means its own process, settings kept with the stack, loopback, one stack at a time."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from devtools.stack.local_stack import ScratchStack, Stack, StackConfig, StackError, free_port


class AnswersOkToEverything(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stranger() -> Iterator[int]:
    """Another program on a port, answering 200 to /readyz as a service would."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), AnswersOkToEverything)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def stack_for(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(**settings: Any) -> Stack:
        made.append(Stack(StackConfig(state_dir=tmp_path / "stack", **settings)))
        return made[-1]

    yield make
    for stack in made:
        stack.down()


def listening_addresses(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_a_port_held_by_another_program_fails_the_start_naming_the_holder(
    stranger: int, stack_for: Callable[..., Stack]
) -> None:
    stack = stack_for(gateway_port=stranger)
    with pytest.raises(StackError, match=f"port {stranger} is already held by pid {os.getpid()} "):
        stack.start("api-gateway", timeout=30)
    assert stack.running() == {}


def test_up_with_a_port_held_starts_nothing(stranger: int, stack_for: Callable[..., Stack]) -> None:
    stack = stack_for(gateway_port=stranger, inventory_port=free_port(), billing_port=free_port())
    with pytest.raises(StackError, match=f"cannot start api-gateway: port {stranger} is already held by pid "):
        stack.up(timeout=30)
    assert stack.running() == {}


def test_a_port_taken_during_start_up_is_not_taken_for_the_service(
    stranger: int, stack_for: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The holder arrives after the check before the start: /readyz answers 200, but not from our gateway.
    monkeypatch.setattr(Stack, "_check_port_free", lambda _self, _service: None)
    stack = stack_for(gateway_port=stranger)
    with pytest.raises(StackError, match=f"exited during start-up; port {stranger} is held by pid {os.getpid()} "):
        stack.start("api-gateway", timeout=30)
    assert stack.status()[2]["state"] == "stopped"


def test_a_restarted_service_takes_the_settings_saved_at_up_not_the_current_shell(
    stack_for: Callable[..., Stack], make_database: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_for(billing_port=free_port(), billing_database=make_database("stack_settings")).config.save()
    # The shell of a later `invoke stack.start` names other servers, and a variable no service should get.
    monkeypatch.setenv("RABBITMQ_PORT", str(free_port()))
    monkeypatch.setenv("PGPORT", str(free_port()))
    monkeypatch.setenv("INVENTORY_URL", "http://elsewhere.invalid")
    restarted = stack_for()
    restarted.config = StackConfig.load(restarted.config.state_dir)
    assert "INVENTORY_URL" not in restarted.environment("billing-app")

    restarted.start("billing-app", timeout=30)
    assert restarted.status()[1]["state"] == "ready"


def test_services_listen_on_loopback_unless_told_otherwise(stack_for: Callable[..., Stack]) -> None:
    default, everywhere = stack_for(), stack_for(host="0.0.0.0")
    assert "127.0.0.1:8080" in default.command("inventory-app")
    assert default.environment("billing-app")["HOST"] == "127.0.0.1"
    assert "0.0.0.0:3000" in everywhere.command("api-gateway")
    assert everywhere.environment("billing-app")["HOST"] == "0.0.0.0"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchStack]:
    with ScratchStack("stack", state_dir=tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.mark.stack
def test_every_service_of_the_stack_listens_on_loopback_only(scratch: ScratchStack) -> None:
    for service in ("inventory-app", "billing-app", "api-gateway"):
        assert listening_addresses(scratch.config.port(service)) == {"127.0.0.1"}, service


@pytest.mark.stack
def test_up_on_a_running_stack_says_so_at_once_and_keeps_its_settings(scratch: ScratchStack) -> None:
    saved = (scratch.config.state_dir / "stack.json").read_text()
    second = Stack(StackConfig(state_dir=scratch.config.state_dir))
    started = time.monotonic()
    with pytest.raises(StackError, match=r"is already running .*api-gateway pid"):
        second.up()
    assert time.monotonic() - started < 5
    assert (scratch.config.state_dir / "stack.json").read_text() == saved
    assert [row["state"] for row in scratch.stack.status()] == ["ready"] * 3


def test_logs_of_a_service_the_stack_does_not_have_is_an_error(stack_for: Callable[..., Stack]) -> None:
    with pytest.raises(StackError, match="unknown service '--help'; choose one of inventory-app"):
        stack_for().log_tail("--help")
