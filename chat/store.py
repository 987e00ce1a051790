"""The hottest statements of the chat domain, written as SQL once instead of compiled per call.

Posting is the hottest write: every chat message takes it, over REST and both sockets. The
ORM compiles each query from scratch every time, which measured about 0.6 ms of CPU per
statement on the project's 2-core test machine (SQLite executed it in 0.04 ms), four times
per post. These statements are built once per database vendor from the models' own table and
column names and run on the driver's cursor in Django's transaction (`realtime.kernel.sql`,
which hands them to Django's cursor when a test counts queries); every one is plain SQL that
SQLite (3.35+, for RETURNING) and PostgreSQL both run unchanged. Two reads that every
socket subscription makes (a room's id, its last `seq`) are here for the same reason, and so
are the REST reads of rooms (one room, a page of the list, the count), and the two that every
change of a message makes (the message with its room's rules, the room's next `seq`).

Every read of a room or its messages is for a viewer (a user id, or None when anonymous) and
finds only the rooms that viewer may read (`chat.access.may_read`, as `visible` here): a
private room is to anyone else what an unknown slug is. Posting reads who may post with the
room's lock, in the same statement.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.db import connection

from realtime.kernel import sql
from realtime.kernel.events import UNREAD_CAP

from .models import Membership, Message, PostingBudget, Room


class HistoryRow(NamedTuple):
    """A message as its history page reads it, with its room's newest `seq`."""

    id: int
    seq: int
    author_id: int | None
    author_name: str
    body: str
    created_at: datetime
    client_id: str | None
    edited_at: datetime | None
    deleted: bool
    room_last_seq: int


# A room row read whole: `Statements.room` and `Statements.rooms` select its columns.
ROOMS = sql.Rows(Room)
# A message row read whole: `Statements.message` selects its columns.
MESSAGES = sql.Rows(Message)


class Locked(NamedTuple):
    """A room locked for posting: its seq taken, with what decides who may post in it."""

    id: int
    last_seq: int
    kind: str
    posting: str
    role: str | None  # the role of the user named with the lock (None: not a member)


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
    roles: str  # roles of some users in a room; `{user_ids}` is filled per call
    room_id: str
    last_seq: str
    readable_last_seq: str
    readers: str  # a room's kind, and which of some users are members; `{user_ids}` per call
    room: str  # the room with a slug, with the viewer's role
    rooms: str  # a page of rooms, most recently active first, with the viewer's role in each
    room_count: str
    history_oldest_first: str  # a room's messages with after < seq < before
    history_newest_first: str
    message: str  # a message of the room with a slug, with the viewer's role in the room
    take_seq: str  # the room's next `seq`, for a change of one of its messages
    room_read: str  # the room with a slug, with the viewer's role and read state
    read_write: str  # a member's read position moved forward
    unread_after: str  # a member's unread count from a given position
    member_states: str  # a room with each member's role and read state; `{only}` per call
    my_rooms: str  # the rooms a user is a member of, most recently active first, with state


@functools.cache
def _statements(vendor: str) -> Statements:  # the vendor keys the cache; quote_name reads it
    del vendor
    q = connection.ops.quote_name
    budget, room, message, member = (
        q(model._meta.db_table) for model in (PostingBudget, Room, Message, Membership)
    )
    # The viewer's membership, joined to `r`; and the rooms they may read (`access.may_read`).
    viewers = f"LEFT JOIN {member} v ON v.room_id = r.id AND v.user_id = %s"
    visible = "(r.kind = 'public' OR v.role IS NOT NULL)"
    # The viewer's read state (NULL each when not a member): their position, and the unread.
    read_state = (
        f"v.last_read_seq, CASE WHEN v.user_id IS NULL THEN NULL ELSE {_unread(message)} END"
    )
    # Rooms never written to last (NULLS LAST, spelled so both databases read it alike).
    by_activity = "ORDER BY r.last_message_at IS NULL, r.last_message_at DESC, r.slug"
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
        # and advances its `seq` by the posts about to be written, in one statement, which
        # also returns who may post there: the room's kind and posting, and a poster's role.
        lock_room=(
            f"UPDATE {room} SET last_seq = last_seq + %s, last_message_at = %s "
            f"WHERE slug = %s RETURNING id, last_seq, kind, posting, "
            f"(SELECT role FROM {member} WHERE room_id = {room}.id AND user_id = %s)"
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
        # Only in a room the poster may read: elsewhere a client_id is as good as new, and
        # the post is refused as for an unknown room when its room is locked.
        earlier=(
            f"SELECT m.client_id, m.id, m.author_id FROM {message} m "
            f"JOIN {room} r ON r.id = m.room_id {viewers} "
            f"WHERE r.slug = %s AND {visible} AND m.client_id IN ({{client_ids}})"
        ),
        roles=(
            f"SELECT user_id, role FROM {member} WHERE room_id = %s AND user_id IN ({{user_ids}})"
        ),
        room_id=f"SELECT r.id FROM {room} r {viewers} WHERE r.slug = %s AND {visible}",
        last_seq=f"SELECT last_seq FROM {room} WHERE id = %s",
        readable_last_seq=(
            f"SELECT r.last_seq FROM {room} r {viewers} WHERE r.id = %s AND {visible}"
        ),
        readers=(
            f"SELECT r.kind, v.user_id FROM {room} r LEFT JOIN {member} v "
            f"ON v.room_id = r.id AND v.user_id IN ({{user_ids}}) WHERE r.id = %s"
        ),
        room=(
            f"SELECT {ROOMS.columns('r')}, v.role FROM {room} r {viewers} "
            f"WHERE r.slug = %s AND {visible}"
        ),
        rooms=(
            f"SELECT {ROOMS.columns('r')}, v.role, {read_state} FROM {room} r {viewers} "
            f"WHERE {visible} {by_activity} LIMIT %s OFFSET %s"
        ),
        room_count=f"SELECT COUNT(*) FROM {room} r {viewers} WHERE {visible}",
        history_oldest_first=_history(message, room, viewers, visible, "ASC"),
        history_newest_first=_history(message, room, viewers, visible, "DESC"),
        message=(
            f"SELECT {MESSAGES.columns('m')}, v.role FROM {message} m "
            f"JOIN {room} r ON r.id = m.room_id {viewers} "
            f"WHERE r.slug = %s AND {visible} AND m.id = %s"
        ),
        # Takes the room row's lock as `lock_room` does, but is no activity of the room: an
        # edit does not bring an old room to the top of the list.
        take_seq=f"UPDATE {room} SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq",
        room_read=(
            f"SELECT {ROOMS.columns('r')}, v.role, {read_state} FROM {room} r {viewers} "
            f"WHERE r.slug = %s AND {visible}"
        ),
        # Only forward: a write that lost a race to a later one changes nothing.
        read_write=(
            f"UPDATE {member} SET last_read_seq = %s "
            f"WHERE room_id = %s AND user_id = %s AND last_read_seq < %s RETURNING last_read_seq"
        ),
        unread_after=f"SELECT {_unread(message, '%s', '%s')} FROM {room} r WHERE r.id = %s",
        member_states=(
            f"SELECT {ROOMS.columns('r')}, v.user_id, v.role, {read_state} "
            f"FROM {member} v JOIN {room} r ON r.id = v.room_id "
            f"WHERE r.id = %s{{only}}"
        ),
        my_rooms=(
            f"SELECT {ROOMS.columns('r')}, v.role, {read_state} "
            f"FROM {member} v JOIN {room} r ON r.id = v.room_id "
            f"WHERE v.user_id = %s {by_activity} LIMIT %s"
        ),
    )


def _unread(message: str, position: str = "v.last_read_seq", reader: str = "v.user_id") -> str:
    """How many messages of room `r` after `position` the reader has not read, up to UNREAD_CAP.

    The one place that says which messages count as unread: those after the position that
    someone else wrote and that are not deleted. Messages, not `seq`s: edits and deletes take
    `seq`s of their own, so `last_seq - position` would count them. The count reads at most
    UNREAD_CAP rows of the (room, seq) index.
    """
    return (
        f"(SELECT COUNT(*) FROM (SELECT 1 FROM {message} u WHERE u.room_id = r.id "
        f"AND u.seq > {position} AND (u.author_id IS NULL OR u.author_id <> {reader}) "
        f"AND NOT u.deleted LIMIT {UNREAD_CAP}) unread)"
    )


def _history(message: str, room: str, viewers: str, visible: str, order: str) -> str:
    columns = ", ".join(f"m.{column}" for column in HistoryRow._fields[:-1])
    return (
        f"SELECT {columns}, r.last_seq FROM {message} m JOIN {room} r ON r.id = m.room_id "
        f"{viewers} WHERE r.slug = %s AND {visible} AND m.seq > %s AND m.seq < %s "
        f"ORDER BY m.seq {order} LIMIT %s"
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


def lock_room(slug: str, posts: int, now: datetime, user_id: int | None) -> Locked | None:
    """Lock the room and advance its `seq` by `posts`, with `user_id`'s role; None: no room."""
    row = sql.row(
        statements().lock_room,
        [posts, connection.ops.adapt_datetimefield_value(now), slug, user_id],
    )
    return None if row is None else Locked(int(row[0]), int(row[1]), row[2], row[3], row[4])


def roles(room_id: int, user_ids: Sequence[int]) -> dict[int, str]:
    """The roles of those of these users who are members of the room."""
    if not user_ids:
        return {}
    placeholders = ", ".join(["%s"] * len(user_ids))
    found = sql.rows(statements().roles.format(user_ids=placeholders), [room_id, *user_ids])
    return {int(user_id): role for user_id, role in found}


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


def earlier_posts(
    slug: str, client_ids: Sequence[str], viewer: int | None
) -> dict[str, tuple[int, int | None]]:
    """Posts already made in the room with these client_ids: their (id, author id) by client_id;
    none if `viewer` may not read the room.

    One room per statement, its client_ids in one IN list: what the unique index on
    (room, client_id) answers directly (an OR of (room, client_id) pairs made SQLite plan a
    scan per pair, 25 ms for 16 of them).
    """
    if not client_ids:
        return {}
    placeholders = ", ".join(["%s"] * len(client_ids))
    found = sql.rows(
        statements().earlier.format(client_ids=placeholders), [viewer, slug, *client_ids]
    )
    return {client_id: (pk, author) for client_id, pk, author in found}


def room_id(slug: str, viewer: int | None) -> int | None:
    row = sql.row(statements().room_id, [viewer, slug])
    return None if row is None else int(row[0])


def last_seq(room_id: int) -> int | None:
    row = sql.row(statements().last_seq, [room_id])
    return None if row is None else int(row[0])


def readable_last_seq(room_id: int, viewer: int | None) -> int | None:
    row = sql.row(statements().readable_last_seq, [viewer, room_id])
    return None if row is None else int(row[0])


def room_readers(room_id: int, user_ids: Sequence[int]) -> set[int] | None:
    """Which of these users may read the room: None for a public room (all of them)."""
    placeholders = ", ".join(["%s"] * len(user_ids)) or "NULL"
    found = sql.rows(statements().readers.format(user_ids=placeholders), [*user_ids, room_id])
    if found and found[0][0] == "public":
        return None
    return {int(user_id) for _, user_id in found if user_id is not None}


def room(slug: str, viewer: int | None) -> tuple[Room, str | None] | None:
    """The room with this slug if `viewer` may read it, with their role in it."""
    found = sql.row(statements().room, [viewer, slug])
    return None if found is None else (ROOMS.load(found[:-1]), found[-1])


class RoomRow(NamedTuple):
    """A room as a viewer sees it: their role, and their read state (None: not a member)."""

    room: Room
    role: str | None
    last_read_seq: int | None
    unread: int | None


def _room_row(found: Sequence[Any]) -> RoomRow:
    *columns, role, last_read_seq, unread = found
    return RoomRow(
        ROOMS.load(columns),
        role,
        None if last_read_seq is None else int(last_read_seq),
        None if unread is None else int(unread),
    )


def room_read(slug: str, viewer: int | None) -> RoomRow | None:
    """The room with this slug if `viewer` may read it, with their role and read state."""
    found = sql.row(statements().room_read, [viewer, slug])
    return None if found is None else _room_row(found)


def rooms(viewer: int | None, offset: int, limit: int) -> list[RoomRow]:
    """A page of the rooms `viewer` may read, each with their role and read state in it."""
    found = sql.rows(statements().rooms, [viewer, limit, offset])
    return [_room_row(row) for row in found]


def read_write(room_id: int, user_id: int, seq: int) -> bool:
    """Move a member's read position forward to `seq`; False when it was there already."""
    return sql.row(statements().read_write, [seq, room_id, user_id, seq]) is not None


def unread_after(room_id: int, user_id: int, position: int) -> int:
    """A member's unread count in a room if they had read up to `position`."""
    found = sql.row(statements().unread_after, [position, user_id, room_id])
    assert found is not None  # the caller read the room
    return int(found[0])


def member_states(room_id: int, user_ids: Sequence[int] | None = None) -> list[tuple[int, RoomRow]]:
    """The room as each of its members sees it (those of `user_ids` only, if given): (user id,
    row) each."""
    if user_ids is not None and not user_ids:
        return []
    only = "" if user_ids is None else f" AND v.user_id IN ({', '.join(['%s'] * len(user_ids))})"
    found = sql.rows(statements().member_states.format(only=only), [room_id, *(user_ids or ())])
    columns = len(Room._meta.concrete_fields)
    return [(int(row[columns]), _room_row((*row[:columns], *row[columns + 1 :]))) for row in found]


def my_rooms(user_id: int, limit: int) -> list[RoomRow]:
    """The rooms `user_id` is a member of, most recently active first, with their state."""
    return [_room_row(row) for row in sql.rows(statements().my_rooms, [user_id, limit])]


def room_count(viewer: int | None) -> int:
    counted = sql.row(statements().room_count, [viewer])
    assert counted is not None  # COUNT(*) has its row
    return int(counted[0])


def history(
    slug: str, viewer: int | None, *, after: int, before: int, limit: int, newest_first: bool
) -> list[HistoryRow]:
    """The room's messages with `after < seq < before`: the first `limit` of them by seq, or
    the last `limit` (newest first); none if `viewer` may not read it."""
    read = statements().history_newest_first if newest_first else statements().history_oldest_first
    rows = sql.rows(read, [viewer, slug, after, before, limit])
    return [
        HistoryRow._make(
            (*row[:5], _aware(row[5]), row[6], _aware_or_none(row[7]), bool(row[8]), row[9])
        )
        for row in rows
    ]


def message(slug: str, message_id: int, viewer: int | None) -> tuple[Message, str | None] | None:
    """The message with this id in the room with this slug if `viewer` may read the room, with
    their role in it."""
    if not 0 < message_id < 2**63:  # no row has it, and the database would refuse the number
        return None
    found = sql.row(statements().message, [viewer, slug, message_id])
    return None if found is None else (MESSAGES.load(found[:-1]), found[-1])


def take_seq(room_id: int) -> int | None:
    """Lock the room and advance its `seq` by one: the `seq` taken (None: no such room)."""
    row = sql.row(statements().take_seq, [room_id])
    return None if row is None else int(row[0])


def _aware_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _aware(value: datetime) -> datetime:
    """A stored time as the ORM gives it: SQLite's driver reads it naive (it is UTC)."""
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value
