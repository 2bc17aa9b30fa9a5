"""Schema migrations: from an empty database, from the first release's schema, and from every version since."""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path

import pytest
from click.testing import Result
from conftest import command_line, live_config, sqlite_only
from peewee import SqliteDatabase

import migrations
import models
from app import create_app

# The tests that compare SQLite files are SQLite's; tests/test_postgres.py compares PostgreSQL's schemas,
# and on PostgreSQL `lbpay init` runs in every test.

UTC = dt.timezone.utc
BASELINE = importlib.import_module("migrations.m0001_baseline")


def lbpay(tmp_path: Path, database: Path, *args: str) -> Result:
    return command_line(tmp_path / "instance", DATABASE_URL=f"sqlite:///{database}")(*args)


def schema(path: Path) -> dict[str, set[str]]:
    """Table → column names of a database file (schema_version aside)."""
    database = SqliteDatabase(str(path))
    try:
        return {table: {c.name for c in database.get_columns(table)}
                for table in database.get_tables() if table != "schema_version"}
    finally:
        database.close()


def unique_columns(path: Path) -> set[tuple[str, tuple[str, ...]]]:
    database = SqliteDatabase(str(path))
    try:
        return {(table, tuple(index.columns)) for table in database.get_tables()
                for index in database.get_indexes(table) if index.unique}
    finally:
        database.close()


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    """The schema the models describe today, made directly by create_tables()."""
    path = tmp_path / "reference.db"
    database = SqliteDatabase(str(path))
    with database.bind_ctx(models.ALL_MODELS):
        database.create_tables(models.ALL_MODELS)
    database.close()
    return path


def test_migration_numbers_run_without_gaps_and_each_says_what_it_does() -> None:
    found = migrations.all_migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert all(m.module.__doc__ and m.module.__doc__.strip() for m in found)


@sqlite_only
def test_init_builds_an_empty_database_to_the_models_schema(tmp_path: Path, reference: Path) -> None:
    database = tmp_path / "fresh.db"
    first = lbpay(tmp_path, database, "init")
    assert first.exit_code == 0, first.stderr
    latest = len(migrations.all_migrations())
    assert f"schema version {latest}" in first.stdout
    assert schema(database) == schema(reference), "a model changed without a migration"
    assert unique_columns(reference) <= unique_columns(database)
    again = lbpay(tmp_path, database, "init")
    assert again.exit_code == 0 and "applied" not in again.stdout


def seed_first_release(path: Path) -> None:
    """A database as the first release's `lbpay init` (create_tables, no migrations) left it, with a sale."""
    database = SqliteDatabase(str(path), pragmas={"foreign_keys": 1})
    now = dt.datetime(2026, 11, 1, tzinfo=UTC)
    with database.bind_ctx(BASELINE.TABLES):
        database.create_tables(BASELINE.TABLES)
        BASELINE.Course.create(id="cpp-primer-5th", title="C++ Primer", price_fen=9900, created_at=now)
        buyer = BASELINE.Buyer.create(token_hash="a" * 64, email="old@example.com", created_at=now)
        order = BASELINE.Order.create(public_id="ord_old", out_trade_no="LB20261101000000AAAAAAAAAAAA",
                                      course="cpp-primer-5th", buyer=buyer, description="C++ Primer",
                                      amount_fen=9900, status="fulfilled", token_hash="b" * 64,
                                      transaction_id="4200000000000000000000000000001", created_at=now,
                                      expires_at=now, paid_at=now)
        BASELINE.License.create(license_id="11111111-1111-1111-1111-111111111111", order=order,
                                course="cpp-primer-5th", buyer=buyer, key="x|y", kid="0123456789abcdef",
                                plan="one_time", issued_at=now, expires_at=now)
    database.close()


@sqlite_only
def test_init_upgrades_a_database_of_the_first_release_and_keeps_its_sales(tmp_path: Path, reference: Path,
                                                                           keys, sandbox, clock) -> None:
    database = tmp_path / "lbpay.db"
    seed_first_release(database)
    result = lbpay(tmp_path, database, "init")
    assert result.exit_code == 0, result.stderr
    assert "applied migrations 2, 3, 4" in result.stdout
    assert schema(database) == schema(reference)

    app = create_app({**live_config(tmp_path, keys, sandbox.url), "CLOCK": clock})
    with models.db.connection_context():
        old = models.Order.get(models.Order.public_id == "ord_old")
        assert old.transaction_id == "4200000000000000000000000000001" and old.licenses.count() == 1
        assert old.buyer.public_id.startswith("buy_")
        versions = [(v.version, v.name) for v in migrations.SchemaVersion.select().order_by(
            migrations.SchemaVersion.version)]
    assert versions[0] == (1, "baseline (found in place)")
    # Our app in process; its order goes to the sandbox over TLS.
    placed = app.test_client().post("/api/v1/orders", json={"course_id": "cpp-primer-5th"},
                                    headers={"Idempotency-Key": "retry-safe-1-abcdefgh"})
    assert placed.status_code == 201, placed.text


@sqlite_only
@pytest.mark.parametrize("previous", range(1, len(migrations.all_migrations())))
def test_each_migration_upgrades_the_schema_before_it(tmp_path: Path, reference: Path, previous: int) -> None:
    path = tmp_path / "stepwise.db"
    database = SqliteDatabase(str(path), pragmas={"foreign_keys": 1})
    models.db.initialize(database)
    try:
        assert migrations.migrate(upto=previous) == list(range(1, previous + 1))
        assert migrations.migrate() == list(range(previous + 1, len(migrations.all_migrations()) + 1))
    finally:
        database.close()
    assert schema(path) == schema(reference)



@sqlite_only
def test_create_tables_makes_what_peewee_makes_from_the_models_twice_over(tmp_path: Path, reference: Path) -> None:
    """models.create_tables replays statements it built once per process: the same tables, columns and indexes."""
    def everything(path: Path) -> list[tuple[str, str, str]]:
        database = SqliteDatabase(str(path))
        try:
            return database.execute_sql("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        finally:
            database.close()

    bound = models.db.obj
    try:
        for name in ("first.db", "second.db"):  # the second one from the statements the first one kept
            database = SqliteDatabase(str(tmp_path / name))
            models.db.initialize(database)
            models.create_tables()
            models.create_tables()  # again: nothing new, nothing fails
            database.close()
            assert everything(tmp_path / name) == everything(reference)
    finally:
        models.db.initialize(bound)
