"""Two machines starting at once both run `lbpay init` on one fresh database: each migration is applied once.

SQLite's file lock, or PostgreSQL's advisory lock when the run has a PostgreSQL server (its database in a
schema of its own, where the migrations must find their own tables again).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import database_url_for

import migrations
import models

ROOT = Path(__file__).parent.parent

# The installed `lbpay` console script, imported first, then released at one signal, so that every
# process reaches the migrations at the same moment instead of one finishing its imports earlier.
STARTER = """
import sys, time
from importlib.metadata import entry_points
from pathlib import Path
(lbpay,) = entry_points(group="console_scripts", name="lbpay")
cli = lbpay.load()
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.005)
cli(args=["init"])
"""


def test_concurrent_inits_on_one_fresh_database_all_succeed_and_migrate_once(tmp_path: Path) -> None:
    from database import open_database

    (tmp_path / "volume").mkdir()
    url = database_url_for(tmp_path / "volume")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update(LBPAY_INSTANCE_PATH=str(tmp_path / "volume"), LBPAY_DATABASE_URL=url)
    go = tmp_path / "go"
    count = 3
    processes = [subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path / f"ready-{i}"), str(go)],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(count)]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready-{i}").exists() for i in range(count)):
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            assert time.monotonic() < deadline, "the init processes did not get ready"
            time.sleep(0.02)
        go.touch()
        results = [(p.wait(timeout=60), *p.communicate()) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for code, out, err in results:
        assert code == 0, err[-3000:]
        assert "database ready" in out, out
    database = open_database(url, str(tmp_path / "volume"))
    models.db.initialize(database)
    with models.db.connection_context():
        versions = sorted(migrations.applied_versions(database))
    database.close()
    assert versions == list(range(1, migrations.latest_version() + 1))
    # Exactly one process applied the migrations; the others found them done.
    appliers = [out for _, out, _ in results if "applied migrations" in out]
    assert len(appliers) == 1, [out for _, out, _ in results]
