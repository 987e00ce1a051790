"""`/ws/`: one socket per client, JSON frames parsed against the allow-list in `events`."""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from pydantic import ValidationError

from . import events
from .middleware import user_for_token

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024


def user_ref(user: AbstractBaseUser | AnonymousUser | None) -> events.UserRef | None:
    if user is None or not user.is_authenticated:
        return None
    return events.UserRef(id=user.pk, username=user.get_username())


class GatewayConsumer(AsyncWebsocketConsumer):
    """Accepts the socket, greets it, then serves the client frames of `events.ClientFrame`."""

    async def connect(self) -> None:
        await self.accept()
        await self.send_frame(events.HelloFrame(user=user_ref(self.scope.get("user"))))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            await self.handle_frame(text_data if text_data is not None else bytes_data)
        except Exception:
            # A bug must cost one request, not the connection; the traceback stays in the log.
            logger.exception("gateway frame failed")
            await self.send_error(events.ErrorCode.INTERNAL_ERROR, "The server failed this frame.")

    async def handle_frame(self, raw: str | bytes | None) -> None:
        if raw is None or len(raw) > MAX_FRAME_BYTES:
            await self.send_error(events.ErrorCode.FRAME_TOO_LARGE, "Frame exceeds 64 KiB.")
            return
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            await self.send_error(events.ErrorCode.INVALID_JSON, "Frame is not valid JSON.")
            return
        ref = _valid_ref(data.get("ref") if isinstance(data, dict) else None)
        if not isinstance(data, dict) or data.get("type") not in events.CLIENT_FRAME_TYPES:
            await self.send_error(events.ErrorCode.UNKNOWN_TYPE, "Unknown frame type.", ref)
            return
        try:
            frame = events.client_frame_adapter.validate_python(data)
        except ValidationError as exc:
            await self.send_error(events.ErrorCode.INVALID_FRAME, _describe(exc), ref)
            return
        if isinstance(frame, events.PingFrame):
            await self.send_frame(events.PongFrame(ref=frame.ref))
        elif isinstance(frame, events.AuthFrame):
            await self.authenticate(frame)

    async def authenticate(self, frame: events.AuthFrame) -> None:
        user = await user_for_token(frame.token)
        if user is None:
            await self.send_error(events.ErrorCode.AUTH_FAILED, "Invalid token.", frame.ref)
            return
        self.scope["user"] = user
        ref = user_ref(user)
        assert ref is not None
        await self.send_frame(events.AuthenticatedFrame(user=ref, ref=frame.ref))

    async def send_frame(self, frame: events.Frame) -> None:
        await self.send(text_data=json.dumps(events.dump(frame)))

    async def send_error(
        self, code: events.ErrorCode, detail: str, ref: str | int | None = None
    ) -> None:
        await self.send_frame(events.ErrorFrame(code=code, detail=detail, ref=ref))


def _valid_ref(value: Any) -> str | int | None:
    """The request's `ref`, if it is one we can echo (even when the rest of the frame is bad)."""
    try:
        return events.ref_adapter.validate_python(value)
    except ValidationError:
        return None


def _describe(exc: ValidationError) -> str:
    first: dict[str, Any] = dict(exc.errors()[0])
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
