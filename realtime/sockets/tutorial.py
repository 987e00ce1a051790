"""`/ws/chat/<room>/`: the tutorial's own protocol, `{"message": "..."}` both ways.

Its messages are the room's messages: stored, numbered and seen by REST and the gateway.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from pydantic import ValidationError

from chat.errors import ChatError
from chat.selectors import room_last_seq
from chat.services import Post, room_ensure
from realtime.kernel import events
from realtime.kernel.codes import AnyErrorCode, CloseCode, ErrorCode
from realtime.kernel.names import ROOM_SLUG_PATTERN

from .consumers import NotParsed, RoomSocket
from .database import on_database_thread
from .posting import post_queue
from .subscription import TUTORIAL

SLUG = re.compile(ROOM_SLUG_PATTERN)


class TutorialChatConsumer(RoomSocket):
    """Joins the room named in the URL (creating it, as the tutorial's pages do)."""

    async def connect(self) -> None:
        slug = self.scope["url_route"]["kwargs"]["room_name"]
        if not SLUG.fullmatch(slug):
            # The tutorial's `\w+` admits names no room can have; say so with a close code.
            await self.accept()
            await self.close(CloseCode.INVALID_ROOM)
            return
        try:
            room = await on_database_thread(room_ensure)(slug=slug)
        except ChatError:
            # Public rooms only: the name is taken by a room this route cannot serve.
            await self.accept()
            await self.close(CloseCode.INVALID_ROOM)
            return
        await self.accept()
        subscription = await self.join_room(slug, room.pk, TUTORIAL)
        subscription.go_live(await on_database_thread(room_last_seq)(room_id=room.pk))
        self.room = room
        await self.enter_presence(slug)

    async def handle(self, data: dict[str, Any]) -> None:
        try:
            frame = events.TutorialMessageFrame.model_validate(data)
        except ValidationError as exc:
            raise NotParsed(ErrorCode.INVALID_FRAME, 'Send {"message": "<text>"}.') from exc
        outcome = await post_queue().post(Post(self.room.slug, self.poster(), frame.message))
        if isinstance(outcome, ChatError):
            raise outcome

    def tell_room_ended(self, slug: str, reason: str) -> None:
        """The tutorial's protocol has no such frame (and serves public rooms only): close."""
        self.closing = asyncio.ensure_future(self._leave_and_close(CloseCode.INVALID_ROOM))

    async def refuse(
        self,
        code: AnyErrorCode,
        detail: str,
        ref: str | int | None = None,
        retry_after: int | None = None,  # the detail says it too, which the page shows
    ) -> None:
        frame = events.TutorialErrorFrame(message=f"[not sent: {detail}]", error=code)
        await self.send_text(json.dumps(events.dump(frame)))
