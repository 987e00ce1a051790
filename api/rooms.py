"""`/api/rooms/`: list, create and read rooms; read and post their messages."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from redis.exceptions import RedisError
from rest_framework import serializers, status
from rest_framework.generics import ListCreateAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from chat.errors import ChatError, ChatErrorCode
from chat.frames import message_body
from chat.models import CLIENT_ID_MAX_LENGTH, MESSAGE_MAX_LENGTH, Message, Room
from chat.presence import online_counts
from chat.selectors import (
    HISTORY_MAX_LIMIT,
    message_history,
    room_get,
    room_list,
)
from chat.services import Poster, message_post, room_create
from realtime.kernel import events
from realtime.kernel.events import bounded_string
from realtime.kernel.listing import Listing
from realtime.kernel.names import ROOM_SLUG_PATTERN

from .declared import DeclaredSerializer
from .direct import DirectReads
from .fields import StrictCharField, StrictRegexField, StringField, query_data
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

    class Meta:
        model = Room
        fields = ["slug", "title", "created_at", "last_message_at", "last_seq", "online"]
        read_only_fields = ["created_at", "last_message_at", "last_seq", "online"]

    def get_online(self, room: Room) -> int | None:
        counts: dict[str, int] = self.context.get("online", {})
        return counts.get(room.slug)

    def to_representation(self, instance: Room) -> dict[str, Any]:
        return room_body(instance, self.get_online(instance))


def room_body(room: Room, online: int | None) -> dict[str, Any]:
    """A room's `RoomSerializer.Meta.fields`, as DRF's fields give them, without those fields.

    A `ModelSerializer` builds its fields from the model for each serializer made, about 1 ms
    of CPU, a quarter of reading one room. A test holds this to what DRF's fields give.
    """
    return {
        "slug": room.slug,
        "title": room.title,
        "created_at": _time(room.created_at),
        "last_message_at": _time(room.last_message_at),
        "last_seq": room.last_seq,
        "online": online,
    }


# DRF's own field, for its time format ("...Z"); a field that is not bound reads no state.
_TIME = serializers.DateTimeField()


def _time(value: datetime | None) -> str | None:
    return None if value is None else _TIME.to_representation(value)


class RoomCreateSerializer(serializers.Serializer):
    slug = StrictRegexField(ROOM_SLUG_PATTERN, max_length=64)
    title = StrictCharField(max_length=200, required=False, allow_blank=True)


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


def _room_bodies(rooms: list[Room]) -> list[dict[str, Any]]:
    online = _online([room.slug for room in rooms])
    return [room_body(room, online.get(room.slug)) for room in rooms]


def _user(request: Request) -> User | None:
    return request.user if isinstance(request.user, User) else None


def _poster(request: Request) -> Poster:
    """The user, or the client's address as DRF finds it (`NUM_PROXIES` trusted proxies)."""
    return Poster(user=_user(request), address=BaseThrottle().get_ident(request))


def _room_or_404(slug: str) -> Room:
    room = room_get(slug=slug)
    if room is None:
        raise ChatError(ChatErrorCode.ROOM_NOT_FOUND, f"No room {slug!r}.")
    return room


@extend_schema(tags=["rooms"])
class RoomListView(DirectReads, ListCreateAPIView):
    """Rooms, most recently active first, with how many are in each now."""

    serializer_class = RoomSerializer
    pagination_class = PageNumberPagination

    def get_queryset(self) -> Listing[Room]:  # type: ignore[override]  # a page per query
        return room_list()

    def read(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        return page_body(self, self.get_queryset(), _room_bodies)

    @extend_schema(operation_id="rooms_list", summary="List rooms")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="rooms_create",
        summary="Create a room",
        description="Signed in. The slug (`[A-Za-z0-9_-]`, 1-64) names the room everywhere.",
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
        return Response(RoomSerializer(room).data, status=status.HTTP_201_CREATED)


class RoomDetailView(DirectReads):
    """One room."""

    permission_classes = [AllowAny]

    def read(self, request: Request, slug: str) -> Any:
        return room_body(_room_or_404(slug), _online([slug]).get(slug))

    @extend_schema(
        operation_id="rooms_retrieve",
        summary="Get a room",
        tags=["rooms"],
        responses=RoomSerializer,
    )
    def get(self, request: Request, slug: str) -> Response:
        return super().get(request, slug=slug)


class RoomMessagesView(DirectReads):
    """A room's history by `seq`, and posting to it (also sent to the room's sockets)."""

    permission_classes = [AllowAny]  # who may post, and how often, the service decides

    def read(self, request: Request, slug: str) -> Any:
        query = HistoryQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        page = message_history(slug=slug, **query.validated_data)
        if page is None:
            raise ChatError(ChatErrorCode.ROOM_NOT_FOUND, f"No room {slug!r}.")
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
        room = _room_or_404(slug)
        result = message_post(room=room, poster=_poster(request), **incoming.validated_data)
        return Response(
            MessageSerializer(result.message, context={"room": room.slug}).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )
