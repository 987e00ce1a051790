"""The hottest statements of the chat domain, written as SQL once instead of compiled per call.

Posting is the hottest write: every chat message takes it, over REST and both sockets. The
ORM compiles each query from scratch every time, which measured about 0.6 ms of CPU per
statement on the project's 2-core test machine (SQLite executed it in 0.04 ms), four times
per post. These statements are built once per database vendor from the models' own table and
column names and run on the driver's cursor in Django's transaction (`realtime.kernel.sql`,
which hands them to Django's cursor when a test counts queries); every one is plain SQL that
SQLite (3.35+, for RETURNING) and PostgreSQL both run unchanged. Two reads that every
socket subscription makes (a room's id, its last `seq`) are here for the same reason, and so
are the REST reads of rooms (one room, a page of the list, the count).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.db import connection
from django.utils import timezone

from realtime.kernel import sql

from .models import Message, PostingBudget, Room


class HistoryRow(NamedTuple):
    """A message as its history page reads it, with its room's newest `seq`."""

    id: int
    seq: int
    author_id: int | None
    author_name: str
    body: str
    created_at: datetime
    client_id: str | None
    room_last_seq: int


# A room row read whole: `Statements.room` and `Statements.rooms` select its columns.
ROOMS = sql.Rows(Room)

# No seq reaches this: the upper bound of a history read without `before`.
SEQ_END = 2**62


@dataclass(frozen=True)
class Statements:
    spend: str
    give_back: str
    lock_room: str
    insert_into: str  # `insert` appends a VALUES tuple per row, then `insert_end`
    insert_end: str
    earlier: str  # posts in a room with these client_ids; `{client_ids}` is filled per call
    room_id: str
    last_seq: str
    room: str  # the room with a slug
    rooms: str  # a page of rooms, most recently active first
    room_count: str
    history_oldest_first: str  # a room's messages with after < seq < before
    history_newest_first: str


@functools.cache
def _statements(vendor: str) -> Statements:  # the vendor keys the cache; quote_name reads it
    del vendor
    q = connection.ops.quote_name
    budget, room, message = (q(model._meta.db_table) for model in (PostingBudget, Room, Message))
    return Statements(
        # Count `hits` more posts for `who` in period `period_no`: the row rolls over to the
        # new period (the one before becomes `earlier_hits`, or 0 if it was longer ago).
        spend=(
            f"INSERT INTO {budget} (who, period_no, hits, earlier_hits) VALUES (%s, %s, %s, 0) "
            f"ON CONFLICT (who) DO UPDATE SET "
            f"earlier_hits = CASE WHEN {budget}.period_no = excluded.period_no "
            f"THEN {budget}.earlier_hits "
            f"WHEN {budget}.period_no = excluded.period_no - 1 THEN {budget}.hits ELSE 0 END, "
            f"hits = CASE WHEN {budget}.period_no = excluded.period_no "
            f"THEN {budget}.hits + excluded.hits ELSE excluded.hits END, "
            f"period_no = excluded.period_no "
            f"RETURNING hits, earlier_hits"
        ),
        give_back=(
            f"UPDATE {budget} SET hits = CASE WHEN hits > %s THEN hits - %s ELSE 0 END "
            f"WHERE who = %s AND period_no = %s"
        ),
        # Takes the room row's lock (PostgreSQL; SQLite's transactions take the database's)
        # and advances its `seq` by the posts about to be written, in one statement.
        lock_room=(
            f"UPDATE {room} SET last_seq = last_seq + %s, last_message_at = %s "
            f"WHERE slug = %s RETURNING id, last_seq"
        ),
        insert_into=(
            f"INSERT INTO {message} "
            f"(room_id, seq, author_id, author_name, body, created_at, client_id) VALUES "
        ),
        # A client_id already in the room skips its row instead of failing the statement
        # (the unique index is partial: rows without a client_id never conflict).
        insert_end=(
            " ON CONFLICT (room_id, client_id) WHERE client_id IS NOT NULL DO NOTHING RETURNING id"
        ),
        earlier=(
            f"SELECT m.client_id, m.id, m.author_id FROM {message} m "
            f"JOIN {room} r ON r.id = m.room_id "
            f"WHERE r.slug = %s AND m.client_id IN ({{client_ids}})"
        ),
        room_id=f"SELECT id FROM {room} WHERE slug = %s",
        last_seq=f"SELECT last_seq FROM {room} WHERE id = %s",
        room=f"SELECT {ROOMS.columns()} FROM {room} WHERE slug = %s",
        # Rooms never written to last (NULLS LAST, spelled so both databases read it alike).
        rooms=(
            f"SELECT {ROOMS.columns()} FROM {room} "
            f"ORDER BY last_message_at IS NULL, last_message_at DESC, slug LIMIT %s OFFSET %s"
        ),
        room_count=f"SELECT COUNT(*) FROM {room}",
        history_oldest_first=_history(message, room, "ASC"),
        history_newest_first=_history(message, room, "DESC"),
    )


def _history(message: str, room: str, order: str) -> str:
    columns = ", ".join(f"m.{column}" for column in HistoryRow._fields[:-1])
    return (
        f"SELECT {columns}, r.last_seq FROM {message} m JOIN {room} r ON r.id = m.room_id "
        f"WHERE r.slug = %s AND m.seq > %s AND m.seq < %s ORDER BY m.seq {order} LIMIT %s"
    )


def statements() -> Statements:
    return _statements(connection.vendor)


def spend(who: str, period_no: int, hits: int) -> tuple[int, int]:
    """Count `hits` posts by `who` now: (hits in this period, hits in the one before)."""
    spent = sql.row(statements().spend, [who, period_no, hits])
    assert spent is not None  # an upsert returns its row
    return int(spent[0]), int(spent[1])


def give_back(who: str, period_no: int, hits: int) -> None:
    sql.execute(statements().give_back, [hits, hits, who, period_no])


def lock_room(slug: str, posts: int, now: datetime) -> tuple[int, int] | None:
    """Lock the room and advance its `seq` by `posts`: (its id, its new last seq); None: no room."""
    row = sql.row(
        statements().lock_room, [posts, connection.ops.adapt_datetimefield_value(now), slug]
    )
    return None if row is None else (int(row[0]), int(row[1]))


def insert(rows: Sequence[tuple[Any, ...]]) -> list[int] | None:
    """Insert messages, (room_id, seq, author_id, author_name, body, created_at, client_id)
    each, in one statement: their ids, in order; None if a client_id was taken already in
    its room (then nothing may be kept: the caller rolls back)."""
    adapt = connection.ops.adapt_datetimefield_value
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for room_id, seq, author_id, author_name, body, created_at, client_id in rows:
        params += [room_id, seq, author_id, author_name, body, adapt(created_at), client_id]
    inserted = sql.rows(f"{statements().insert_into}{values}{statements().insert_end}", params)
    ids = [int(row[0]) for row in inserted]
    return ids if len(ids) == len(rows) else None


def earlier_posts(slug: str, client_ids: Sequence[str]) -> dict[str, tuple[int, int | None]]:
    """Posts already made in the room with these client_ids: their (id, author id) by client_id.

    One room per statement, its client_ids in one IN list: what the unique index on
    (room, client_id) answers directly (an OR of (room, client_id) pairs made SQLite plan a
    scan per pair, 25 ms for 16 of them).
    """
    if not client_ids:
        return {}
    placeholders = ", ".join(["%s"] * len(client_ids))
    found = sql.rows(statements().earlier.format(client_ids=placeholders), [slug, *client_ids])
    return {client_id: (pk, author) for client_id, pk, author in found}


def room_id(slug: str) -> int | None:
    row = sql.row(statements().room_id, [slug])
    return None if row is None else int(row[0])


def last_seq(room_id: int) -> int | None:
    row = sql.row(statements().last_seq, [room_id])
    return None if row is None else int(row[0])


def room(slug: str) -> Room | None:
    found = sql.row(statements().room, [slug])
    return None if found is None else ROOMS.load(found)


def rooms(offset: int, limit: int) -> list[Room]:
    return ROOMS.load_all(sql.rows(statements().rooms, [limit, offset]))


def room_count() -> int:
    counted = sql.row(statements().room_count)
    assert counted is not None  # COUNT(*) has its row
    return int(counted[0])


def history(
    slug: str, *, after: int, before: int, limit: int, newest_first: bool
) -> list[HistoryRow]:
    """The room's messages with `after < seq < before`: the first `limit` of them by seq, or
    the last `limit` (newest first)."""
    read = statements().history_newest_first if newest_first else statements().history_oldest_first
    rows = sql.rows(read, [slug, after, before, limit])
    return [HistoryRow._make((*row[:5], _aware(row[5]), *row[6:])) for row in rows]


def _aware(value: datetime) -> datetime:
    """A stored time as the ORM gives it: SQLite's driver reads it naive (it is UTC)."""
    return timezone.make_aware(value, UTC) if timezone.is_naive(value) else value
