"""Crash points for the crash-safety tests: SIGKILL this process once at a named step.

Set ``LBPAY_CRASH_AT=step:/path/marker[,step:/path/marker]``; the first time a process reaches
``step`` it creates the marker file and kills itself, as a power cut or OOM kill would. With the
variable unset (every real deployment) ``crash_point`` does nothing.
"""

from __future__ import annotations

import os
import signal

_PLAN: dict[str, str] = {}
for item in filter(None, os.environ.get("LBPAY_CRASH_AT", "").split(",")):
    step, _, marker = item.partition(":")
    _PLAN[step.strip()] = marker.strip()


def crash_point(step: str) -> None:
    """Die here, once, if the crash-safety tests asked for it."""
    marker = _PLAN.get(step)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
