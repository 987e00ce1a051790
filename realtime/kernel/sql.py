"""Statements written once, run on the database driver's own cursor, and rows read into models.

The domains write their hottest statements once per database vendor (`chat/store.py`,
`jobs/selectors.py`, the session and user reads of `api/`). Django's cursor wrapper still
costs each of them about 13 µs of CPU here (its wrappers, the `%s` to `?` rewrite for SQLite,
thread-local lookups), against 1.4 µs for the driver's cursor; and a model read through
`raw()` works out its columns and converters again for every query (about 90 µs). So:

- `row`, `rows` and `execute` run a statement (`%s` placeholders, as Django's cursor takes
  them) on the driver's cursor of Django's connection: the same connection, so the same
  transaction, with Django's error translation (`wrap_database_errors`) and its check that
  a broken transaction is not used. When someone watches the statements (Django's debug
  cursor: `DEBUG`, `assertNumQueries`, `CaptureQueriesContext`; or an execute wrapper), they
  run on Django's cursor instead, so that every pinned query count sees them.
- `Inserts(model)` writes new rows as `Model.save()` would, by a statement made once.
- `Rows(model)` names a model's columns for a `SELECT` and turns each row into an instance,
  with the converters the ORM would apply, worked out once per vendor. The instance is the
  one `Model.from_db` makes, made without its `__init__` when nothing could tell: no
  `pre_init` or `post_init` receiver for the model and no field that sets its own attribute
  (`Model.__init__` and its two signals cost about 4 µs a row, a third of reading a job).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX
from django.db.backends.sqlite3.operations import DatabaseOperations as SQLiteOperations
from django.db.models import JSONField, Model, signals
from django.db.models.base import ModelState
from django.db.models.expressions import Col
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute

M = TypeVar("M", bound=Model)
Params = Sequence[Any]


def row(sql: str, params: Params = (), *, using: str = DEFAULT_DB_ALIAS) -> tuple[Any, ...] | None:
    """The statement's first row, or None."""
    return _run(connections[using], sql, params, _one)


def rows(sql: str, params: Params = (), *, using: str = DEFAULT_DB_ALIAS) -> list[tuple[Any, ...]]:
    """All the statement's rows."""
    return _run(connections[using], sql, params, _all)


def execute(sql: str, params: Params = (), *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Run a statement that returns no rows."""
    _run(connections[using], sql, params, _none)


def _one(cursor: Any) -> Any:
    return cursor.fetchone()


def _all(cursor: Any) -> Any:
    return cursor.fetchall()


def _none(cursor: Any) -> None:
    return None


def _run(db: BaseDatabaseWrapper, sql: str, params: Params, fetch: Any) -> Any:
    if db.queries_logged or db.execute_wrappers:
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return fetch(cursor)
    db.validate_no_broken_transaction()
    db.ensure_connection()
    with db.wrap_database_errors:
        cursor = db.connection.cursor()
        try:
            cursor.execute(_driver_sql(db.vendor, sql), params)
            return fetch(cursor)
        finally:
            cursor.close()


@functools.lru_cache(maxsize=512)
def _driver_sql(vendor: str, sql: str) -> str:
    """The statement as the driver takes it: SQLite's takes `?` where Django's cursor takes `%s`."""
    if vendor != "sqlite":
        return sql
    return FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")


class Rows(Generic[M]):
    """A model's concrete columns for a `SELECT`, and its rows read back into instances."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._fields = model._meta.concrete_fields
        self._names = [field.attname for field in self._fields]
        self._columns = [str(field.column) for field in self._fields]
        # A field whose attribute is its own descriptor with a setter (a file, say) needs
        # `__init__` to set it; Django's plain attributes only read the instance's dict.
        self._plain = all(
            type(inspect.getattr_static(model, name)) in _PLAIN_ATTRIBUTES for name in self._names
        )

    def columns(self, alias: str = "") -> str:
        """`a."id", a."title", ...`: every concrete column, in field order, for a `SELECT`."""
        quote = connection.ops.quote_name
        prefix = f"{alias}." if alias else ""
        return ", ".join(f"{prefix}{quote(column)}" for column in self._columns)

    def load(self, values: Sequence[Any]) -> M:
        """An instance from the columns of `columns()`, converted as the ORM converts them."""
        return self.load_all([values])[0]

    def load_all(self, found: Sequence[Sequence[Any]]) -> list[M]:
        """An instance for each row, as `load` makes it."""
        db = connections[DEFAULT_DB_ALIAS]
        conversions = self._converters(db.vendor)
        make = self._made if self._unwatched() else self.model.from_db
        loaded = []
        for values in found:
            converted = list(values)
            for index, converters, expression in conversions:
                value = converted[index]
                for convert in converters:
                    value = convert(value, expression, db)
                converted[index] = value
            loaded.append(make(db.alias, self._names, converted))
        return loaded

    def _unwatched(self) -> bool:
        """Whether an instance may be made without `__init__`: nothing would see the difference."""
        model = self.model
        return (
            self._plain
            and not signals.pre_init.has_listeners(model)
            and not signals.post_init.has_listeners(model)
        )

    def _made(self, alias: str, names: list[str], values: list[Any]) -> M:
        """The instance `Model.from_db` makes of a whole row, with what its `__init__` sets."""
        instance = self.model.__new__(self.model)
        state = instance._state = ModelState()
        state.adding, state.db = False, alias
        instance.__dict__.update(zip(names, values, strict=True))
        return instance

    @functools.cache  # noqa: B019 - one per model and vendor, for the life of the process
    def _converters(self, vendor: str) -> list[tuple[int, list[Any], Col]]:
        """(index, converters, expression) of each column the ORM converts on this vendor."""
        del vendor  # keys the cache: the converters are the connection's
        table = self.model._meta.db_table
        found = []
        for index, field in enumerate(self._fields):
            expression = Col(table, field)
            converters = [
                *map(_faster, connection.ops.get_db_converters(expression)),
                *map(_faster, expression.get_db_converters(connection)),
            ]
            if converters:
                found.append((index, converters, expression))
        return found


_PLAIN_ATTRIBUTES = (DeferredAttribute, ForeignKeyDeferredAttribute)


class Inserts(Generic[M]):
    """A model's rows written as `Model.save()` inserts a new instance, by a statement made once.

    For models whose primary key is set before the write (no auto-increment to read back).
    The ORM builds the `INSERT` again for every save (its compiler: about 120 µs for a job
    here); this keeps the statement per vendor and prepares each value as the ORM does
    (`Field.pre_save`, `get_db_prep_save`). With `pre_save`/`post_save` receivers for the
    model, it saves through the ORM, so that they still see every write.
    """

    def __init__(self, model: type[M]) -> None:
        if model._meta.auto_field is not None:
            raise TypeError(f"{model.__name__} has an auto-increment key: save it with the ORM")
        self.model = model
        self._fields = model._meta.local_concrete_fields

    def insert(self, instance: M, *, using: str = DEFAULT_DB_ALIAS) -> M:
        """Write `instance` as a new row (in the current transaction, if any) and return it."""
        model = self.model
        if signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model):
            instance.save(force_insert=True, using=using)
            return instance
        db = connections[using]
        params = [
            field.get_db_prep_save(field.pre_save(instance, True), db) for field in self._fields
        ]
        _run(db, self._statement(db.vendor), params, _none)
        instance._state.adding, instance._state.db = False, using
        return instance

    @functools.cache  # noqa: B019 - one per model and vendor, for the life of the process
    def _statement(self, vendor: str) -> str:
        del vendor  # keys the cache: the quoting is the connection's
        quote = connection.ops.quote_name
        columns = ", ".join(quote(str(field.column)) for field in self._fields)
        values = ", ".join(["%s"] * len(self._fields))
        table = quote(self.model._meta.db_table)
        return f"INSERT INTO {table} ({columns}) VALUES ({values})"  # noqa: S608 - names only


def _faster(converter: Any) -> Any:
    """`converter`, or one that gives the same values faster.

    A `JSONField` without a decoder of its own reads its text with orjson: 2 µs a value with
    the standard library's decoder, 0.3 µs. orjson reads an integer beyond 64 bits as a float,
    so text with 19 digits in a row (such an integer, or a long string of digits, or a long
    decimal) goes to the field's own converter, as does anything orjson refuses.

    SQLite's datetimes are text, which Django's driver or converter parses; the converter then
    makes each aware through `timezone.make_aware` (about 2 µs). The same steps, done directly.
    """
    if getattr(converter, "__func__", None) is SQLiteOperations.convert_datetimefield_value:
        return _sqlite_datetime(converter) if settings.USE_TZ else converter
    field = getattr(converter, "__self__", None)
    if getattr(converter, "__func__", None) is not JSONField.from_db_value or field is None:
        return converter
    if field.decoder is not None:
        return converter

    def from_db_value(value: Any, expression: Any, db: Any) -> Any:
        if isinstance(value, str) and _LONG_NUMBER.search(value) is None:
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError:
                pass
        return converter(value, expression, db)

    return from_db_value


_LONG_NUMBER = re.compile(r"[0-9]{19}")


def _sqlite_datetime(converter: Any) -> Any:
    def from_db_value(value: Any, expression: Any, db: Any) -> Any:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:  # Django's own parser reads a few more spellings
                return converter(value, expression, db)
        if isinstance(value, datetime) and value.utcoffset() is None:
            return value.replace(tzinfo=db.timezone)
        return converter(value, expression, db)

    return from_db_value
