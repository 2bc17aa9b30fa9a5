"""Rows inserted and updated through prepared, parameterised SQL, for the paths where speed matters.

Peewee builds every query's SQL anew from its expression tree, which on a payment notification
cost several times what SQLite took to run the statements. Here each statement's text is made
once per table, column list and dialect, and only the values change; each value still goes
through its field's ``db_value`` and a field left out gets its model default, so a row is stored
exactly as ``Model.create`` would store it.
"""

from __future__ import annotations

from typing import Any, Iterable

from peewee import Field, Model, PostgresqlDatabase

from models import db


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


_SQL: dict[tuple[Any, ...], str] = {}  # statement text by (kind, model, columns, dialect): made once each


def _insert_sql(model: type[Model], names: tuple[str, ...], param: str, unless: str | None,
                returning: bool, count: int = 1) -> str:
    key = ("insert", model, names, param, unless, returning, count)
    if key in _SQL:
        return _SQL[key]
    fields: dict[str, Field] = model._meta.fields
    sql = (f'INSERT INTO "{model._meta.table_name}" ({_quoted(fields[n].column_name for n in names)}) '
           "VALUES " + ", ".join([f'({", ".join([param] * len(names))})'] * count))
    if unless is not None:
        sql += f' ON CONFLICT ("{fields[unless].column_name}") DO NOTHING'
    _SQL[key] = sql + (' RETURNING "id"' if returning else "")
    return _SQL[key]


def _with_defaults(model: type[Model], values: dict[str, Any]) -> dict[str, Any]:
    for field, default in model._meta.defaults.items():
        if field.name not in values:
            values[field.name] = default() if callable(default) else default
    return values


class Statement:
    """A statement's text and its values already converted for the database, ready to run later.

    Made before a write lock is taken, so that inside it only the database's own work is left.
    """

    __slots__ = ("sql", "params", "returning")

    def __init__(self, sql: str, params: tuple[Any, ...] | list[Any], returning: bool = False) -> None:
        self.sql, self.params, self.returning = sql, params, returning

    def run(self) -> Any:
        return db.obj.execute_sql(self.sql, self.params)

    def insert(self) -> int | None:
        """Run an insert; the new row's id, or None when ``ON CONFLICT DO NOTHING`` left it out."""
        cursor = self.run()
        if cursor.rowcount == 0:
            return None
        if self.returning:
            row = cursor.fetchone()
            return None if row is None else int(row[0])
        return int(cursor.lastrowid)


def prepare_insert(model: type[Model], values: dict[str, Any], *, unless_exists: str | None = None) -> Statement:
    """The insert of one row, its values converted now (see ``insert``); run it with ``.insert()``."""
    names = tuple(_with_defaults(model, values))
    fields: dict[str, Field] = model._meta.fields
    database = db.obj
    returning = isinstance(database, PostgresqlDatabase)  # psycopg has no lastrowid
    return Statement(_insert_sql(model, names, database.param, unless_exists, returning),
                     tuple(fields[n].db_value(values[n]) for n in names), returning)


def insert(model: type[Model], values: dict[str, Any], *, unless_exists: str | None = None) -> int | None:
    """Insert one row inside the caller's transaction and return its id.

    ``unless_exists`` names a unique field: a row already holding that value means nothing is
    written and None comes back (an ``ON CONFLICT DO NOTHING``, so no savepoint is needed).
    """
    return prepare_insert(model, values, unless_exists=unless_exists).insert()


def create(model: type[Model], values: dict[str, Any]) -> Any:
    """``model.create(**values)`` through prepared SQL: the same row stored, the same instance back.

    Foreign keys may be given as model instances, as with Peewee; the instance has its new id and
    no field marked changed, as one ``create`` returns.
    """
    new_id = prepare_insert(model, values).insert()  # fills in the defaults of the fields left out
    made = model(**values)
    made.id = new_id
    made._dirty.clear()
    return made


def insert_sql(model: type[Model], names: tuple[str, ...], count: int = 1) -> str:
    """The text of an insert of ``count`` rows giving the fields ``names``, in the current dialect."""
    return _insert_sql(model, names, db.obj.param, None, False, count)


def insert_all(model: type[Model], many: list[dict[str, Any]]) -> None:
    """Insert rows that give the same fields, in order, in one statement inside the caller's transaction."""
    names = tuple(_with_defaults(model, many[0]))
    fields: dict[str, Field] = model._meta.fields
    params = [fields[n].db_value(_with_defaults(model, values)[n]) for values in many for n in names]
    db.obj.execute_sql(_insert_sql(model, names, db.obj.param, None, False, len(many)), params)


def _update_sql(model: type[Model], names: tuple[str, ...], where: tuple[tuple[str, bool], ...], param: str) -> str:
    key = ("update", model, names, where, param)
    if key in _SQL:
        return _SQL[key]
    fields: dict[str, Field] = model._meta.fields
    sets = ", ".join(f'"{fields[n].column_name}" = {param}' for n in names)
    _SQL[key] = f'UPDATE "{model._meta.table_name}" SET {sets} WHERE {_tests_sql(model, where, param)}'
    return _SQL[key]


def _tests_sql(model: type[Model], where: tuple[tuple[str, bool], ...], param: str, alias: str = "") -> str:
    """``"col" = ?`` (or ``IS NULL``) for each field of ``where``, joined by AND."""
    fields: dict[str, Field] = model._meta.fields
    column = (lambda n: f'{alias}."{fields[n].column_name}"') if alias else (lambda n: f'"{fields[n].column_name}"')
    return " AND ".join(f"{column(n)} IS NULL" if is_null else f"{column(n)} = {param}" for n, is_null in where)


def _where(model: type[Model], where: dict[str, Any]) -> tuple[tuple[tuple[str, bool], ...], list[Any]]:
    """The shape of an equality filter (which fields, which are NULL) and its converted values."""
    fields: dict[str, Field] = model._meta.fields
    return (tuple((n, v is None) for n, v in where.items()),
            [fields[n].db_value(v) for n, v in where.items() if v is not None])


def prepare_update(model: type[Model], values: dict[str, Any], where: dict[str, Any]) -> Statement:
    """The update ``update`` runs, its values converted now; ``.run().rowcount`` says how many changed."""
    fields: dict[str, Field] = model._meta.fields
    names = tuple(values)
    tests, tested = _where(model, where)
    params = [fields[n].db_value(values[n]) for n in names] + tested
    return Statement(_update_sql(model, names, tests, db.obj.param), params)


def update(model: type[Model], values: dict[str, Any], where: dict[str, Any]) -> int:
    """Set ``values`` on the rows whose fields equal ``where`` (None meaning IS NULL); return how many changed."""
    return int(prepare_update(model, values, where).run().rowcount)


_COLUMNS: dict[Any, tuple[tuple[str, Field], ...]] = {}


def _columns(model: type[Model]) -> tuple[tuple[str, Field], ...]:
    if model not in _COLUMNS:
        _COLUMNS[model] = tuple((f.name, f) for f in model._meta.sorted_fields)
    return _COLUMNS[model]


def _find_sql(model: type[Model], where: tuple[tuple[str, bool], ...], param: str) -> str:
    key = ("find", model, where, param)
    if key in _SQL:
        return _SQL[key]
    key_column = model._meta.primary_key.column_name
    _SQL[key] = (f'SELECT {select_list(model, "t")} FROM "{model._meta.table_name}" AS t '
                 f'WHERE {_tests_sql(model, where, param, "t")} ORDER BY t."{key_column}"')
    return _SQL[key]


def find(model: type[Model], where: dict[str, Any]) -> list[Any]:
    """The rows of ``model`` whose fields equal ``where`` (None meaning IS NULL), by primary key, as instances.

    ``Model.select().where(...)`` for the look-ups on the order path, without building its SQL each time.
    """
    tests, params = _where(model, where)
    cursor = db.obj.execute_sql(_find_sql(model, tests, db.obj.param), params)
    return [instance(model, row)[0] for row in cursor.fetchall()]


def select_list(model: type[Model], alias: str) -> str:
    """Every column of ``model`` for a hand-written SELECT, in the order ``instance`` reads them."""
    return ", ".join(f'{alias}."{f.column_name}"' for _, f in _columns(model))


def instance(model: type[Model], row: tuple[Any, ...], **related: Model) -> tuple[Any, tuple[Any, ...]]:
    """Build a model instance from the start of ``row`` (laid out by ``select_list``); return it and the rest.

    ``related`` gives the objects of foreign keys read in the same row (the order's course).
    The instance is filled the way Peewee fills one it read itself, without a setattr per field.
    """
    columns = _columns(model)
    built: Any = object.__new__(model)
    built.__data__ = {name: field.python_value(value) for (name, field), value in zip(columns, row)}
    built._dirty = set()
    built.__rel__ = dict(related)
    return built, row[len(columns):]
