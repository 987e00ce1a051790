"""How a message looks to clients, declared once: its `chat.message` frame, also REST's body;
and how its changes (edits, deletions) look: `message.edited` and `message.deleted` frames."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from realtime.kernel import events
from realtime.kernel.names import (
    ROOM_ACCESS_ENDED,
    ROOM_CHANGE,
    ROOM_MESSAGE,
    ROOM_READ,
    ROOM_REMOVED,
    ROOM_STATE,
    ROOM_TYPING,
    room_channel,
)

if TYPE_CHECKING:
    from .store import RoomRow

# What a message's body is made from: a `Message`'s fields, or a row of `message_history`.
MESSAGE_COLUMNS = (
    "id",
    "seq",
    "author_id",
    "author_name",
    "body",
    "created_at",
    "client_id",
    "edited_at",
    "deleted",
)


class MessageFields(Protocol):
    """A message's stored fields (a `Message`, or a row read with `MESSAGE_COLUMNS`)."""

    @property
    def id(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def author_id(self) -> int | None: ...
    @property
    def author_name(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def edited_at(self) -> datetime | None: ...
    @property
    def deleted(self) -> bool: ...


def message_event(message: MessageFields, slug: str) -> dict[str, object]:
    """The channel-layer event announcing a message: its `seq` and its ready-made frame."""
    frame = message_frame(message, slug)
    return {"type": ROOM_MESSAGE, "room": slug, "seq": message.seq, "frame": frame}


def message_frame(message: MessageFields, slug: str) -> dict[str, object]:
    """The `chat.message` frame of a message, as sent to gateway clients.

    Built from `message_body` rather than through the validated model: every post, replay
    and repair makes one, and the model costs more than the post's own SQL. It is the
    model's JSON dump, key for key (tests/chat/test_frames.py holds the two together).
    """
    frame: dict[str, object] = {
        "type": "chat.message",
        "channel": room_channel(slug),
        **message_body(message, slug),
    }
    if frame["client_id"] is None:  # the dump leaves out optional fields left unset
        del frame["client_id"]
    return frame


def message_model(message: MessageFields, slug: str) -> events.ChatMessageFrame:
    """A message as declared once for both transports: its `chat.message` frame."""
    return events.ChatMessageFrame(channel=room_channel(slug), **message_body(message, slug))


def message_body(message: MessageFields, slug: str) -> dict[str, Any]:
    """A message as REST returns it: its `chat.message` frame without `type` and `channel`.

    JSON-ready, in the frame's field order. Not validated here: the frame's checks cost more
    than reading the page (a page of 50: 1.1 ms through the model, 0.3 ms this way), and
    `message_model` builds the frame from this same dict, so the two cannot drift apart.
    """
    author_id = message.author_id
    return {
        "room": slug,
        "seq": message.seq,
        "id": message.id,
        "author": None if author_id is None else {"id": author_id, "username": message.author_name},
        "author_name": message.author_name,
        "body": message.body,
        "created_at": message.created_at.isoformat(),
        "client_id": message.client_id,
        "edited_at": None if message.edited_at is None else message.edited_at.isoformat(),
        "deleted": bool(message.deleted),  # SQLite's driver reads 0 or 1
    }


class ChangeFields(Protocol):
    """A change's stored fields (a `MessageChange`), with the `seq` of its message."""

    @property
    def seq(self) -> int: ...
    @property
    def message_id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


def change_frame(change: ChangeFields, message_seq: int, slug: str) -> dict[str, object]:
    """The `message.edited` or `message.deleted` frame of a change, live or replayed.

    Changes are rare next to posts: built through the declared models, validated.
    """
    common: dict[str, Any] = {
        "channel": room_channel(slug),
        "room": slug,
        "seq": change.seq,
        "id": change.message_id,
        "message_seq": message_seq,
    }
    frame: events.Frame
    if change.kind == "deleted":
        frame = events.MessageDeletedFrame(**common)
    else:
        at = change.created_at.isoformat()
        frame = events.MessageEditedFrame(**common, body=change.body, edited_at=at)
    return events.dump(frame)


def change_event(change: ChangeFields, message_seq: int, slug: str) -> dict[str, object]:
    """The channel-layer event announcing a change: its `seq` and its ready-made frame."""
    frame = change_frame(change, message_seq, slug)
    return {"type": ROOM_CHANGE, "room": slug, "seq": change.seq, "frame": frame}


def typing_event(
    slug: str, user: events.UserRef, *, typing: bool, expires_in: int
) -> dict[str, object]:
    """The channel-layer event of someone typing: who (so that their own sockets are left out)
    and its ready-made `typing` frame."""
    frame = events.TypingFrame(
        channel=room_channel(slug), room=slug, user=user, typing=typing, expires_in=expires_in
    )
    return {"type": ROOM_TYPING, "room": slug, "user_id": user.id, "frame": events.dump(frame)}


def access_ended_event(slug: str, user_id: int | None, reason: str) -> dict[str, object]:
    """The channel-layer event telling every process that a user (None: everyone, the room
    was deleted) may no longer read a room: their subscriptions to it end with an
    `unsubscribed` frame giving `reason`."""
    return {"type": ROOM_ACCESS_ENDED, "room": slug, "user_id": user_id, "reason": reason}


def room_state(row: RoomRow) -> events.RoomState:
    """A room as a member sees it (`rooms:mine`): the room, their role and their read state."""
    room = row.room
    assert row.role is not None
    assert row.last_read_seq is not None
    assert row.unread is not None
    return events.RoomState(
        slug=room.slug,
        title=room.title,
        kind=room.kind,  # type: ignore[arg-type]
        posting=room.posting,  # type: ignore[arg-type]
        role=row.role,  # type: ignore[arg-type]
        last_seq=room.last_seq,
        last_message_at=None if room.last_message_at is None else room.last_message_at.isoformat(),
        last_read_seq=row.last_read_seq,
        unread=row.unread,
    )


def room_state_event(row: RoomRow) -> dict[str, object]:
    """The channel-layer event (to the member's account group) of a room's state for them."""
    frame = events.RoomStateFrame(room=room_state(row))
    return {"type": ROOM_STATE, "room": row.room.slug, "frame": events.dump(frame)}


def room_read_event(row: RoomRow, conn_id: str | None) -> dict[str, object]:
    """The channel-layer event (to the member's account group) of their read position moved:
    a `read` frame for their sockets but `conn_id` (the one that read), and the room's state
    for their `rooms:mine`."""
    assert row.last_read_seq is not None
    assert row.unread is not None
    read = events.ReadFrame(room=row.room.slug, last_read_seq=row.last_read_seq, unread=row.unread)
    return {
        **room_state_event(row),
        "type": ROOM_READ,
        "conn_id": conn_id,
        "read": events.dump(read),
    }


def room_removed_event(slug: str, reason: str) -> dict[str, object]:
    """The channel-layer event (to a user's account group) of a room no longer theirs."""
    frame = events.RoomRemovedFrame(room=slug, reason=reason)  # type: ignore[arg-type]
    return {"type": ROOM_REMOVED, "room": slug, "frame": events.dump(frame)}
