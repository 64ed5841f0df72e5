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
    """Writes lines in batches: within FLUSH_SECONDS, or at once from WARNING up.

    One write per line costs a system call per request, which was a fifth of
    the gateway's CPU per order (nginx's `access_log ... buffer= flush=` exists
    for the same reason). Each write holds whole lines and at most PIPE_BUF
    bytes, so lines from several processes sharing a pipe never interleave. A
    warning or error goes out at once, after the lines before it; the rest
    goes out when the process exits, as logging flushes every handler then.
    """

    def __init__(self, stream: TextIO, flush_seconds: float = FLUSH_SECONDS) -> None:
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self._pending: list[str] = []
        self._flusher: threading.Thread | None = None
        self._stopping = threading.Event()
        # A forked child (a gunicorn worker) starts with the parent's pending lines: those are the parent's to write.
        os.register_at_fork(after_in_child=self._forget_parent)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's contract: a record that cannot be written is reported, not raised
            self.handleError(record)
            return
        self._pending.append(line)  # emit() runs under self.lock, which Handler.handle takes
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

    def _flush_periodically(self) -> None:
        while not self._stopping.wait(self.flush_seconds):
            self.flush()

    def _forget_parent(self) -> None:
        self._pending = []
        self._flusher = None

    def _write_pending(self) -> None:
        lines, self._pending = self._pending, []
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
            if batch:
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
