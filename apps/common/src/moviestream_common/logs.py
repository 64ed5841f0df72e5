"""One JSON object per line on stdout, for every service."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import enum
import json
import logging
import math
import os
import select
import sys
import threading
from typing import Any, TextIO

import orjson

FLUSH_SECONDS = 0.2
# What every LogRecord carries; any other attribute is a field the call passed in `extra`.
RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# orjson writes str, int, float, bool, None, dicts, lists, tuples and enums as json does; dates,
# times and dataclasses are left to _for_orjson, as json's encoder leaves them to its `default`.
ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class BatchingHandler(logging.StreamHandler):
    """Makes and writes the lines of INFO records in batches, on a thread of its own, within FLUSH_SECONDS.

    Writing each line with a system call of its own, and making the JSON on
    the request's thread, cost about a fifth of the gateway's CPU per order
    (nginx's `access_log ... buffer= flush=` exists for the same reason).
    Here a request only fixes the record's message, as logging's
    QueueHandler does. A warning or error is written at once, after the lines
    before it; what is pending is written when the process exits, as logging
    flushes every handler then. Each write holds whole lines and at most
    PIPE_BUF bytes, so lines from processes sharing a pipe never interleave.
    """

    def __init__(self, stream: TextIO, flush_seconds: float = FLUSH_SECONDS) -> None:
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self._pending: list[logging.LogRecord] = []
        self._writing = False  # the flusher is making lines of records it took; they go out before any later ones
        self._written = threading.Condition(self.lock)
        self._flusher: threading.Thread | None = None
        self._stopping = threading.Event()
        # A forked child (a gunicorn worker) starts with the parent's pending records: those are the parent's to write.
        os.register_at_fork(after_in_child=self._forget_parent)

    def emit(self, record: logging.LogRecord) -> None:  # called with self.lock held, by Handler.handle
        try:
            record.msg, record.args = record.getMessage(), None
        except Exception:  # noqa: BLE001 - logging's contract: a record that cannot be written is reported, not raised
            self.handleError(record)
            return
        self._pending.append(record)
        if record.levelno >= logging.WARNING:
            self._write_pending()
        elif self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_periodically, name="log-flusher", daemon=True)
            self._flusher.start()

    def flush(self) -> None:
        with self.lock:
            self._write_pending()

    def close(self) -> None:
        self._stopping.set()
        self.flush()
        super().close()

    def _write_pending(self) -> None:
        while self._writing:
            self._written.wait()
        records, self._pending = self._pending, []
        self._write(self._lines(records))

    def _flush_periodically(self) -> None:
        while not self._stopping.wait(self.flush_seconds):
            with self.lock:
                if self._writing or not self._pending:
                    continue
                records, self._pending = self._pending, []
                self._writing = True
            lines: list[str] = []
            try:
                lines = self._lines(records)  # without the lock: requests go on logging meanwhile
            finally:
                with self.lock:
                    self._writing = False
                    self._written.notify_all()
                    self._write(lines)

    def _forget_parent(self) -> None:
        self._pending = []
        self._writing = False
        self._flusher = None

    def _lines(self, records: list[logging.LogRecord]) -> list[str]:
        lines = []
        for record in records:
            try:
                lines.append(self.format(record) + self.terminator)
            except Exception:  # noqa: BLE001 - as in emit()
                self.handleError(record)
        return lines

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        batch: list[str] = []
        size = 0
        try:
            for line in lines:
                if batch and size + len(line) > select.PIPE_BUF:  # the JSON lines are ASCII: characters are bytes
                    self.stream.write("".join(batch))
                    batch, size = [], 0
                batch.append(line)
                size += len(line)
            self.stream.write("".join(batch))
            self.stream.flush()
        except Exception:  # noqa: BLE001 - as in StreamHandler: a broken stdout must not break the request
            self.handleError(logging.makeLogRecord({"msg": "writing log lines failed"}))


def _as_json(value: Any) -> Any:
    """What a field that JSON has no type for is written as."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes | bytearray):
        return base64.urlsafe_b64encode(value).decode()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _finite(dataclasses.asdict(value))  # json's encoder writes what default returns as it is
    return value.__name__ if isinstance(value, type) else _shown(value)


def _for_orjson(value: Any) -> Any:
    """_as_json, and what json writes itself but orjson leaves to `default`: subclasses of float and tuple."""
    if isinstance(value, float):
        return float(value)
    if isinstance(value, tuple):  # a named tuple
        return list(value)
    return _as_json(value)


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as None, as orjson writes them, for json's encoder."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _shown(value: object) -> str:
    for show in (str, repr):
        with contextlib.suppress(Exception):  # a field that cannot be shown must not lose the line
            return show(value)
    return "__could_not_encode__"


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: level, logger, message, service, exc_info and stack_info where there
    are some, the fields passed in `extra`, and the time (UTC, ISO 8601).

    The fields python-json-logger wrote, in its order and with its values
    (tests/test_logs.py holds the two side by side), for half its CPU: its
    generic field mapping was a tenth of the gateway's CPU per order. The JSON
    is orjson's, a tenth of the time of json's encoder for an access line (half
    the line's cost), without spaces; lines stay ASCII as json's are: a line
    orjson would write with other characters, or cannot write (an integer
    beyond 64 bits), is json's. NaN and infinities are written as null, which
    JSON parsers take.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._json = json.JSONEncoder(default=_as_json, separators=(",", ":")).encode
        self._second: tuple[int, str] = (-1, "")  # the last whole second seen, and how it is written

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in RECORD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        line["time"] = self._utc_time(record.created)
        return self._encode(line)

    def _encode(self, line: dict[str, Any]) -> str:
        try:
            encoded = orjson.dumps(line, default=_for_orjson, option=ORJSON_OPTIONS)
            if encoded.isascii():
                return encoded.decode()
        except orjson.JSONEncodeError:
            pass
        return self._json(_finite(line))

    def _utc_time(self, created: float) -> str:
        """datetime.fromtimestamp(created, UTC).isoformat(), with the date and time of day made once a second."""
        if created < 0:  # before 1970: no clock gives that; left to datetime's borrowing rules
            return datetime.datetime.fromtimestamp(created, tz=datetime.UTC).isoformat()
        fraction, whole = math.modf(created)  # as datetime splits a timestamp, rounding half to even
        seconds, microseconds = int(whole), round(fraction * 1_000_000)
        if microseconds >= 1_000_000:
            seconds, microseconds = seconds + 1, microseconds - 1_000_000
        second, written = self._second
        if seconds != second:
            written = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).isoformat()[:-6]
            self._second = (seconds, written)
        return f"{written}.{microseconds:06d}+00:00" if microseconds else f"{written}+00:00"


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record, including gunicorn's and pika's, to stdout as JSON."""
    handler = BatchingHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    # No line shows the caller's file, thread or process, so no record looks them up: logging's own
    # switches for this (the "Optimization" section of its HOWTO), a getpid() and a walk up the stack
    # fewer per line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    root = logging.getLogger()
    for previous in root.handlers:
        if isinstance(previous, BatchingHandler):
            previous.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pika logs every connection attempt at INFO; its warnings are what matter.
    logging.getLogger("pika").setLevel(logging.WARNING)
    # The services write their own JSON access line; werkzeug's would repeat it.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
