"""One JSON object per line on stdout, for every service."""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

FLUSH_SECONDS = 0.2


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


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record, including gunicorn's and pika's, to stdout as JSON."""
    handler = BatchingHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"service": service},
            timestamp="time",
        )
    )
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
