"""What both socket routes share: frame intake with limits, room subscriptions, clean-up."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import InterfaceError, OperationalError
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat.services import Poster
from realtime.kernel import events, lifecycle, logcontext, metrics
from realtime.kernel.codes import AnyErrorCode, CloseCode, ErrorCode
from realtime.kernel.errors import DomainError
from realtime.kernel.names import account_group, room_channel, room_group

from . import drain, presence
from .account_feed import AccountFeed
from .accounts import fingerprint
from .channels_internals import LayerlessWebsocketConsumer
from .hub import get_hub
from .limits import TokenBucket
from .log_feed import get_log_feeds
from .middleware import bearer_token, session_key
from .outbox import Outbox
from .room_feed import RoomFeed
from .subscription import Subscription

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024
# Frames refused by the rate limit, with no pause of a second between them, after which the
# socket counts as flooding and is closed.
FLOOD_REFUSALS = 100
# Failures of Redis or the database, not of the request: the client may retry it.
UNAVAILABLE_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    OperationalError,
    InterfaceError,
    TimeoutError,
)


class NotParsed(Exception):
    """A client frame that cannot be served, with the error code to answer."""

    def __init__(self, code: AnyErrorCode, detail: str, ref: str | int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.ref = ref


def user_ref(user: AbstractBaseUser | AnonymousUser | None) -> events.UserRef | None:
    if user is None or not user.is_authenticated:
        return None
    return events.UserRef(id=user.pk, username=user.get_username())


REF_PROBE_BYTES = 1024


def _ref_of_small_frame(raw: str | None) -> str | int | None:
    """The `ref` of a short text frame, if it has a valid one (cheap: big frames are skipped)."""
    if raw is None or len(raw) > REF_PROBE_BYTES or '"ref"' not in raw:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return valid_ref(data.get("ref")) if isinstance(data, dict) else None


def valid_ref(value: Any) -> str | int | None:
    """A request's `ref`, if it is one we can echo (even when the rest of the frame is bad)."""
    try:
        return events.ref_adapter.validate_python(value)
    except ValidationError:
        return None


def client_address(scope: dict[str, Any]) -> str:
    """The client's address (behind a proxy, the one uvicorn's `--proxy-headers` reads)."""
    client = scope.get("client") or ("unknown", 0)
    return str(client[0])


def account_of(scope: dict[str, Any], identity: events.UserRef | None) -> str:
    """Whose socket this is for the connection cap: the user, else the client's address."""
    if identity is not None:
        return f"user:{identity.id}"
    return f"ip:{client_address(scope)}"


def credential_of(scope: dict[str, Any]) -> str | None:
    """Fingerprint of the token or session a signed-in socket was opened with."""
    key = bearer_token(scope) if scope.get("auth_method") == "token" else session_key(scope)
    return fingerprint(key) if key else None


def _reject_constant(name: str) -> Any:
    """`NaN` and `Infinity` are not JSON, though Python's parser accepts them."""
    raise ValueError(f"{name} is not JSON")


# One parser for every frame: `json.loads` with a keyword makes a decoder for each call
# (about a third of what parsing a `chat.send` cost).
_FRAME_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _frame_json(raw: str | bytes) -> Any:
    """A frame's JSON value, read as `json.loads(raw, parse_constant=_reject_constant)` reads it."""
    if isinstance(raw, bytes):
        raw = raw.decode(json.detect_encoding(raw), "surrogatepass")
    return _FRAME_DECODER.decode(raw)


class RoomSocket(LayerlessWebsocketConsumer):
    """A JSON socket that may join rooms through the process hub."""

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        metrics.SOCKETS_OPEN.inc()
        self.counted = True
        drain.install()
        if lifecycle.draining():  # this process is going away: to another one at once
            await self.accept()
            await super().close(CloseCode.SERVICE_RESTART)
            return
        drain.OPEN.add(self)
        self.hub = get_hub()
        self.conn_id = self.hub.new_connection_id()
        self.user = self.scope.get("user")
        self.identity = user_ref(self.user)
        # This socket's task: its log lines name it, and its user.
        logcontext.bind(conn_id=self.conn_id, user_id=self.identity.id if self.identity else None)
        self.subscriptions: dict[str, Subscription] = {}  # rooms, by slug
        self.group_subscriptions: dict[str, tuple[str, Subscription]] = {}  # jobs, by channel
        self.log_subscriptions: dict[str, tuple[str, Subscription]] = {}  # logs, by channel
        self.bucket = TokenBucket(settings.SWITCHBOARD_WS_RATE, settings.SWITCHBOARD_WS_BURST)
        self.refused = 0
        self.last_refusal = 0.0
        self.outbox = Outbox(
            self._write, limit=settings.SWITCHBOARD_WS_BACKLOG, on_overflow=self._too_slow
        )
        self.closing: asyncio.Task[None] | None = None
        self.leaving: set[asyncio.Task[None]] = set()  # rooms this socket was let go from
        self.credential = credential_of(self.scope) if self.identity else None
        self.account: str | None = None
        if not await self.open_account(account_of(self.scope, self.identity)):
            await self.accept()
            await self.close(CloseCode.TOO_MANY_CONNECTIONS)
            return
        await super().websocket_connect(message)

    async def open_account(self, account: str) -> bool:
        """Count this socket against `account`'s cap and follow the user's sign-outs."""
        try:
            if not await self.hub.admit(account, self.conn_id):
                logger.info("refusing %s: %s has too many sockets open", self.conn_id, account)
                return False
            self.account = account
            if self.identity is not None:
                # The user's credential revocations reach this socket from now on.
                await self.hub.join(account_group(self.identity.id), self, AccountFeed.open)
        except Exception:  # Redis down: serve the socket uncounted rather than refuse it
            logger.warning("socket accounting failed for %s", account, exc_info=True)
        return True

    async def close_account(self) -> None:
        try:
            if self.account is not None:
                await self.hub.release(self.account, self.conn_id)
            if self.identity is not None:
                await self.hub.leave(account_group(self.identity.id), self)
        except Exception:
            logger.warning("socket accounting clean-up failed", exc_info=True)
        self.account = None

    def revoked(self) -> None:
        """The session or token this socket was opened with has ended (signed out)."""
        logger.info("closing %s: its credentials were revoked", self.conn_id)
        self.closing = asyncio.ensure_future(self._leave_and_close(CloseCode.SIGNED_OUT))

    def room_read(self, event: dict[str, Any]) -> None:
        """The user's read position in a room moved: nothing here (the gateway tells)."""

    def room_state(self, event: dict[str, Any]) -> None:
        """One of the user's rooms changed: nothing here (the gateway's `rooms:mine` tells)."""

    def room_removed(self, event: dict[str, Any]) -> None:
        """A room is no longer the user's: nothing here (the gateway's `rooms:mine` tells)."""

    def _write(self, text: str) -> Coroutine[Any, Any, None]:
        # Straight to the server's ASGI `send`: this runs once per recipient of every message.
        return self.base_send({"type": "websocket.send", "text": text})

    def push_text(self, text: str) -> None:
        """Queue a frame for this socket without waiting (what the hub's feeds call)."""
        self.outbox.push(text)

    async def send_text(self, text: str) -> None:
        self.outbox.push(text)

    async def send_frame(self, frame: events.Frame) -> None:
        self.outbox.push(json.dumps(events.dump(frame)))

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.outbox.close()  # what it still holds would follow the close frame: drop it
        await super().close(code, reason)

    def _too_slow(self) -> None:
        """The client stopped reading while frames piled up: leave every feed, then close."""
        logger.info("closing %s: it does not read fast enough", self.conn_id)
        self.closing = asyncio.ensure_future(self._leave_and_close(CloseCode.TOO_SLOW))

    async def _leave_and_close(self, code: int) -> None:
        await self.leave_everything()
        await self.close(code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.bucket.take():
            now = time.monotonic()
            if now - self.last_refusal > 1.0:
                self.refused = 0
            self.last_refusal = now
            self.refused += 1
            metrics.RATE_LIMITED.labels("socket_frames").inc()
            if self.refused >= FLOOD_REFUSALS:
                await self.close(CloseCode.FLOODING)
                return
            # A request with a `ref` is told it was refused, so its sender can retry it;
            # other refused frames get one error per streak (no amplification of a flood).
            ref = _ref_of_small_frame(text_data)
            if ref is not None or self.refused == 1:
                await self.refuse(ErrorCode.RATE_LIMITED, "Too many frames; slow down.", ref)
            return
        data: dict[str, Any] = {}
        try:
            data = self.parse(text_data if text_data is not None else bytes_data)
            kind = data.get("type")
            metrics.FRAMES_IN.labels(kind if kind in events.CLIENT_FRAME_TYPES else "other").inc()
            await self.handle(data)
        except NotParsed as problem:
            await self.refuse(problem.code, problem.detail, problem.ref)
        except DomainError as refusal:  # a domain rule said no: its code goes out unchanged
            ref = valid_ref(data.get("ref"))
            await self.refuse(refusal.code, refusal.detail, ref, refusal.retry_after)
        except UNAVAILABLE_ERRORS as exc:
            # Redis or the database is away: nothing was done, and the same request may
            # succeed in a moment.
            logger.warning("socket frame failed, a service is unavailable: %r", exc)
            if isinstance(exc, OperationalError | InterfaceError):
                metrics.DATABASE_ERRORS.inc()
            else:
                metrics.REDIS_ERRORS.inc()
            await self.refuse(
                ErrorCode.UNAVAILABLE,
                "A service the server needs is unavailable; try again shortly.",
                valid_ref(data.get("ref")),
            )
        except Exception:
            # A bug costs one request, not the connection; the traceback stays in the log.
            logger.exception("socket frame failed")
            await self.refuse(
                ErrorCode.INTERNAL_ERROR,
                "The server failed this frame.",
                valid_ref(data.get("ref")),
            )

    def parse(self, raw: str | bytes | None) -> dict[str, Any]:
        # The size is checked before parsing; nesting and huge numbers fail inside `loads`.
        if raw is None or len(raw) > MAX_FRAME_BYTES:
            raise NotParsed(ErrorCode.FRAME_TOO_LARGE, "Frame exceeds 64 KiB.")
        try:
            data = _frame_json(raw)
        except (ValueError, RecursionError) as exc:
            raise NotParsed(ErrorCode.INVALID_JSON, "Frame is not valid JSON.") from exc
        if not isinstance(data, dict):
            raise NotParsed(ErrorCode.INVALID_FRAME, "Frame must be a JSON object.")
        return data

    async def handle(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    async def refuse(
        self,
        code: AnyErrorCode,
        detail: str,
        ref: str | int | None = None,
        retry_after: int | None = None,
    ) -> None:
        frame = events.ErrorFrame(code=code, detail=detail, ref=ref, retry_after=retry_after)
        await self.send_frame(frame)

    def poster(self) -> Poster:
        """Who posts from this socket: its user, or (anonymous) its client's address."""
        user = self.user if self.identity is not None else None
        return Poster(user=user, address=client_address(self.scope))

    async def join_room(self, slug: str, room_id: int, fmt: str) -> Subscription:
        """Subscribe to a room's live feed; messages wait in the subscription until `go_live`."""
        subscription = Subscription(self.push_text, fmt, self.conn_id, self.identity)
        subscription.ended = lambda reason: self.room_access_ended(slug, subscription, reason)
        self.subscriptions[slug] = subscription
        try:
            await self.hub.join(
                room_group(slug), subscription, RoomFeed.open, slug=slug, room_id=room_id
            )
        except BaseException:
            del self.subscriptions[slug]
            raise
        return subscription

    def room_access_ended(self, slug: str, subscription: Subscription, reason: str) -> None:
        """Its user may no longer read the room (removed, or left): the room's feed has let go
        of the subscription; the socket drops it, leaves the room's presence and says why."""
        if self.subscriptions.get(slug) is not subscription:
            return
        if subscription.pending is not None:
            subscription.end_reason = reason  # the subscribe under way ends it once answered
            return
        del self.subscriptions[slug]
        self.tell_room_ended(slug, reason)
        task = asyncio.ensure_future(self._let_go(slug, subscription))
        self.leaving.add(task)
        task.add_done_callback(self.leaving.discard)

    def tell_room_ended(self, slug: str, reason: str) -> None:
        """Tell the client that its subscription to the room ended, and why."""
        frame = events.UnsubscribedFrame(channel=room_channel(slug), reason=reason)  # type: ignore[arg-type]
        self.push_text(json.dumps(events.dump(frame)))

    async def _let_go(self, slug: str, subscription: Subscription) -> None:
        try:
            await self.hub.leave(room_group(slug), subscription)
        finally:
            await presence.leave(slug, subscription.conn_id, subscription.user)

    async def enter_presence(self, slug: str) -> None:
        await presence.enter(slug, self.conn_id, self.identity)

    async def leave_room(self, slug: str) -> None:
        subscription = self.subscriptions.pop(slug, None)
        if subscription is None:
            return
        await self.hub.leave(room_group(slug), subscription)
        await presence.leave(slug, subscription.conn_id, subscription.user)

    async def leave_group(self, channel: str) -> None:
        group, subscription = self.group_subscriptions.pop(channel)
        await self.hub.leave(group, subscription)

    def leave_log(self, channel: str) -> None:
        name, subscription = self.log_subscriptions.pop(channel)
        get_log_feeds().leave(name, subscription)

    def subscription_count(self) -> int:
        return len(self.subscriptions) + len(self.group_subscriptions) + len(self.log_subscriptions)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        drain.OPEN.discard(self)
        if getattr(self, "counted", False):
            self.counted = False
            metrics.SOCKETS_OPEN.dec()
            metrics.SOCKETS_CLOSED.labels(str(message.get("code", 1000))).inc()
        if hasattr(self, "outbox"):
            self.outbox.close()
            await self.leave_everything()
            await self.close_account()
        await super().websocket_disconnect(message)

    async def leave_everything(self) -> None:
        for channel in list(getattr(self, "log_subscriptions", {})):
            self.leave_log(channel)
        for channel in list(getattr(self, "group_subscriptions", {})):
            try:
                await self.leave_group(channel)
            except Exception:
                logger.warning("leaving %s on disconnect failed", channel, exc_info=True)
        for slug in list(getattr(self, "subscriptions", {})):
            try:
                await self.leave_room(slug)
            except Exception:
                logger.warning("leaving %s on disconnect failed", slug, exc_info=True)
