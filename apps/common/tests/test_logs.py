from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import io
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Iterator

import pytest
import pythonjsonlogger.json

from moviestream_common.logs import BatchingHandler, JsonFormatter


class Recording(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("test_logs")
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log
    for handler in log.handlers:
        handler.close()
    log.handlers.clear()


def _handler(log: logging.Logger, stream: io.TextIOBase, flush_seconds: float = 0.2) -> BatchingHandler:
    handler = BatchingHandler(stream, flush_seconds)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler


def test_info_lines_are_held_then_written_together_in_order(logger) -> None:
    stream = Recording()
    _handler(logger, stream, flush_seconds=0.3)
    for n in range(3):
        logger.info("line %d", n)
    assert stream.writes == []
    deadline = time.monotonic() + 3
    while not stream.writes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stream.writes == ["INFO line 0\nINFO line 1\nINFO line 2\n"]


def test_a_warning_goes_out_at_once_after_the_lines_before_it(logger) -> None:
    stream = Recording()
    _handler(logger, stream, flush_seconds=60)
    logger.info("request")
    logger.error("broken")
    assert stream.writes == ["INFO request\nERROR broken\n"]


def test_each_write_is_whole_lines_within_pipe_buf(logger) -> None:
    stream = Recording()
    handler = _handler(logger, stream, flush_seconds=60)
    lines = [f"{n:04d} " + "x" * (50 + n % 300) for n in range(200)]
    for line in lines:
        logger.info(line)
    handler.flush()
    assert len(stream.writes) > 1
    assert all(len(write) <= select.PIPE_BUF and write.endswith("\n") for write in stream.writes)
    assert "".join(stream.writes) == "".join(f"INFO {line}\n" for line in lines)


def test_closing_writes_what_is_pending(logger) -> None:
    stream = Recording()
    handler = _handler(logger, stream, flush_seconds=60)
    logger.info("last words")
    handler.close()
    assert stream.getvalue() == "INFO last words\n"


def test_a_forked_child_does_not_write_its_parents_pending_lines(logger, tmp_path) -> None:
    path = tmp_path / "out.log"
    with path.open("w") as stream:
        handler = _handler(logger, stream, flush_seconds=60)
        logger.info("parent")
        pid = os.fork()
        if pid == 0:
            logger.info("child")
            handler.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        handler.flush()
    assert sorted(path.read_text().splitlines()) == ["INFO child", "INFO parent"]


def test_a_process_that_exits_writes_its_last_lines_as_json() -> None:
    program = (
        "import logging; from moviestream_common.logs import configure_logging; "
        "configure_logging('svc'); logging.getLogger('x').info('bye', extra={'n': 1})"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30, check=True)
    [line] = out.stdout.splitlines()
    assert json.loads(line) | {"time": None} == {
        "level": "INFO",
        "logger": "x",
        "message": "bye",
        "service": "svc",
        "n": 1,
        "time": None,
    }


def test_info_lines_are_made_off_the_callers_thread_with_the_message_as_it_was(logger) -> None:
    threads: list[str] = []

    class Noting(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            threads.append(threading.current_thread().name)
            return super().format(record)

    stream = Recording()
    handler = _handler(logger, stream, flush_seconds=0.05)
    handler.setFormatter(Noting("%(levelname)s %(message)s"))
    seen = ["a"]
    logger.info("seen %s", seen)
    seen.append("b")  # changed after the call: the line still shows what was logged
    deadline = time.monotonic() + 3
    while not stream.writes and time.monotonic() < deadline:
        time.sleep(0.02)
    logger.warning("now")
    assert stream.getvalue() == "INFO seen ['a']\nWARNING now\n"
    assert threads == ["log-flusher", threading.current_thread().name]


# -- the JSON lines: field for field what python-json-logger, configured as the services were, wrote --------------


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Unshowable:
    def __str__(self) -> str:
        raise RuntimeError("no str")


class Unprintable(Unshowable):
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _library_formatter() -> logging.Formatter:
    return pythonjsonlogger.json.JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        static_fields={"service": "svc"},
        timestamp="time",
    )


def _raised() -> tuple:
    try:
        raise ValueError("boom \u00e9")
    except ValueError:
        return sys.exc_info()


EXTRAS = [
    {},
    {"method": "POST", "path": "/api/billing", "status": 200, "duration_ms": 1.234, "request_id": "a" * 32},
    {"path": '/caf\u00e9/"quoted"\\back\nline\ttab\x00nul\u2028\U0001f600'},
    {"n": 0, "f": -0.0, "big": 10**30, "yes": True, "none": None, "list": [1, "two", None], "map": {"k": [1.5]}},
    {"when": datetime.datetime(2026, 12, 7, 9, 15, 0, 123456, tzinfo=datetime.UTC), "day": datetime.date(2026, 1, 2)},
    {"at": datetime.time(23, 59, 59), "naive": datetime.datetime(2026, 1, 1)},
    {"error": KeyError("missing"), "colour": Colour.RED, "raw": b"\x00\xff bytes", "point": Point(1, 2)},
    {"kind": int, "amount": decimal.Decimal("19.90"), "odd": Unshowable(), "worse": Unprintable()},
    {"_private": "left out", "service": "overridden", "time": "overridden too"},
]


def _compact(line: str) -> str:
    """A line of python-json-logger's written as ours are: the same fields, in the same order, without spaces."""
    return json.dumps(json.loads(line), separators=(",", ":"))


# An ASCII line is orjson's; a line with other characters (escaped, as json escapes them) is json's.
ARGUMENTS = {"ascii": ("x", 3), "non-ascii": ("x\u00e9", 3)}


@pytest.mark.parametrize("extra", EXTRAS, ids=range(len(EXTRAS)))
@pytest.mark.parametrize("exc_info", [None, "raised"], ids=["plain", "exception"])
@pytest.mark.parametrize("args", ARGUMENTS.values(), ids=ARGUMENTS.keys())
def test_a_line_is_what_python_json_logger_wrote(extra: dict, exc_info: str | None, args: tuple) -> None:
    record = logging.getLogger("shop.orders").makeRecord(
        "shop.orders",
        logging.WARNING,
        __file__,
        1,
        "order %s of %d",
        args,
        _raised() if exc_info else None,
        extra=extra,
    )
    ours, library = JsonFormatter("svc").format(record), _library_formatter().format(record)
    assert ours == _compact(library)
    assert ours.isascii()
    assert json.loads(ours)["message"] == f"order {args[0]} of {args[1]}"


def test_a_line_with_a_stack_is_what_python_json_logger_wrote() -> None:
    record = logging.makeLogRecord({"name": "x", "msg": "here", "stack_info": "Stack (most recent call last):\n  f"})
    assert JsonFormatter("svc").format(record) == _compact(_library_formatter().format(record))


class Amount(float):
    pass


class Pair(typing.NamedTuple):
    left: int
    right: str


@pytest.mark.parametrize("text", ["ascii", "caf\u00e9"])
def test_subclasses_of_float_and_tuple_are_written_as_json_writes_them(text: str) -> None:
    record = logging.makeLogRecord({"msg": text, "amount": Amount(2.5), "pair": Pair(1, "b"), "keys": {1: "one"}})
    line = json.loads(JsonFormatter("svc").format(record))
    assert (line["amount"], line["pair"], line["keys"]) == (2.5, [1, "b"], {"1": "one"})


@pytest.mark.parametrize("text", ["ascii", "caf\u00e9"])
def test_nan_and_infinities_are_written_as_null_so_the_line_stays_json(text: str) -> None:
    nan, inf = float("nan"), float("inf")
    record = logging.makeLogRecord(
        {"msg": text, "ratio": nan, "nested": {"low": -inf, "all": [inf, 1.0]}, "point": Point(1, nan)}
    )
    line = JsonFormatter("svc").format(record)
    parsed = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in {line}"))
    assert (parsed["ratio"], parsed["nested"]) == (None, {"low": None, "all": [None, 1.0]})
    assert parsed["point"] == {"x": 1, "y": None}


@pytest.mark.parametrize(
    "created",
    [
        -1.5,
        0.0,
        0.0000005,
        0.0000015,
        1765100245.0,
        1765100245.9999996,
        1765100245.0000004,
        1765100245.4999995,
        2**31 + 0.25,
    ],
)
def test_the_time_is_written_as_datetime_writes_it(created: float) -> None:
    formatter = JsonFormatter("svc")
    for moment in (created, created + 1.0000007, created):  # across a second and back to one written before
        record = logging.makeLogRecord({"msg": "m", "created": moment})
        expected = datetime.datetime.fromtimestamp(moment, tz=datetime.UTC).isoformat()
        assert json.loads(formatter.format(record))["time"] == expected
