"""Debian's nginx as a keep-alive reverse proxy in front of one local port: the anchor for the gateway."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from devtools.stack.local_stack import free_port
from devtools.waiting import wait_for

CONFIG = """\
worker_processes 1;
pid {scratch}/nginx.pid;
error_log {scratch}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {scratch}/body;
  proxy_temp_path {scratch}/proxy;
  fastcgi_temp_path {scratch}/fastcgi;
  uwsgi_temp_path {scratch}/uwsgi;
  scgi_temp_path {scratch}/scgi;
  upstream backend {{
    server 127.0.0.1:{upstream};
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def installed() -> bool:
    return shutil.which("nginx") is not None


class Nginx:
    def __init__(self, upstream_port: int) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.port = free_port()
        self.config = self.scratch / "nginx.conf"
        self.config.write_text(CONFIG.format(scratch=self.scratch, upstream=upstream_port, port=self.port))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Nginx:
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.scratch), "-e", str(self.scratch / "error.log"), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process = self.process
        wait_for(lambda: process.poll() is not None or (self.scratch / "nginx.pid").exists(), timeout=10, what="nginx")
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(self.scratch / 'error.log').read_text(errors='replace')}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.scratch, ignore_errors=True)
