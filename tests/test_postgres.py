"""What only PostgreSQL can show: two transactions at once under READ COMMITTED, and its own schema.

SQLite lets one writer at a time in; PostgreSQL lets both go until they meet on a row. A take must
then see the other's take, not the bucket as it was when its statement began. The migrations must
build, on PostgreSQL too, the tables, columns and column types the models describe (test_migrations
compares SQLite files, whose columns have no types worth the name). `make test-postgres`
runs this file; a SQLite run leaves it out (conftest.pytest_ignore_collect), as test_two_servers.py.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import database_url_for

import models
from billing.limits import Rule, take

NOW = dt.datetime(2026, 12, 6, 12, 0, 0, tzinfo=dt.timezone.utc)
KEY = "orders:192.0.2.7"


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[None]:
    """The models bound to this test's own PostgreSQL schema, empty."""
    from database import open_database

    opened = open_database(database_url_for(tmp_path), str(tmp_path))
    models.db.initialize(opened)
    with models.db.connection_context():
        yield
    opened.close()


@pytest.fixture
def database(empty: None) -> None:
    models.create_tables()


def waiting_for_a_lock(pid: int) -> bool:
    """Whether the backend ``pid`` waits for a lock (pg_locks is read afresh by every statement)."""
    row = models.db.execute_sql("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)).fetchone()
    return bool(row[0])


def test_a_take_racing_an_uncommitted_take_of_the_last_token_is_refused(database: None) -> None:
    rule = Rule(2, 60)
    with models.db.atomic():
        assert take(KEY, rule, NOW) == 0.0  # one token left
    second: dict[str, float] = {}
    started = threading.Event()

    def take_in_another_worker() -> None:
        with models.db.connection_context(), models.db.atomic():  # this thread's own connection
            second["pid"] = models.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
            started.set()
            second["wait"] = take(KEY, rule, NOW)

    with models.db.atomic():
        assert take(KEY, rule, NOW) == 0.0  # the last token, not committed yet
        taken_due = models.RateLimit.get_by_id(KEY).due
        worker = threading.Thread(target=take_in_another_worker)
        worker.start()
        assert started.wait(30)
        # Commit only once the other worker's take waits on our row (or has finished without waiting).
        deadline = time.monotonic() + 30
        while worker.is_alive() and not waiting_for_a_lock(int(second["pid"])) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.is_alive(), "the second take did not wait for the first"
    worker.join(30)
    assert second["wait"] == pytest.approx(rule.step, abs=1e-6)  # refused: it saw the committed take
    assert models.RateLimit.get_by_id(KEY).due == taken_due  # and wrote nothing over it


def column_type(table: str, column: str) -> str:
    row = models.db.execute_sql(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = %s AND column_name = %s", (table, column)).fetchone()
    return str(row[0])


def test_migration_12_turns_a_databases_4_byte_floats_into_doubles(empty: None) -> None:
    import migrations

    migrations.migrate()
    # The database as every earlier release left it on PostgreSQL: peewee's FloatField, a REAL.
    models.db.execute_sql('ALTER TABLE "rate_limit" ALTER COLUMN "due" TYPE REAL')
    models.db.execute_sql('ALTER TABLE "wechat_call_stat" ALTER COLUMN "seconds" TYPE REAL')
    migrations.SchemaVersion.delete().where(migrations.SchemaVersion.version == 12).execute()
    with models.db.atomic():
        assert take(KEY, Rule(10, 60), NOW) == 0.0
    assert column_type("rate_limit", "due") == "real"

    assert migrations.migrate() == [12]
    assert column_type("rate_limit", "due") == column_type("wechat_call_stat", "seconds") == "double precision"
    assert models.RateLimit.get_by_id(KEY).due == pytest.approx(NOW.timestamp() + 6, abs=128)  # the row stays
    with models.db.atomic():
        waits = [take("orders:192.0.2.8", Rule(10, 60), NOW) for _ in range(11)]
    assert waits == [0.0] * 10 + [pytest.approx(6.0, abs=1e-6)]


def columns_of(schema: str) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(table, column) → (type, nullable, default) of one schema, schema_version aside."""
    rows = models.db.execute_sql(
        "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')"
        " FROM information_schema.columns WHERE table_schema = %s AND table_name <> 'schema_version'", (schema,))
    return {(table, column): (kind, nullable, default.replace(schema + ".", ""))
            for table, column, kind, nullable, default in rows.fetchall()}


def current_schema() -> str:
    return str(models.db.execute_sql("SELECT current_schema()").fetchone()[0])


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[dict[tuple[str, str], tuple[str, str, str]]]:
    """The schema the models describe today, made directly by create_tables() in a schema of its own."""
    from database import open_database

    opened = open_database(database_url_for(tmp_path / "reference"), str(tmp_path))
    models.db.initialize(opened)
    with models.db.connection_context():
        models.create_tables()
        yield columns_of(current_schema())
    opened.close()


def migrated_columns(tmp_path: Path, upto: int | None) -> dict[tuple[str, str], tuple[str, str, str]]:
    """Migrate an empty schema (up to ``upto`` first, then the rest, as a later release would); its columns."""
    import migrations
    from database import open_database

    opened = open_database(database_url_for(tmp_path / "migrated"), str(tmp_path))
    models.db.initialize(opened)
    latest = migrations.latest_version()
    with models.db.connection_context():
        if upto is not None:
            assert migrations.migrate(upto=upto) == list(range(1, upto + 1))
            assert migrations.migrate() == list(range(upto + 1, latest + 1))
        else:
            assert migrations.migrate() == list(range(1, latest + 1))
        built = columns_of(current_schema())
        assert migrations.migrate() == []  # and a second `lbpay init` finds nothing to do
    opened.close()
    return built


@pytest.mark.parametrize("upto", [None, 1, 8, 9, 11])
def test_the_migrations_build_the_models_schema_with_the_models_types(
        tmp_path: Path, reference: dict[tuple[str, str], tuple[str, str, str]], upto: int | None) -> None:
    built = migrated_columns(tmp_path, upto)
    assert set(built) == set(reference), "a model changed without a migration"
    differing = {column: (built[column], reference[column]) for column in reference if built[column] != reference[column]}
    # Known and harmless: columns added to tables that already had rows keep what their migration gave them.
    assert differing == {
        # m0004 added it to buyers already there, then filled it: nullable in the database, never empty
        ("buyer", "public_id"): (("character varying", "YES", ""), ("character varying", "NO", "")),
        # m0008 gave existing orders a default (live); the model sets the value on every new order
        ("order", "sandbox"): (("boolean", "NO", "false"), ("boolean", "NO", "")),
        # m0014 gave existing orders no discount (0); the model sets the value on every new order
        ("order", "discount_fen"): (("integer", "NO", "0"), ("integer", "NO", "")),
        # m0015 made existing orders WeChat Pay ones; the model sets the method on every new order
        ("order", "payment_method"): (("character varying", "NO", "'wechat'::character varying"),
                                      ("character varying", "NO", "")),
    }
