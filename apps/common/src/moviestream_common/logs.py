"""One JSON object per line on stdout, for every service."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record, including gunicorn's and pika's, to stdout as JSON."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"service": service},
            timestamp="time",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pika logs every connection attempt at INFO; its warnings are what matter.
    logging.getLogger("pika").setLevel(logging.WARNING)
    # The services write their own JSON access line; werkzeug's would repeat it.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
