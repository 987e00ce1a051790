"""Writes of the chat domain."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from realtime.kernel.broadcast import publish_on_commit
from realtime.kernel.names import room_group
from realtime.kernel.ratelimit import SlidingWindowLimit

from .errors import ChatError, ChatErrorCode
from .frames import message_event
from .models import CLIENT_ID_MAX_LENGTH, MESSAGE_MAX_LENGTH, Message, Room

# CHAT_POST_RATE: one budget per user (or anonymous address), whichever way the posts come.
POST_LIMIT = SlidingWindowLimit("chat_post")


def room_create(*, slug: str, title: str = "", created_by: User | None = None) -> Room:
    """Create a room after validating its slug and title."""
    room = Room(slug=slug, title=title or slug, created_by=created_by)
    try:
        room.full_clean()
    except ValidationError as exc:
        if "slug" in exc.message_dict and Room.objects.filter(slug=slug).exists():
            raise ChatError(ChatErrorCode.ROOM_EXISTS, f"Room {slug!r} already exists.") from exc
        raise ChatError(ChatErrorCode.INVALID_ROOM, _first_error(exc)) from exc
    try:
        with transaction.atomic():
            room.save()
    except IntegrityError as exc:  # lost a race with another creator of the same slug
        raise ChatError(ChatErrorCode.ROOM_EXISTS, f"Room {slug!r} already exists.") from exc
    return room


def room_ensure(*, slug: str, title: str = "") -> Room:
    """The room with this slug, created if missing (the tutorial creates rooms by visiting)."""
    room = Room.objects.filter(slug=slug).first()
    if room is not None:
        return room
    try:
        return room_create(slug=slug, title=title)
    except ChatError as exc:
        if exc.code != ChatErrorCode.ROOM_EXISTS:
            raise
        return Room.objects.get(slug=slug)


@dataclass(frozen=True)
class Poster:
    """Who posts: a signed-in user, or an anonymous client known by its address.

    The interface that took the post says which address (REST: the peer, or the client that
    `NUM_PROXIES` trusted proxies name; a socket: the ASGI scope's client).
    """

    user: User | None
    address: str

    @property
    def rate_key(self) -> str:
        """Whose posting budget a post spends: the user's, else the address's."""
        return f"user:{self.user.pk}" if self.user is not None else f"addr:{self.address}"


@dataclass(frozen=True)
class PostResult:
    message: Message
    created: bool  # False when `client_id` named a message posted before


def message_post(
    *, room: Room, poster: Poster, body: str, client_id: str | None = None
) -> PostResult:
    """Append a message with the room's next `seq` and broadcast it after commit.

    Every rule of posting is checked here, whichever interface took the post: the body and
    `client_id`, who may post, and the posting rate (CHAT_POST_RATE, one budget per user or
    anonymous address; a retry that names an earlier post spends none). The room row is locked
    for the whole transaction, so concurrent posts (any process) commit in `seq` order with no
    gap; a `client_id` seen before returns that message.
    """
    _check_body(body)
    _check_client_id(client_id)
    author = poster.user
    if author is None and not settings.SWITCHBOARD_ANONYMOUS_POSTING:
        raise ChatError(ChatErrorCode.POSTING_NOT_ALLOWED, "Sign in to post in this room.")
    wait = POST_LIMIT.take(who=poster.rate_key, rate=settings.CHAT_POST_RATE)
    if wait is not None:
        # A retry of a post that was taken is answered with it, whatever the budget says.
        earlier = _earlier_post(room.pk, author, client_id) if client_id is not None else None
        if earlier is not None:
            return PostResult(earlier, created=False)
        raise ChatError(
            ChatErrorCode.RATE_LIMITED,
            f"Too many messages; try again in {wait} s.",
            retry_after=wait,
        )
    try:
        result = _message_append(room=room, author=author, body=body, client_id=client_id)
    except BaseException:  # nothing was posted: no budget spent
        POST_LIMIT.give_back(who=poster.rate_key, rate=settings.CHAT_POST_RATE)
        raise
    if not result.created:  # a retry, answered with the earlier post: no budget spent
        POST_LIMIT.give_back(who=poster.rate_key, rate=settings.CHAT_POST_RATE)
    return result


def _message_append(
    *, room: Room, author: User | None, body: str, client_id: str | None
) -> PostResult:
    """Write the message under the room's lock; a known `client_id` returns its message."""
    with transaction.atomic():
        locked = Room.objects.select_for_update().only("pk", "slug", "last_seq").get(pk=room.pk)
        earlier = _earlier_post(locked.pk, author, client_id) if client_id is not None else None
        if earlier is not None:
            return PostResult(earlier, created=False)
        now = timezone.now()
        seq = locked.last_seq + 1
        Room.objects.filter(pk=locked.pk).update(last_seq=seq, last_message_at=now)
        message = Message.objects.create(
            room=locked,
            seq=seq,
            author=author,
            author_name=author.get_username() if author else "anonymous",
            body=body,
            created_at=now,
            client_id=client_id,
        )
        publish_on_commit(room_group(locked.slug), message_event(message, locked.slug))
    return PostResult(message, created=True)


def _earlier_post(room_id: int, author: User | None, client_id: str) -> Message | None:
    """The author's post in the room with this `client_id`, if any (one query).

    Another author's post with it is a conflict: a client_id names one author's post.
    """
    earlier = Message.objects.filter(room_id=room_id, client_id=client_id).first()
    if earlier is not None and earlier.author_id != (author.pk if author else None):
        raise ChatError(ChatErrorCode.CLIENT_ID_CONFLICT, "client_id was used by another author.")
    return earlier


def _check_client_id(client_id: object) -> None:
    if client_id is not None:
        _check_text(client_id, "client_id", CLIENT_ID_MAX_LENGTH)


def _check_body(body: object) -> None:
    _check_text(body, "The message body", MESSAGE_MAX_LENGTH)


def _check_text(text: object, name: str, max_length: int) -> None:
    """Refuse an empty or over-long text, or one with a NUL, as `invalid_message`."""
    if not isinstance(text, str) or not text:
        raise ChatError(ChatErrorCode.INVALID_MESSAGE, f"{name} is empty.")
    if len(text) > max_length:
        raise ChatError(
            ChatErrorCode.INVALID_MESSAGE, f"{name} is longer than {max_length} characters."
        )
    if "\x00" in text:
        raise ChatError(ChatErrorCode.INVALID_MESSAGE, f"{name} contains a NUL.")


def _first_error(exc: ValidationError) -> str:
    for field, messages in exc.message_dict.items():
        return f"{field}: {messages[0]}"
    return str(exc)
