"""gunicorn started with the services' configuration, as in the pods: HOME is not writable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devtools.stack.local_stack import free_port
from devtools.waiting import answers_ok, wait_for

PROBE_APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def test_gunicorn_starts_without_complaint_when_home_is_not_writable(tmp_path: Path) -> None:
    (tmp_path / "probe_app.py").write_text(PROBE_APP)
    port = free_port()
    env = os.environ | {"HOME": "/dev/null/home", "PORT": str(port), "WEB_CONCURRENCY": "1"}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "--config", "python:moviestream_common.gunicorn_config", "probe_app:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: answers_ok(f"http://127.0.0.1:{port}/"), timeout=20, what="gunicorn to answer")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Control server error" not in output, output
    assert "Not a directory" not in output, output
