"""Chat data: rooms, their members, and their messages numbered by a per-room `seq` with no gaps."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from realtime.kernel.events import CLIENT_ID_MAX_LENGTH, MESSAGE_MAX_LENGTH
from realtime.kernel.names import ROOM_SLUG_PATTERN

__all__ = [
    "CLIENT_ID_MAX_LENGTH",
    "MESSAGE_MAX_LENGTH",
    "ChangeKind",
    "Membership",
    "Message",
    "MessageChange",
    "Posting",
    "Role",
    "Room",
    "RoomKind",
]


class RoomKind(models.TextChoices):
    """Who may read a room (`chat.access`): anyone, its members, or its two people."""

    PUBLIC = "public"
    PRIVATE = "private"
    DIRECT = "direct"


class Posting(models.TextChoices):
    """Who may post in a room, among those who may read it (`chat.access`)."""

    ANYONE = "anyone"
    MEMBERS = "members"
    ADMINS = "admins"


class Role(models.TextChoices):
    """A member's role: owners and admins manage the room and its members (`chat.access`)."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class Room(models.Model):
    # The slug becomes part of channel-layer group names, which accept only these characters.
    slug = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(ROOM_SLUG_PATTERN, "Use 1-64 letters, digits, _ or -.")],
    )
    title = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_seq = models.PositiveBigIntegerField(default=0)
    last_message_at = models.DateTimeField(null=True, blank=True)
    kind = models.CharField(max_length=8, choices=RoomKind.choices, default=RoomKind.PUBLIC)
    posting = models.CharField(max_length=8, choices=Posting.choices, default=Posting.ANYONE)
    # A direct room's two users, "<lower id>:<higher id>": the same pair always gets one room.
    direct_key = models.CharField(max_length=64, null=True, blank=True, unique=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """A user's place in a room, with their role; one per room and user."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_memberships"
    )
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(default=timezone.now)
    # The `seq` up to which the member has read the room: never past the room's `last_seq`,
    # never backwards (`chat.services.read_mark`).
    last_read_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["room_id", "joined_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="chat_membership_room_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.room_id} ({self.role})"


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    author_name = models.CharField(max_length=150)
    body = models.TextField(max_length=MESSAGE_MAX_LENGTH)
    created_at = models.DateTimeField(default=timezone.now)
    # NULL, not "", means "no client_id": the uniqueness constraint applies only when set.
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH, null=True, blank=True)  # noqa: DJ001
    # When its text was last changed (None: never); a deleted message keeps no body.
    edited_at = models.DateTimeField(null=True, blank=True)
    # With a database default: the hand-written INSERT of posts (`chat.store`) leaves it out.
    deleted = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["room_id", "seq"]  # not "room": that would join chat_room to sort by slug
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="chat_message_room_seq"),
            models.UniqueConstraint(
                fields=["room", "client_id"],
                condition=Q(client_id__isnull=False),
                name="chat_message_room_client_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq}"


class ChangeKind(models.TextChoices):
    """What a change did to its message."""

    EDITED = "edited"
    DELETED = "deleted"


class MessageChange(models.Model):
    """An edit or a deletion of a message: an event of the room's sequence, with its own `seq`.

    A room's `seq`s are shared by its messages and their changes (no `seq` is both), so
    `last_seq` counts both and replay by `since` carries both, with no gap between them.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="changes")
    seq = models.PositiveBigIntegerField()
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="changes")
    kind = models.CharField(max_length=8, choices=ChangeKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # An edit's new text; "" for a deletion, and for every edit of a message deleted since.
    body = models.TextField(max_length=MESSAGE_MAX_LENGTH, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH, null=True, blank=True)  # noqa: DJ001

    class Meta:
        ordering = ["room_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="chat_change_room_seq"),
            models.UniqueConstraint(
                fields=["room", "client_id"],
                condition=Q(client_id__isnull=False),
                name="chat_change_room_client_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq} ({self.kind} {self.message_id})"


class PostingBudget(models.Model):
    """A poster's count of posts in the current rate period and the one before (CHAT_POST_RATE).

    Kept in the database, in the posting transaction: spending and giving back commit or roll
    back with the post itself, with no round trip beyond the post's own.
    """

    who = models.CharField(max_length=200, primary_key=True)  # Poster.rate_key
    period_no = models.BigIntegerField()  # unix time // the rate's period
    hits = models.PositiveIntegerField()
    earlier_hits = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.who}: {self.hits} in period {self.period_no}"
