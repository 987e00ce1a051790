"""Statements written once (`realtime.kernel.sql`): the rows and models the ORM would give."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Model, signals
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.models import Room
from jobs.models import Job
from jobs.services import job_enqueue
from realtime.kernel import sql
from tests.factories import RoomFactory, UserFactory

pytestmark = pytest.mark.django_db


def loaded(model: type[Model], pk: Any) -> Model:
    rows = sql.Rows(model)
    table, key = (connection.ops.quote_name(name) for name in (model._meta.db_table, "id"))
    stored = model._meta.pk.get_db_prep_value(pk, connection)  # a UUID is hex on SQLite
    found = sql.row(f"SELECT {rows.columns()} FROM {table} WHERE {key} = %s", [stored])  # noqa: S608
    assert found is not None
    return rows.load(found)


def same(mine: Model, orms: Model) -> None:
    for field in type(orms)._meta.concrete_fields:
        ours, theirs = getattr(mine, field.attname), getattr(orms, field.attname)
        assert type(ours) is type(theirs), field.name
        assert ours == theirs, field.name


@pytest.mark.parametrize(
    "result",
    [
        None,
        {"text": "héllo ✓", "n": 3, "x": 1.5, "list": [1, None, True]},
        {"huge": 2**70 + 1, "long": "12345678901234567890"},  # beyond orjson's integers
        "just a string",
    ],
)
def test_a_job_reads_as_the_orm_reads_it(result: Any) -> None:
    job, _ = job_enqueue(
        owner=UserFactory.create(), kind="demo.sleep", params={"steps": 1}, countdown=60
    )
    Job.objects.filter(pk=job.pk).update(result=result, error={"type": "E", "message": "m"})
    same(loaded(Job, job.pk), Job.objects.get(pk=job.pk))


def test_rooms_and_users_read_as_the_orm_reads_them() -> None:
    room, user = RoomFactory.create(), UserFactory.create()
    same(loaded(Room, room.pk), Room.objects.get(pk=room.pk))
    same(loaded(type(user), user.pk), type(user).objects.get(pk=user.pk))


def test_statements_are_seen_when_queries_are_counted() -> None:
    # Counted: on Django's cursor, as the query-count pins need; not counted: on the driver's.
    with CaptureQueriesContext(connection) as seen:
        assert sql.row("SELECT %s", [1]) == (1,)
    assert [query["sql"] for query in seen.captured_queries] == ["SELECT 1"]
    assert sql.rows("SELECT %s UNION ALL SELECT %s", [1, 2]) == [(1,), (2,)]


def test_an_instance_is_made_as_from_db_makes_it() -> None:
    room = RoomFactory.create()
    mine, orms = loaded(Room, room.pk), Room.objects.get(pk=room.pk)
    assert vars(mine).keys() == vars(orms).keys()
    assert (mine._state.adding, mine._state.db) == (orms._state.adding, orms._state.db)
    assert mine == orms
    assert mine.created_at.tzinfo is not None


def test_a_model_with_init_receivers_is_made_through_its_init() -> None:
    room = RoomFactory.create()
    seen: list[Any] = []

    def receiver(sender: Any, instance: Model, **kwargs: Any) -> None:
        seen.append(instance)

    signals.post_init.connect(receiver, sender=Room)
    try:
        mine = loaded(Room, room.pk)
    finally:
        signals.post_init.disconnect(receiver, sender=Room)
    assert seen == [mine]


@pytest.mark.parametrize(
    "stored",
    [
        "2026-01-05 10:00:00.123456",
        "2026-01-05 10:00:00",
        "2026-01-05T10:00:00+02:00",
        "2026-1-5 10:00",
    ],
)
def test_sqlite_datetimes_read_as_django_reads_them(stored: str) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's datetimes are text")
    field = Room._meta.get_field("created_at")
    expression = field.get_col(Room._meta.db_table)
    (django_converter,) = connection.ops.get_db_converters(expression)
    fast = sql._faster(django_converter)
    assert fast is not django_converter
    ours, djangos = (
        fast(stored, expression, connection),
        django_converter(stored, expression, connection),
    )
    assert (ours, ours.utcoffset()) == (djangos, djangos.utcoffset())


NOW = timezone.now()


def a_job(**fields: Any) -> Job:
    return Job(
        created_at=NOW,
        owner=UserFactory.create(),
        kind="demo.sleep",
        params={"text": "héllo ✓", "big": 2**70},
        status="queued",
        run_at=NOW,
        idempotency_key="k",
        seq=1,
        **fields,
    )


def test_a_row_is_inserted_as_the_orm_inserts_it() -> None:
    # given: two jobs alike but for their ids, one saved by the ORM, one by the statement
    theirs, mine = a_job(), a_job(result={"n": [1.5, None]})
    theirs.result = mine.result
    theirs.save(force_insert=True)

    # when
    with CaptureQueriesContext(connection) as seen:
        written = sql.Inserts(Job).insert(mine)

    # then: one statement, the instance saved, and read back field for field as the ORM's
    assert written is mine
    assert len(seen.captured_queries) == 1
    assert (mine._state.adding, mine._state.db) == (False, "default")
    orms, ours = Job.objects.get(pk=theirs.pk), Job.objects.get(pk=mine.pk)
    for field in Job._meta.concrete_fields:
        if field.name not in ("id", "owner"):
            assert getattr(ours, field.attname) == getattr(orms, field.attname), field.name


def test_a_model_with_save_receivers_is_saved_through_the_orm() -> None:
    seen: list[Any] = []

    def receiver(sender: Any, instance: Model, **kwargs: Any) -> None:
        seen.append(instance)

    job = a_job()
    signals.post_save.connect(receiver, sender=Job)
    try:
        sql.Inserts(Job).insert(job)
    finally:
        signals.post_save.disconnect(receiver, sender=Job)
    assert seen == [job]
    assert Job.objects.filter(pk=job.pk).exists()


def test_a_duplicate_row_raises_the_orms_integrity_error() -> None:
    inserts = sql.Inserts(Job)
    job = inserts.insert(a_job())
    twin = a_job()
    twin.owner, twin.idempotency_key = job.owner, job.idempotency_key
    with pytest.raises(IntegrityError), transaction.atomic():
        inserts.insert(twin)


def test_a_model_with_an_auto_increment_key_is_refused() -> None:
    with pytest.raises(TypeError, match="auto-increment"):
        sql.Inserts(Room)
