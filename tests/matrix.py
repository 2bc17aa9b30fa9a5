"""Which variants of a browser walk `make test` runs, and which only `make test-long` adds.

A walk through pages is written for a phone and a desktop, with JavaScript on and off. `make test`
runs each walk in one or two of those variants, chosen so that the suite as a whole still drives
every size with JavaScript on and off; `make test-long`, which `.ci/run` runs after `make test`,
runs every variant (the ``long`` mark), and so does `make screenshots`.
"""

from __future__ import annotations

import pytest

LONG = pytest.mark.long


def devices(first: str, *more: str, name: str = "device") -> pytest.MarkDecorator:
    """Parametrize ``name`` over devices: ``first`` in `make test`, each of ``more`` in `make test-long` only."""
    return pytest.mark.parametrize(name, [first, *(pytest.param(other, marks=LONG, id=other) for other in more)])


def sizes_and_scripts(*fast: tuple[str, bool]) -> pytest.MarkDecorator:
    """Parametrize ``size`` and ``javascript`` over phone/desktop × on/off (ids like ``phone-js``).

    The pairs in ``fast`` run in `make test`; the others only in `make test-long`.
    """
    params = []
    for javascript in (True, False):
        for size in ("phone", "desktop"):
            marks = () if (size, javascript) in fast else (LONG,)
            params.append(pytest.param(size, javascript, marks=marks, id=f"{size}-{'js' if javascript else 'nojs'}"))
    return pytest.mark.parametrize("size,javascript", params)
