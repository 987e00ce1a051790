"""Reads of the chat domain."""

from __future__ import annotations

from django.db.models import F, QuerySet

from .models import Message, Room

HISTORY_MAX_LIMIT = 200


def room_get(*, slug: str) -> Room | None:
    return Room.objects.filter(slug=slug).first()


def room_list() -> QuerySet[Room]:
    """Rooms, most recently active first; rooms never written to last, by slug.

    NULLS LAST is spelled out: PostgreSQL sorts NULL first in a descending order, SQLite last.
    """
    return Room.objects.order_by(F("last_message_at").desc(nulls_last=True), "slug")


def message_history(
    *, room: Room, after: int | None = None, before: int | None = None, limit: int = 50
) -> list[Message]:
    """Messages by `seq`: the first `limit` after `after`, else the last `limit` before `before`.

    Read through the room's own manager, so every message's `room` is this room, already
    loaded: reading `message.room` costs no query per message.
    """
    limit = max(1, min(limit, HISTORY_MAX_LIMIT))
    messages = room.messages.all()
    if before is not None:
        messages = messages.filter(seq__lt=before)
    if after is not None:
        return list(messages.filter(seq__gt=after).order_by("seq")[:limit])
    return list(reversed(messages.order_by("-seq")[:limit]))


def messages_between(*, room_id: int, after: int, upto: int) -> list[Message]:
    """Messages with `after < seq <= upto`, in order (replay and gap repair)."""
    return list(
        Message.objects.filter(room_id=room_id, seq__gt=after, seq__lte=upto).order_by("seq")
    )
