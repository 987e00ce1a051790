"""Reads of the chat domain.

Each read of a room is for a `viewer` (a user, or None when anonymous) and finds only rooms
that viewer may read (`chat.access`): any other answers as a slug that names no room.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Case, F, IntegerField, QuerySet, Value, When

from realtime.kernel.listing import Listing

from . import store
from .errors import ChatError, ChatErrorCode
from .frames import change_frame, message_body, message_frame
from .models import Membership, Message, MessageChange, Role, Room

HISTORY_MAX_LIMIT = 200

Viewer = AbstractBaseUser | AnonymousUser | None


def viewer_id(viewer: Viewer) -> int | None:
    """The id of a signed-in viewer; None for anonymous ones."""
    if viewer is None or not viewer.is_authenticated:
        return None
    return int(viewer.pk)


@dataclass(frozen=True)
class ReadState:
    """A member's read position in a room, and how many messages after it others wrote
    (counted up to `store.UNREAD_CAP`, where the one rule of what counts is)."""

    last_read_seq: int
    unread: int


@dataclass(frozen=True)
class VisibleRoom:
    """A room its viewer may read, with the viewer's role in it (None: not a member), and
    their read state when it was asked for and they are a member."""

    room: Room
    role: str | None
    read: ReadState | None = None


def _visible(row: store.RoomRow) -> VisibleRoom:
    read = None
    if row.last_read_seq is not None and row.unread is not None:
        read = ReadState(row.last_read_seq, row.unread)
    return VisibleRoom(row.room, row.role, read)


def room_get(*, slug: str, viewer: Viewer, with_read: bool = False) -> VisibleRoom | None:
    """The room with this slug if `viewer` may read it, with their role, and `with_read` their
    read state (one query either way)."""
    if with_read:
        row = store.room_read(slug, viewer_id(viewer))
        return None if row is None else _visible(row)
    found = store.room(slug, viewer_id(viewer))
    return None if found is None else VisibleRoom(*found)


def room_id_get(*, slug: str, viewer: Viewer) -> int | None:
    """The id of the room with this slug if `viewer` may read it (one query)."""
    return store.room_id(slug, viewer_id(viewer))


def room_last_seq(*, room_id: int) -> int:
    """The `seq` of the room's latest message, 0 before its first (one query)."""
    last = store.last_seq(room_id)
    if last is None:
        raise Room.DoesNotExist(f"No room with id {room_id}.")
    return last


def room_list(*, viewer: Viewer) -> Listing[VisibleRoom]:
    """The rooms `viewer` may read (every public one, and those they are a member of), most
    recently active first; rooms never written to last, by slug. Each with the viewer's role
    and, where they are a member, their read state (counted in the page's own query).

    A page is one query and the count another, both written once (`store`): the ORM built
    this ordered query again for every list, 0.18 ms of its 0.29 ms.
    """
    who = viewer_id(viewer)

    def page(offset: int, limit: int) -> list[VisibleRoom]:
        return [_visible(row) for row in store.rooms(who, offset, limit)]

    return Listing(page, lambda: store.room_count(who))


def member_list(*, room: Room) -> QuerySet[Membership]:
    """A room's members with their users, owners first, then by when they joined (a page is
    one query, its count another)."""
    owners_first = {Role.OWNER: 0, Role.ADMIN: 1, Role.MEMBER: 2}
    rank = Case(
        *(When(role=role, then=Value(n)) for role, n in owners_first.items()),
        output_field=IntegerField(),
    )
    return (
        Membership.objects.filter(room=room)
        .select_related("user")
        .order_by(rank, "joined_at", "id")
    )


def message_get(*, slug: str, message_id: int, viewer: Viewer) -> Message | None:
    """The message with this id in the room with this slug, if `viewer` may read it (one query)."""
    found = store.message(slug, message_id, viewer_id(viewer))
    return None if found is None else found[0]


@dataclass(frozen=True)
class HistoryPage:
    """A page of a room's history, as REST returns it."""

    messages: list[dict[str, Any]]  # each message's `message_body`, by seq
    last_seq: int  # the room's newest seq when the page was read


def message_history(
    *,
    slug: str,
    viewer: Viewer,
    after: int | None = None,
    before: int | None = None,
    limit: int = 50,
) -> HistoryPage | None:
    """Messages by `seq`: the first `limit` after `after`, else the last `limit` before `before`.

    None when there is no such room, or `viewer` may not read it. One query, written once
    (`store.history`): the page's rows, each with its room's `last_seq` (no model per
    message). An empty page takes a second query, for the room's `last_seq` (or to find there
    is no room the viewer may read).
    """
    limit = max(1, min(limit, HISTORY_MAX_LIMIT))
    who = viewer_id(viewer)
    rows = store.history(
        slug,
        who,
        after=0 if after is None else min(after, store.SEQ_END),
        before=store.SEQ_END if before is None else min(before, store.SEQ_END),
        limit=limit,
        newest_first=after is None,
    )
    if not rows:
        found = store.room(slug, who)
        return None if found is None else HistoryPage([], found[0].last_seq)
    if after is None:
        rows.reverse()
    return HistoryPage([message_body(row, slug) for row in rows], rows[0].room_last_seq)


def messages_between(*, room_id: int, after: int, upto: int, deleted: bool = True) -> list[Message]:
    """Messages with `after < seq <= upto`, in order (replay and gap repair), each as it is now;
    without the deleted ones unless `deleted` (an export leaves them out)."""
    found = Message.objects.filter(room_id=room_id, seq__gt=after, seq__lte=upto)
    if not deleted:
        found = found.filter(deleted=False)
    return list(found.order_by("seq"))


def message_frames_between(
    *, room_id: int, slug: str, after: int, upto: int
) -> list[dict[str, Any]]:
    """The frames with `after < seq <= upto`, in `seq` order: each message's `chat.message` (as
    it is now: its current text, or a tombstone) and each change's `message.edited` or
    `message.deleted`.

    One query when those `seq`s are all messages' (every `seq` of a room is a message's or a
    change's, so a full count tells), two when some are changes'.
    """
    messages = messages_between(room_id=room_id, after=after, upto=upto)
    frames = [(message.seq, message_frame(message, slug)) for message in messages]
    if len(messages) < upto - after:
        changes = (
            MessageChange.objects.filter(room_id=room_id, seq__gt=after, seq__lte=upto)
            .annotate(message_seq=F("message__seq"))
            .order_by("seq")
        )
        frames += [
            (change.seq, change_frame(change, change.message_seq, slug)) for change in changes
        ]
        frames.sort(key=lambda seq_frame: seq_frame[0])
    return [frame for _, frame in frames]


def room_readers(*, room_id: int, user_ids: list[int]) -> set[int]:
    """Those of these users who may read the room now (one query; none for a public room)."""
    found = store.room_readers(room_id, user_ids)
    return set(user_ids) if found is None else found


@dataclass(frozen=True)
class RoomReplay:
    """What a subscription that names `since` is sent before it goes live."""

    last_seq: int
    frames: list[dict[str, Any]] | None  # None: `since` cannot be replayed, the client resyncs


def room_replay(
    *, room_id: int, slug: str, viewer: Viewer, since: int | None, limit: int
) -> RoomReplay | None:
    """The last `seq` and the frames after `since`, if `limit` or fewer (two queries at most);
    None if `viewer` may not read the room (any more: it is read again after the subscription
    joined the room's feed, so a removal committed since is seen here or reaches the feed)."""
    last_seq = store.readable_last_seq(room_id, viewer_id(viewer))
    if last_seq is None:
        return None
    if since is None:
        return RoomReplay(last_seq, [])
    if since > last_seq or last_seq - since > limit:
        return RoomReplay(last_seq, None)
    frames = message_frames_between(room_id=room_id, slug=slug, after=since, upto=last_seq)
    return RoomReplay(last_seq, frames)


def unread_count(*, room_id: int, user_id: int, last_read_seq: int) -> int:
    """How many messages a member would have unread with this read position (one query)."""
    return store.unread_after(room_id, user_id, last_read_seq)


# The most rooms a `rooms:mine` snapshot holds: the most recently active.
ROOMS_MINE_MAX = 500


@dataclass(frozen=True)
class MyRooms:
    rows: list[store.RoomRow]
    truncated: bool  # the user has more rooms than ROOMS_MINE_MAX


def my_rooms(*, user_id: int, limit: int = ROOMS_MINE_MAX) -> MyRooms:
    """The rooms the user is a member of, most recently active first, with their read state
    in each (one query)."""
    rows = store.my_rooms(user_id, limit + 1)
    return MyRooms(rows[:limit], len(rows) > limit)


def member_room_states(
    *, room_id: int, user_ids: list[int] | None = None
) -> list[tuple[int, store.RoomRow]]:
    """The room as each member (of `user_ids`, if given) sees it: (user id, row) (one query)."""
    return store.member_states(room_id, user_ids)


@dataclass(frozen=True)
class Reader:
    """How far a member has read a room ("seen by")."""

    user_id: int
    username: str
    last_read_seq: int


def seen_by(*, room: Room) -> list[Reader]:
    """Each member's read position, furthest first: rooms up to CHAT_SEEN_BY_MAX_MEMBERS
    members only (`room_too_large` beyond: one query either way)."""
    most = int(settings.CHAT_SEEN_BY_MAX_MEMBERS)
    found = list(
        Membership.objects.filter(room=room)
        .order_by("-last_read_seq", "user__username")
        .values_list("user_id", "user__username", "last_read_seq")[: most + 1]
    )
    if len(found) > most:
        raise ChatError(
            ChatErrorCode.ROOM_TOO_LARGE,
            f"Who has read what is kept for rooms of up to {most} members.",
        )
    return [Reader(*row) for row in found]
