"""Keep N CPU cores busy beside the test suite, as a developer's busy machine would (``make test-under-load``).

Each hog is a process spinning on arithmetic. They stop by themselves after ``--seconds`` or as soon as
the process that started them is gone, so an interrupted ``make`` never leaves one behind.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import time


def spin(deadline: float, parent: int) -> None:
    """Burn one core until the deadline, or until ``parent`` no longer runs."""
    n = 0
    while time.monotonic() < deadline:
        for _ in range(200_000):
            n = (n * 1103515245 + 12345) & 0xFFFFFFFF
        if os.getppid() != parent:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hogs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3600.0, help="the longest they run (a bound, not a goal)")
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    hogs = [multiprocessing.Process(target=spin, args=(deadline, os.getpid()), daemon=True) for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()

    def stop(*_: object) -> None:
        for hog in hogs:
            hog.terminate()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for hog in hogs:
        hog.join()


if __name__ == "__main__":
    main()
