"""Sharing client connections between gunicorn's worker processes.

Every worker waits on the same listening socket, and whichever wakes first takes a new connection.
A client that keeps its connections open (the extension's fetch, Fly's proxy, a load test) opens
them in a burst, and one worker often takes all of them: that worker then serves every request on
one core while the other idles, for as long as the connections live. Measured here with two
workers of eight threads and sixteen kept-alive clients: in one run out of three or four, one
worker held every connection, and the server answered half as many requests per second.

So a worker that already holds a connection per thread stops listening for a moment, and a sibling
with a free thread takes the next connection. It listens again as soon as it holds fewer, or, when
every worker is full, once a connection has waited ``PAUSE_SECONDS``: nobody is refused, a new
client at worst waits that long while every thread has a client of its own.
"""

from __future__ import annotations

import select
import time
from typing import Any

PAUSE_SECONDS = 0.2


def share_connections(worker: Any) -> None:
    """Make a gthread worker leave new connections to its siblings while it has none to spare.

    Applies only to gunicorn's threaded worker with more than one worker process; any other worker
    is left as it is.
    """
    if worker.cfg.workers < 2 or not all(hasattr(worker, name) for name in ("nr_conns", "poller", "murder_keepalived")):
        return
    threads = worker.cfg.threads
    state: dict[str, Any] = {"paused_at": None, "keys": []}
    accept, finish_request, murder_keepalived = worker.accept, worker.finish_request, worker.murder_keepalived

    def pause() -> None:
        with worker._lock:
            if state["paused_at"] is not None:
                return
            state["keys"] = [worker.poller.get_key(sock) for sock in worker.sockets]
            for key in state["keys"]:
                worker.poller.unregister(key.fileobj)
            state["paused_at"] = time.monotonic()

    def resume_if_due() -> None:
        paused_at = state["paused_at"]
        if paused_at is None:
            return
        if worker.nr_conns >= threads and not (time.monotonic() - paused_at >= PAUSE_SECONDS and _waiting(state["keys"])):
            return
        with worker._lock:
            if state["paused_at"] is None:
                return
            for key in state["keys"]:
                worker.poller.register(key.fileobj, key.events, key.data)
            state["paused_at"] = None

    def polite_accept(server: Any, listener: Any) -> None:
        accept(server, listener)
        if worker.nr_conns >= threads:
            pause()

    def finish_and_resume(fs: Any) -> None:
        finish_request(fs)
        resume_if_due()

    def murder_and_resume() -> None:
        murder_keepalived()  # gunicorn's main loop calls this after every wake-up, at least once a second
        resume_if_due()

    worker.accept = polite_accept
    worker.finish_request = finish_and_resume
    worker.murder_keepalived = murder_and_resume


def _waiting(keys: list[Any]) -> bool:
    """Whether a new connection waits on any of these listening sockets now."""
    readable, _, _ = select.select([key.fileobj for key in keys], [], [], 0)
    return bool(readable)
