"""test.sh's and stack.up's preflight: what it says when PostgreSQL or RabbitMQ cannot be used."""

from __future__ import annotations

import pytest

from devtools.stack import preflight
from devtools.stack.local_stack import free_port


def test_the_servers_of_this_machine_pass() -> None:
    assert preflight.problems() == []


def test_no_server_on_the_port_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPORT", str(free_port()))
    problem = preflight.postgres_problem()
    assert problem is not None
    assert "Start a local server (Debian: pg_ctlcluster <version> main start)" in problem


def test_a_server_that_wants_a_password_gets_a_hint_about_passwords_not_starting() -> None:
    # The words a Debian server's refusals carry (fe_sendauth, password authentication failed).
    for message in ("fe_sendauth: no password supplied", 'password authentication failed for user "postgres"'):
        hint = preflight.postgres_hint(message)
        assert "wants a password: set PGPASSWORD" in hint
        assert "host all postgres 127.0.0.1/32 trust" in hint
        assert "Start a local server" not in hint
