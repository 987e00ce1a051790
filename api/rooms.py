"""`/api/rooms/`: list, create, read and change rooms; their members; their messages.

Every room answer goes through the chat domain's rules: a room the caller may not read answers
exactly as a slug that names no room, on every operation.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from redis.exceptions import RedisError
from rest_framework import serializers, status
from rest_framework.generics import ListCreateAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from chat.errors import ChatErrorCode
from chat.frames import message_body
from chat.models import (
    CLIENT_ID_MAX_LENGTH,
    MESSAGE_MAX_LENGTH,
    Membership,
    Message,
    Posting,
    Role,
    Room,
    RoomKind,
)
from chat.presence import online_counts
from chat.selectors import (
    HISTORY_MAX_LIMIT,
    ReadState,
    VisibleRoom,
    member_list,
    message_get,
    message_history,
    room_get,
    room_list,
    seen_by,
)
from chat.services import (
    Poster,
    direct_room_open,
    member_add,
    member_remove,
    member_role_set,
    message_delete,
    message_edit,
    message_not_found,
    message_post,
    read_mark,
    read_state_get,
    room_create,
    room_delete,
    room_join,
    room_not_found,
    room_update,
)
from realtime.kernel import events
from realtime.kernel.events import UNREAD_CAP, bounded_string
from realtime.kernel.listing import Listing
from realtime.kernel.names import ROOM_SLUG_PATTERN

from .declared import DeclaredSerializer
from .direct import DirectReads
from .fields import (
    StrictCharField,
    StrictIntegerField,
    StrictRegexField,
    StringField,
    valid_query,
)
from .pagination import PageNumberPagination, page_body
from .schema import domain_errors

logger = logging.getLogger(__name__)


def _online(slugs: list[str]) -> dict[str, int]:
    try:
        return online_counts(slugs)
    except RedisError:  # presence is live data; the rooms themselves still list
        logger.warning("presence unavailable for room list", exc_info=True)
        return {}


class RoomSerializer(serializers.ModelSerializer):
    online = serializers.SerializerMethodField(help_text="People in the room now (null: unknown)")
    role = serializers.SerializerMethodField(
        help_text="Your role in the room; null when you are not a member (or not signed in)"
    )
    last_read_seq = serializers.IntegerField(
        allow_null=True,
        help_text=(
            "The seq up to which you have read the room; null when you are not a member (and "
            "in the answers of writes, which do not read it)"
        ),
    )
    unread = serializers.IntegerField(
        allow_null=True,
        min_value=0,
        max_value=UNREAD_CAP,
        help_text=(
            f"Messages after `last_read_seq` that others wrote ({UNREAD_CAP}: that many or "
            "more); null as `last_read_seq`"
        ),
    )

    class Meta:
        model = Room
        fields = [
            "slug",
            "title",
            "kind",
            "posting",
            "role",
            "created_at",
            "last_message_at",
            "last_seq",
            "online",
            "last_read_seq",
            "unread",
        ]
        read_only_fields = [
            "kind",
            "created_at",
            "last_message_at",
            "last_seq",
            "online",
            "role",
            "last_read_seq",
            "unread",
        ]
        extra_kwargs = {
            "kind": {
                "help_text": "`public`: anyone may read it; `private`: its members only; "
                "`direct`: its two people only"
            },
            "posting": {
                "help_text": "Who may post among its readers: `anyone` (signed in, or anonymous "
                "where the server allows it), `members`, or `admins` (owners and admins)"
            },
        }

    def get_online(self, room: Room) -> int | None:
        counts: dict[str, int] = self.context.get("online", {})
        return counts.get(room.slug)

    @extend_schema_field(serializers.ChoiceField(choices=Role.choices, allow_null=True))
    def get_role(self, room: Room) -> str | None:
        role: str | None = self.context.get("role")
        return role

    def to_representation(self, instance: Room) -> dict[str, Any]:
        return room_body(instance, self.get_online(instance), self.get_role(instance))


def room_body(
    room: Room, online: int | None, role: str | None, read: ReadState | None = None
) -> dict[str, Any]:
    """A room's `RoomSerializer.Meta.fields`, as DRF's fields give them, without those fields.

    A `ModelSerializer` builds its fields from the model for each serializer made, about 1 ms
    of CPU, a quarter of reading one room. A test holds this to what DRF's fields give.
    """
    return {
        "slug": room.slug,
        "title": room.title,
        "kind": room.kind,
        "posting": room.posting,
        "role": role,
        "created_at": _time(room.created_at),
        "last_message_at": _time(room.last_message_at),
        "last_seq": room.last_seq,
        "online": online,
        "last_read_seq": None if read is None else read.last_read_seq,
        "unread": None if read is None else read.unread,
    }


# DRF's own field, for its time format ("...Z"); a field that is not bound reads no state.
_TIME = serializers.DateTimeField()


def _time(value: datetime | None) -> str | None:
    return None if value is None else _TIME.to_representation(value)


class RoomCreateSerializer(serializers.Serializer):
    slug = StrictRegexField(
        ROOM_SLUG_PATTERN,
        max_length=64,
        required=False,
        help_text="Names the room everywhere; left out, the room gets one nobody can guess",
    )
    title = StrictCharField(max_length=200, required=False, allow_blank=True)
    kind = serializers.ChoiceField(
        choices=[RoomKind.PUBLIC, RoomKind.PRIVATE],
        default=RoomKind.PUBLIC,
        help_text="`private`: only its members may read it, or know it exists",
    )
    posting = serializers.ChoiceField(choices=Posting.choices, default=Posting.ANYONE)


class RoomUpdateSerializer(serializers.Serializer):
    title = StrictCharField(max_length=200, required=False, allow_blank=True)
    posting = serializers.ChoiceField(choices=Posting.choices, required=False)


class MemberUserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class MemberSerializer(serializers.Serializer):
    """A member of a room, with their role."""

    user = MemberUserSerializer()
    role = serializers.ChoiceField(choices=Role.choices)
    joined_at = serializers.DateTimeField()

    def to_representation(self, instance: Membership) -> dict[str, Any]:
        return member_body(instance)


def member_body(member: Membership) -> dict[str, Any]:
    """A membership as `MemberSerializer` declares it."""
    user = member.user
    return {
        "user": {"id": user.pk, "username": user.get_username()},
        "role": member.role,
        "joined_at": _time(member.joined_at),
    }


def _member_bodies(members: list[Membership]) -> list[dict[str, Any]]:
    return [member_body(member) for member in members]


class MemberAddSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False)


class DirectRoomSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150, help_text="The other person")


class MessageSerializer(DeclaredSerializer):
    """A message in a room: what its `chat.message` frame carries."""

    model = events.ChatMessageFrame
    component = "Message"
    exclude = events.FRAME_ENVELOPE

    def declare(self, instance: Message) -> dict[str, Any]:
        # A view that knows the room passes its slug: no query for the message's room.
        return message_body(instance, self.context.get("room") or instance.room.slug)


# The schema documents the bounds; the chat domain checks them (`invalid_message`), as it does
# for a post over the socket, so both transports refuse a bad body with the same code.
@extend_schema_field(bounded_string(MESSAGE_MAX_LENGTH))
class MessageBodyField(StringField):
    pass


@extend_schema_field(bounded_string(CLIENT_ID_MAX_LENGTH))
class ClientIdField(StringField):
    pass


class MessagePostSerializer(serializers.Serializer):
    body = MessageBodyField()
    client_id = ClientIdField(required=False)


class MessageEditSerializer(serializers.Serializer):
    body = MessageBodyField(
        required=False, help_text="The new text; left out, the message is answered as it is"
    )
    client_id = ClientIdField(
        required=False, help_text="A retry with the same one applies once (unique in the room)"
    )


class MessagePageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True)
    last_seq = serializers.IntegerField(help_text="The room's newest seq when this was read")


class HistoryQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        min_value=0, required=False, help_text="Only messages with seq > after, oldest first"
    )
    before = serializers.IntegerField(
        min_value=1, required=False, help_text="Only messages with seq < before"
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=HISTORY_MAX_LIMIT, default=50, help_text="At most this many"
    )


def _room_bodies(rooms: list[VisibleRoom]) -> list[dict[str, Any]]:
    online = _online([seen.room.slug for seen in rooms])
    return [
        room_body(seen.room, online.get(seen.room.slug), seen.role, seen.read) for seen in rooms
    ]


def _visible_body(seen: VisibleRoom) -> dict[str, Any]:
    online = _online([seen.room.slug]).get(seen.room.slug)
    return room_body(seen.room, online, seen.role, seen.read)


def _user(request: Request) -> User | None:
    return request.user if isinstance(request.user, User) else None


def _signed_in(request: Request) -> User:
    user = _user(request)
    assert user is not None  # the view's permission classes let only users through
    return user


def _poster(request: Request) -> Poster:
    """The user, or the client's address as DRF finds it (`NUM_PROXIES` trusted proxies)."""
    return Poster(user=_user(request), address=BaseThrottle().get_ident(request))


def _room_or_404(request: Request, slug: str, *, with_read: bool = False) -> VisibleRoom:
    """The room, if the caller may read it; else exactly what an unknown slug answers."""
    seen = room_get(slug=slug, viewer=_user(request), with_read=with_read)
    if seen is None:
        raise room_not_found(slug)
    return seen


_NOT_FOUND = domain_errors(ChatErrorCode.ROOM_NOT_FOUND)


@extend_schema(tags=["rooms"])
class RoomListView(DirectReads, ListCreateAPIView):
    """Rooms, most recently active first, with how many are in each now."""

    serializer_class = RoomSerializer
    pagination_class = PageNumberPagination

    def get_queryset(self) -> Listing[VisibleRoom]:  # type: ignore[override]  # a page per query
        return room_list(viewer=_user(self.request))

    def read(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        return page_body(self, self.get_queryset(), _room_bodies)

    @extend_schema(
        operation_id="rooms_list",
        summary="List rooms",
        description="Every public room, and the private and direct rooms you are a member of.",
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="rooms_create",
        summary="Create a room",
        description=(
            "Signed in; you become the room's owner. The slug (`[A-Za-z0-9_-]`, 1-64) names "
            "the room everywhere; slugs are one namespace, so a slug taken by a private room is "
            "`room_exists` too (leave it out for one nobody can guess)."
        ),
        request=RoomCreateSerializer,
        responses={
            201: RoomSerializer,
            **domain_errors(ChatErrorCode.INVALID_ROOM, ChatErrorCode.ROOM_EXISTS),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        incoming = RoomCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        room = room_create(created_by=_user(request), **incoming.validated_data)
        # Its creator owns it, and has read all of nothing.
        read = None if room.created_by_id is None else ReadState(0, 0)
        return Response(room_body(room, 0, Role.OWNER, read), status=status.HTTP_201_CREATED)


class RoomDetailView(DirectReads):
    """One room, and its settings."""

    def read(self, request: Request, slug: str) -> Any:
        return _visible_body(_room_or_404(request, slug, with_read=True))

    @extend_schema(
        operation_id="rooms_retrieve",
        summary="Get a room",
        tags=["rooms"],
        responses=RoomSerializer,
    )
    def get(self, request: Request, slug: str) -> Response:
        return super().get(request, slug=slug)

    @extend_schema(
        operation_id="rooms_update",
        summary="Change a room's settings",
        description="The room's owners and admins: its title, and who may post in it.",
        tags=["rooms"],
        request=RoomUpdateSerializer,
        responses={
            200: RoomSerializer,
            **domain_errors(
                ChatErrorCode.INVALID_ROOM,
                ChatErrorCode.ROOM_ADMIN_REQUIRED,
                ChatErrorCode.ROOM_NOT_FOUND,
            ),
        },
    )
    def patch(self, request: Request, slug: str) -> Response:
        incoming = RoomUpdateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        seen = room_update(slug=slug, actor=_signed_in(request), **incoming.validated_data)
        return Response(_visible_body(seen))

    @extend_schema(
        operation_id="rooms_destroy",
        summary="Delete a room",
        description=(
            "Its owners only; a direct room is not deleted. Its messages, their edits and its "
            "memberships go with it. Every socket subscribed to it is told `unsubscribed` with "
            "`reason: deleted`, and each member's `rooms:mine` gets `room.removed`."
        ),
        tags=["rooms"],
        responses={
            204: None,
            **domain_errors(ChatErrorCode.ROOM_OWNER_REQUIRED, ChatErrorCode.ROOM_NOT_FOUND),
        },
    )
    def delete(self, request: Request, slug: str) -> Response:
        room_delete(slug=slug, actor=_signed_in(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["rooms"])
class RoomMembersView(DirectReads, ListCreateAPIView):
    """A room's members (whoever may read the room sees them), and adding one."""

    serializer_class = MemberSerializer
    pagination_class = PageNumberPagination

    def read(self, request: Request, slug: str) -> Any:
        room = _room_or_404(request, slug).room
        return page_body(self, member_list(room=room), _member_bodies)

    @extend_schema(
        operation_id="rooms_members_list",
        summary="List a room's members",
        description="Owners first, then admins, then members, each by when they joined.",
        responses={200: MemberSerializer(many=True), **_NOT_FOUND},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="rooms_members_create",
        summary="Add (invite) a member",
        description=(
            "The room's owners (any role) and admins (`member` only). 201 when added; 200 "
            "with the membership as it is when they were a member already (their role is "
            "changed with `PATCH .../members/{user_id}/`). A direct room keeps its two people."
        ),
        request=MemberAddSerializer,
        responses={
            201: MemberSerializer,
            200: MemberSerializer,
            **domain_errors(
                ChatErrorCode.INVALID_MEMBERSHIP,
                ChatErrorCode.ROOM_ADMIN_REQUIRED,
                ChatErrorCode.ROOM_NOT_FOUND,
                ChatErrorCode.USER_NOT_FOUND,
            ),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        incoming = MemberAddSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        member, added = member_add(slug=slug, actor=_signed_in(request), **incoming.validated_data)
        return Response(
            member_body(member), status=status.HTTP_201_CREATED if added else status.HTTP_200_OK
        )


class RoomMemberView(APIView):
    """One member: their role, or removing them (or yourself: leaving)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="rooms_members_update",
        summary="Change a member's role",
        description="The room's owners. A room keeps an owner.",
        tags=["rooms"],
        request=MemberRoleSerializer,
        responses={
            200: MemberSerializer,
            **domain_errors(
                ChatErrorCode.INVALID_MEMBERSHIP,
                ChatErrorCode.ROOM_ADMIN_REQUIRED,
                ChatErrorCode.ROOM_NOT_FOUND,
                ChatErrorCode.LAST_OWNER,
            ),
        },
    )
    def patch(self, request: Request, slug: str, user_id: int) -> Response:
        incoming = MemberRoleSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        member = member_role_set(
            slug=slug, actor=_signed_in(request), user_id=user_id, **incoming.validated_data
        )
        return Response(member_body(member))

    @extend_schema(
        operation_id="rooms_members_destroy",
        summary="Remove a member, or leave",
        description=(
            "Your own id: leave the room. Otherwise the room's owners (anyone) and admins "
            "(members). A room keeps an owner, a direct room its two people. Whoever may no "
            "longer read the room has their socket subscriptions to it ended "
            "(`unsubscribed` with a `reason`)."
        ),
        tags=["rooms"],
        responses={
            204: None,
            **domain_errors(
                ChatErrorCode.INVALID_MEMBERSHIP,
                ChatErrorCode.ROOM_ADMIN_REQUIRED,
                ChatErrorCode.ROOM_NOT_FOUND,
                ChatErrorCode.LAST_OWNER,
            ),
        },
    )
    def delete(self, request: Request, slug: str, user_id: int) -> Response:
        member_remove(slug=slug, actor=_signed_in(request), user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoomJoinView(APIView):
    """Joining a public room (members may post where only members may)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="rooms_join",
        summary="Join a public room",
        description=(
            "201 when you joined, 200 when you were a member already. A private or direct "
            "room takes only members its owners add: to anyone else it is an unknown room."
        ),
        tags=["rooms"],
        request=None,
        responses={201: MemberSerializer, 200: MemberSerializer, **_NOT_FOUND},
    )
    def post(self, request: Request, slug: str) -> Response:
        member, joined = room_join(slug=slug, user=_signed_in(request))
        return Response(
            member_body(member), status=status.HTTP_201_CREATED if joined else status.HTTP_200_OK
        )


class DirectRoomsView(APIView):
    """Direct rooms: one per pair of people."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="direct_rooms_open",
        summary="Open a direct room with someone",
        description=(
            "The room of you and `username`: 201 when it was made now, 200 with the same room "
            "every time after (either of you opening it). Its slug tells nobody who is in it."
        ),
        tags=["rooms"],
        request=DirectRoomSerializer,
        responses={
            201: RoomSerializer,
            200: RoomSerializer,
            **domain_errors(ChatErrorCode.INVALID_MEMBERSHIP, ChatErrorCode.USER_NOT_FOUND),
        },
    )
    def post(self, request: Request) -> Response:
        incoming = DirectRoomSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        seen, made = direct_room_open(opener=_signed_in(request), **incoming.validated_data)
        return Response(
            _visible_body(seen), status=status.HTTP_201_CREATED if made else status.HTTP_200_OK
        )


class RoomMessagesView(DirectReads):
    """A room's history by `seq`, and posting to it (also sent to the room's sockets)."""

    permission_classes = [AllowAny]  # who may post, and how often, the service decides

    def read(self, request: Request, slug: str) -> Any:
        query = valid_query(HistoryQuerySerializer, request)
        page = message_history(slug=slug, viewer=_user(request), **query)
        if page is None:
            raise room_not_found(slug)
        # Each message is already its body as `MessageSerializer` declares it.
        return {"results": page.messages, "last_seq": page.last_seq}

    @extend_schema(
        operation_id="rooms_messages_list",
        summary="Read a room's history by seq",
        tags=["rooms"],
        parameters=[HistoryQuerySerializer],
        responses=MessagePageSerializer,
    )
    def get(self, request: Request, slug: str) -> Response:
        return super().get(request, slug=slug)

    @extend_schema(
        operation_id="rooms_messages_create",
        summary="Post a message",
        tags=["rooms"],
        request=MessagePostSerializer,
        responses={
            201: MessageSerializer,
            200: MessageSerializer,
            **domain_errors(
                ChatErrorCode.INVALID_MESSAGE,
                ChatErrorCode.POSTING_NOT_ALLOWED,
                ChatErrorCode.CLIENT_ID_CONFLICT,
                ChatErrorCode.RATE_LIMITED,
            ),
        },
        examples=[
            OpenApiExample(
                "Post with a retry key",
                value={"body": "Hello, room!", "client_id": "3f0c2a9e-5b7d-4e61-9d1a-2c8e4b6f7a10"},
                request_only=True,
            ),
            OpenApiExample(
                "Posted",
                response_only=True,
                status_codes=[201],
                value={
                    "id": 318,
                    "room": "lobby",
                    "seq": 42,
                    "author": {"id": 1, "username": "demo"},
                    "author_name": "demo",
                    "body": "Hello, room!",
                    "created_at": "2026-01-05T10:00:00.000Z",
                    "client_id": "3f0c2a9e-5b7d-4e61-9d1a-2c8e4b6f7a10",
                },
            ),
        ],
        description=(
            "201 when posted; 200 with the earlier message when `client_id` was seen. Posts are "
            "rate limited per user, or per address when anonymous, over REST and the sockets "
            "together (429 `rate_limited` with `Retry-After`)."
        ),
    )
    def post(self, request: Request, slug: str) -> Response:
        incoming = MessagePostSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        room = _room_or_404(request, slug).room
        result = message_post(room=room, poster=_poster(request), **incoming.validated_data)
        return Response(
            MessageSerializer(result.message, context={"room": room.slug}).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


_MESSAGE_CHANGE_ERRORS = (
    ChatErrorCode.MESSAGE_NOT_FOUND,
    ChatErrorCode.NOT_MESSAGE_AUTHOR,
    ChatErrorCode.INVALID_MESSAGE,
)


class RoomMessageView(APIView):
    """One message: editing its text, or deleting it (a tombstone stays)."""

    permission_classes = [AllowAny]  # who may change a message, the service decides

    @extend_schema(
        operation_id="rooms_messages_update",
        summary="Edit a message",
        description=(
            "Its author only. The message keeps its `seq`; its `body` and `edited_at` change, "
            "and the edit takes the room's next `seq` (sent to the room's sockets as "
            "`message.edited`). A message that is not in a room you may read answers "
            "`message_not_found`, as one that does not exist. Edits are rate limited with "
            "posts (429 `rate_limited`). A retry with the same `client_id` applies once. "
            "Without `body`, the message as it is, to whoever may read it."
        ),
        tags=["rooms"],
        request=MessageEditSerializer,
        responses={
            200: MessageSerializer,
            **domain_errors(
                *_MESSAGE_CHANGE_ERRORS,
                ChatErrorCode.MESSAGE_DELETED,
                ChatErrorCode.CLIENT_ID_CONFLICT,
                ChatErrorCode.RATE_LIMITED,
            ),
        },
    )
    def patch(self, request: Request, slug: str, message_id: int) -> Response:
        incoming = MessageEditSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        if "body" in incoming.validated_data:
            message = message_edit(
                slug=slug, poster=_poster(request), message_id=message_id, **incoming.validated_data
            ).message
        else:
            found = message_get(slug=slug, message_id=message_id, viewer=_user(request))
            if found is None:
                raise message_not_found(slug, message_id)
            message = found
        return Response(MessageSerializer(message, context={"room": slug}).data)

    @extend_schema(
        operation_id="rooms_messages_destroy",
        summary="Delete a message",
        description=(
            "Its author, or the room's owners and admins. The message stays in the history as "
            "a tombstone (`deleted: true`, an empty `body`); the deletion takes the room's next "
            "`seq` (`message.deleted` on the sockets). Deleting it again changes nothing (204)."
        ),
        tags=["rooms"],
        responses={204: None, **domain_errors(*_MESSAGE_CHANGE_ERRORS)},
    )
    def delete(self, request: Request, slug: str, message_id: int) -> Response:
        message_delete(slug=slug, poster=_poster(request), message_id=message_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReadStateSerializer(serializers.Serializer):
    """A member's read position in a room, and what is left unread."""

    last_read_seq = serializers.IntegerField(min_value=0, help_text="Read up to this seq")
    unread = serializers.IntegerField(
        min_value=0,
        max_value=UNREAD_CAP,
        help_text=f"Messages after it that others wrote ({UNREAD_CAP}: that many or more)",
    )


class ReadPutSerializer(serializers.Serializer):
    last_read_seq = StrictIntegerField(
        min_value=0,
        max_value=2**63 - 1,
        help_text="You have read up to this seq; one past the room's last counts as its last",
    )


def _read_body(state: ReadState) -> dict[str, int]:
    return {"last_read_seq": state.last_read_seq, "unread": state.unread}


_READ_ERRORS = domain_errors(ChatErrorCode.ROOM_NOT_FOUND, ChatErrorCode.NOT_A_MEMBER)


class RoomReadView(APIView):
    """Your read position in a room (members): read it, or move it forward."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="rooms_read_retrieve",
        summary="Your read position and unread count",
        description=(
            "Members only: a public room you read without being a member is `not_a_member` "
            "(join it to keep read state); a room you may not read is `not_found`."
        ),
        tags=["rooms"],
        responses={200: ReadStateSerializer, **_READ_ERRORS},
    )
    def get(self, request: Request, slug: str) -> Response:
        found = read_state_get(slug=slug, user=_signed_in(request))
        return Response(_read_body(found.state))

    @extend_schema(
        operation_id="rooms_read_update",
        summary="Mark the room read up to a seq",
        description=(
            "Moves your position forward: never back, never past the room's last seq (a seq "
            "beyond it counts as the last). Stored at most once a second per member and room "
            "(`CHAT_READ_WINDOW`), the latest value a moment later: send it as often as you "
            "like. The answer is your position as it is or is about to be; your other sockets "
            "are sent `read`."
        ),
        tags=["rooms"],
        request=ReadPutSerializer,
        responses={200: ReadStateSerializer, **_READ_ERRORS},
    )
    def put(self, request: Request, slug: str) -> Response:
        incoming = ReadPutSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        seq = incoming.validated_data["last_read_seq"]
        found = read_mark(slug=slug, user=_signed_in(request), seq=seq)
        return Response(_read_body(found.state))


class ReaderSerializer(serializers.Serializer):
    user = MemberUserSerializer()
    last_read_seq = serializers.IntegerField(min_value=0)


class ReadersSerializer(serializers.Serializer):
    results = ReaderSerializer(many=True)
    last_seq = serializers.IntegerField(help_text="The room's newest seq when this was read")


class RoomReadersView(APIView):
    """ "Seen by": how far each member has read the room."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="rooms_readers_list",
        summary="Who has read how far (seen by)",
        description=(
            "Each member's read position, furthest first: a message with seq N is seen by the "
            "members whose `last_read_seq` is N or more. For rooms of up to "
            "`CHAT_SEEN_BY_MAX_MEMBERS` (50) members; larger ones answer 409 `room_too_large`."
        ),
        tags=["rooms"],
        responses={
            200: ReadersSerializer,
            **domain_errors(ChatErrorCode.ROOM_NOT_FOUND, ChatErrorCode.ROOM_TOO_LARGE),
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        room = _room_or_404(request, slug).room
        readers = seen_by(room=room)
        return Response(
            {
                "results": [
                    {
                        "user": {"id": reader.user_id, "username": reader.username},
                        "last_read_seq": reader.last_read_seq,
                    }
                    for reader in readers
                ],
                "last_seq": room.last_seq,
            }
        )
