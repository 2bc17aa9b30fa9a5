"""Sharing client connections between gunicorn's worker processes.

Every worker waits on the same listening socket, and whichever wakes first takes a new connection:
with gunicorn's threaded worker the same one always did, so connections opened one after another
all landed on one worker (the test of this module saw four out of four). A client that keeps its
connections open (a proxy's pool, the extension's fetch, a load test) then had one core serving
every request while the other idled, for as long as the connections lived: in `make bench` the
poll figure swung between 1,100 and 3,400 answers a second on the same code.

So a worker that holds a connection for each of its threads stops listening, and a sibling with a
free thread takes the next connection. It listens again as soon as it holds fewer. While it does
not listen it looks at the socket every ``PAUSE_SECONDS``: a connection still waiting at two looks
in a row means every worker is full, and the worker then takes connections as they come for
``FULL_SECONDS`` (idle kept-alive connections cost a gthread worker only a place in its poller).
Nobody is refused: a connection that finds every worker full waits two looks (20-40 ms), or, when
the machine is so short of CPU that the looks themselves come late, ``GIVE_UP_SECONDS`` at most.
"""

from __future__ import annotations

import select
import threading
import time
from typing import Any

PAUSE_SECONDS = 0.02  # longer than a sibling takes to wake and accept, short beside any answer
FULL_SECONDS = 1.0
GIVE_UP_SECONDS = 0.5  # the longest a connection waits for a sibling that may be short of CPU


def share_connections(worker: Any) -> None:
    """Make a gthread worker leave new connections to its siblings while it has no thread to spare.

    Applies only to gunicorn's threaded worker with more than one worker process; any other worker
    is left as it is.
    """
    needed = ("nr_conns", "poller", "accept", "finish_request", "murder_keepalived")
    if worker.cfg.workers < 2 or not all(hasattr(worker, name) for name in needed):
        return
    Sharing(worker).install()


class Sharing:
    """The accept policy of one worker: its own state, changed under the worker's lock."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.threads = worker.cfg.threads
        self.keys: list[Any] = []  # the listeners' poller registrations while not listening
        self.paused = False
        self.seen_waiting = False  # the last look, on time, found a connection waiting
        self.waiting_since: float | None = None  # when a look first found the waiting connection
        self.look_due = 0.0
        self.full_until = 0.0  # until then every worker was full: take connections as they come
        self.accept, self.finish_request, self.murder_keepalived = (
            worker.accept, worker.finish_request, worker.murder_keepalived)

    def install(self) -> None:
        self.worker.accept = self.polite_accept
        self.worker.finish_request = self.finish_and_reconsider
        self.worker.murder_keepalived = self.murder_and_reconsider

    def full(self) -> bool:
        return bool(self.worker.nr_conns >= self.threads)

    def polite_accept(self, server: Any, listener: Any) -> None:
        self.accept(server, listener)
        if self.full() and time.monotonic() >= self.full_until:
            self._pause()

    def finish_and_reconsider(self, fs: Any) -> None:
        held = self.worker.nr_conns
        self.finish_request(fs)  # a connection the client closed counts one less
        self._reconsider(held)

    def murder_and_reconsider(self) -> None:
        held = self.worker.nr_conns
        self.murder_keepalived()  # idle connections past the keep-alive time are closed here
        self._reconsider(held)

    def _reconsider(self, held: int) -> None:
        """After a connection closed: listen if there is room now, else stop taking more than a share."""
        if self.worker.nr_conns >= held:
            return
        if self.full():
            self.full_until = 0.0
            self._pause()
        elif self.paused:
            with self.worker._lock:
                self._resume()

    def _pause(self) -> None:
        worker = self.worker
        with worker._lock:
            if self.paused:
                return
            self.keys = [worker.poller.get_key(sock) for sock in worker.sockets]
            for key in self.keys:
                worker.poller.unregister(key.fileobj)
            self.paused, self.seen_waiting, self.waiting_since = True, False, None
        self._look_later()

    def _look_later(self) -> None:
        self.look_due = time.monotonic() + PAUSE_SECONDS
        timer = threading.Timer(PAUSE_SECONDS, self._look)
        timer.daemon = True
        timer.start()

    def _look(self) -> None:
        """While not listening: has a connection waited so long that every worker must be full?

        Two looks in a row that find one waiting say so, if both came on time. A look that came late
        says the machine is short of CPU, and then a sibling with room may simply not have run yet:
        it does not count, and only a connection kept waiting ``GIVE_UP_SECONDS`` decides.
        """
        with self.worker._lock:
            if not self.paused:
                return
            now = time.monotonic()
            on_time = now - self.look_due < PAUSE_SECONDS / 4  # a quiet machine's timers are ~1 ms late
            if not _waiting(self.keys):
                self.seen_waiting, self.waiting_since = False, None
                self._look_later()
                return
            if self.waiting_since is None:
                self.waiting_since = now
            if not ((self.seen_waiting and on_time) or now - self.waiting_since >= GIVE_UP_SECONDS):
                self.seen_waiting = on_time
                self._look_later()
                return
            self.full_until = now + FULL_SECONDS
            self._resume()

    def _resume(self) -> None:
        """Register the listeners again (the caller holds the worker's lock)."""
        if not self.paused:
            return
        self.paused = False
        if not self.worker.alive:
            return  # shutting down: the worker is closing its poller and listeners
        for key in self.keys:
            self.worker.poller.register(key.fileobj, key.events, key.data)


def _waiting(keys: list[Any]) -> bool:
    """Whether a new connection waits on any of these listening sockets now."""
    readable, _, _ = select.select([key.fileobj for key in keys], [], [], 0)
    return bool(readable)
