"""Kept-alive connections are shared between gunicorn's workers (operations/workers.py).

The real gunicorn with the repository's gunicorn.conf.py, two workers of two threads; which worker
holds a connection is read from /proc (the worker's socket inodes against /proc/net/tcp).
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path

from servers import sandbox_mode_server

WORKERS, THREADS = 2, 2


def _workers(master: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if parent == master:
                found.append(int(entry.name))
    return sorted(found)


def _established(port: int) -> dict[str, int]:
    """The server's side of established connections to ``port``: socket inode -> the client's port."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            found[fields[9]] = int(fields[2].split(":")[1], 16)
    return found


def _inodes(pid: int) -> set[str]:
    """The socket inodes a process holds open."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(target[8:-1])
    return held


def held_by_worker(master: int, port: int) -> dict[int, int]:
    """How many established client connections each worker process holds."""
    established = _established(port)
    return {pid: len(_inodes(pid) & established.keys()) for pid in _workers(master)}


def _holder(master: int, port: int, conn: http.client.HTTPConnection) -> int | None:
    """The worker holding the server's side of one client connection."""
    client_port = conn.sock.getsockname()[1]
    inodes = {inode for inode, peer in _established(port).items() if peer == client_port}
    return next((pid for pid in _workers(master) if _inodes(pid) & inodes), None)


def _connect(port: int) -> http.client.HTTPConnection:
    """A kept-alive connection that has been served once (so a worker has accepted it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/api/v1/courses")
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return conn


def _wait_for(predicate, seconds: float = 10) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "the server did not get there in time"
        time.sleep(0.05)


def test_kept_alive_connections_are_shared_between_the_workers(tmp_path):
    with sandbox_mode_server(tmp_path, commands=(), workers=WORKERS, threads=THREADS) as server:
        port = int(server.base.rsplit(":", 1)[1])
        master = server.process.pid
        # Each worker logs its scheduler's start just before it begins to listen (gunicorn.conf.py).
        _wait_for(lambda: server.output().count("scheduler started") == WORKERS)
        # One connection per thread of the whole server, opened one after another as a proxy's pool does.
        opened = [_connect(port) for _ in range(WORKERS * THREADS)]
        held = held_by_worker(master, port)
        assert sorted(held.values()) == [THREADS] * WORKERS, held

        # Every thread has a client now: one more is still taken (after a short pause), not refused.
        extra = _connect(port)
        assert sum(held_by_worker(master, port).values()) == WORKERS * THREADS + 1

        # A worker whose clients leave listens again, and new clients go to it.
        extra.close()
        _wait_for(lambda: sum(held_by_worker(master, port).values()) == WORKERS * THREADS)
        before = held_by_worker(master, port)
        emptied = next(pid for pid, count in before.items() if count == THREADS)
        for conn in opened:
            if _holder(master, port, conn) == emptied:
                conn.close()
        _wait_for(lambda: held_by_worker(master, port)[emptied] == 0)
        opened += [_connect(port) for _ in range(THREADS)]
        assert held_by_worker(master, port)[emptied] == THREADS
        for conn in opened:
            conn.close()

