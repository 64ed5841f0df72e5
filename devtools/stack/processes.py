"""Who listens on a port, and which processes a service is made of, for the local stack's readiness."""

from __future__ import annotations

import psutil


def port_holders(port: int) -> set[int | None]:
    """The pids listening on TCP `port`, on any address; None for a process this user may not see."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # macOS lists every process's sockets to root only: look at ours one by one
        return {process.pid for process in psutil.process_iter() if _listens(process, port)}
    return {c.pid for c in connections if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}


def _listens(process: psutil.Process, port: int) -> bool:
    try:
        connections = process.net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


def process_tree(pid: int) -> set[int | None]:
    """`pid` and its descendants (gunicorn's workers share the master's listening socket)."""
    try:
        return {pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def describe(pids: set[int | None]) -> str:
    """Who the processes are, as `ps` would name them."""
    names = []
    for pid in sorted(pids, key=lambda p: p or 0):
        if pid is None:
            names.append("a process of another user")
            continue
        try:
            names.append(f"pid {pid} ({' '.join(psutil.Process(pid).cmdline())[:120]})")
        except psutil.Error:
            names.append(f"pid {pid}")
    return ", ".join(names)
