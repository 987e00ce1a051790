"""How a message looks to clients, declared once: its `chat.message` frame, also REST's body."""

from __future__ import annotations

from realtime.kernel import events
from realtime.kernel.names import ROOM_MESSAGE, room_channel

from .models import Message


def message_event(message: Message, slug: str) -> dict[str, object]:
    """The channel-layer event announcing a message: its `seq` and its ready-made frame."""
    frame = message_frame(message, slug)
    return {"type": ROOM_MESSAGE, "room": slug, "seq": message.seq, "frame": frame}


def message_frame(message: Message, slug: str) -> dict[str, object]:
    """The `chat.message` frame of a message, as sent to gateway clients.

    Built directly rather than through `message_model`: every post, replay and repair makes
    one, and a validated model costs more than the post's own SQL. It is the model's JSON
    dump, key for key (tests/chat/test_frames.py holds the two together).
    """
    frame: dict[str, object] = {
        "type": "chat.message",
        "channel": room_channel(slug),
        "room": slug,
        "seq": message.seq,
        "id": message.pk,
        "author": (
            {"id": message.author_id, "username": message.author_name}
            if message.author_id is not None
            else None
        ),
        "author_name": message.author_name,
        "body": message.body,
        "created_at": message.created_at.isoformat(),
    }
    if message.client_id is not None:
        frame["client_id"] = message.client_id
    return frame


def message_model(message: Message, slug: str) -> events.ChatMessageFrame:
    """A message as declared once for both transports: its `chat.message` frame."""
    author = (
        events.UserRef(id=message.author_id, username=message.author_name)
        if message.author_id is not None
        else None
    )
    return events.ChatMessageFrame(
        channel=room_channel(slug),
        room=slug,
        seq=message.seq,
        id=message.pk,
        author=author,
        author_name=message.author_name,
        body=message.body,
        created_at=message.created_at.isoformat(),
        client_id=message.client_id,
    )
