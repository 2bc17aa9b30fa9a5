"""Time the console's search on a scale database (bench/make_orders.py): prefix ranges, the bounded
"contains", and what an unbounded "contains" would cost. Usage: python bench/console_search.py DB

Prints the median of a few runs per query; the numbers depend on the machine, compare them as ratios.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import models  # noqa: E402
from billing import console  # noqa: E402
from peewee import SqliteDatabase, fn  # noqa: E402


def median_ms(run, times: int = 5) -> float:
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        spent.append((time.perf_counter() - start) * 1000)
    return statistics.median(spent)


def main(path: str) -> None:
    models.db.initialize(SqliteDatabase(path, pragmas={"journal_mode": "wal"}))
    total = models.Order.select().count()
    some = models.Order.select().where(models.Order.email.is_null(False)).order_by(models.Order.id).first()
    paid = models.Order.select().where(models.Order.transaction_id.is_null(False)).first()
    cases = {
        "search('learner1') (prefix e-mail + bounded contains)": lambda: console.search("learner1"),
        f"search('{some.email[:12]}')": lambda: console.search(some.email[:12]),
        f"search(public id prefix '{some.public_id[:8]}')": lambda: console.search(some.public_id[:8]),
        f"search(transaction id prefix '{paid.transaction_id[:-3]}')": lambda: console.search(paid.transaction_id[:-3]),
        "search('example5') (few prefix hits; bounded contains)": lambda: console.search("example5"),
        "customer(e-mail)": lambda: console.customer(some.email),
        "UNBOUNDED contains over every order (not used)": lambda: list(
            models.Order.select(models.Order.id).where(fn.INSTR(fn.LOWER(models.Order.email), "example5") > 0)
            .order_by(models.Order.id.desc()).limit(100)),
        "UNBOUNDED contains, no match (reads every row)": lambda: list(
            models.Order.select(models.Order.id).where(fn.INSTR(fn.LOWER(models.Order.email), "zzzz") > 0).limit(100)),
        "bounded contains, no match": lambda: console.search("zzzz"),
    }
    print(f"{total} orders in {path}")
    for name, run in cases.items():
        print(f"{median_ms(run):9.1f} ms  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
