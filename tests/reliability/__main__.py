"""``python -m reliability [--short]``: run the reliability suite, print the table, exit 1 on a missed goal."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from .scenarios import FULL, SHORT, run, table


def main() -> int:
    parser = argparse.ArgumentParser(prog="reliability", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the quick form that make test runs")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs, database)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lbpay-reliability-"))
    started = time.monotonic()
    print(f"reliability ({'short' if args.short else 'full'} form) in {folder}", flush=True)
    rows, missed = run(folder, SHORT if args.short else FULL, report=lambda line: print(line, flush=True))
    print()
    print(table(rows))
    print()
    print(f"{time.monotonic() - started:.0f} s in all")
    for line in missed:
        print("GOAL MISSED:", line)
    if not missed:
        print("every goal met")
    if not args.keep and not missed:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
