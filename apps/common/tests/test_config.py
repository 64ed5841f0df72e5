from __future__ import annotations

import pytest

from moviestream_common.config import ConfigError, env_float, env_int, env_str
from moviestream_common.retry import Backoff, retry_until


def test_unset_or_blank_variables_take_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_PORT", "  ")
    assert env_int("SOME_PORT", 80) == 80
    assert env_str("UNSET_VARIABLE_X", "d") == "d"
    assert env_float("UNSET_VARIABLE_X", 1.5) == 1.5


@pytest.mark.parametrize(("raw", "message"), [("eighty", "must be an integer"), ("0", "must be between 1 and 65535")])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str, message: str) -> None:
    monkeypatch.setenv("SOME_PORT", raw)
    with pytest.raises(ConfigError, match=f"SOME_PORT {message}"):
        env_int("SOME_PORT", 80, minimum=1, maximum=65535)


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(first=1, cap=4)
    delays = [backoff.next_delay() for _ in range(5)]
    assert [round(d / cap, 2) <= 1 and d >= 0.75 * cap for d, cap in zip(delays, [1, 2, 4, 4, 4], strict=True)] == [
        True
    ] * 5
    backoff.reset()
    assert backoff.next_delay() <= 1


def test_retry_until_gives_up_after_the_timeout_with_the_last_error() -> None:
    calls = []

    def failing() -> None:
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        retry_until(failing, what="x", errors=(ConnectionError,), timeout=2, sleep=lambda _: None)
    assert len(calls) >= 2
