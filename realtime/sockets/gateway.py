"""`/ws/`: one socket per client, many subscriptions; client frames from an allow-list."""

from __future__ import annotations

import asyncio
import functools
import json
import weakref
from typing import Any

from django.conf import settings
from django.utils import timezone
from pydantic import ValidationError

from chat.errors import ChatError, ChatErrorCode
from chat.frames import room_state
from chat.selectors import my_rooms, room_id_get, room_replay
from chat.services import (
    ChangeResult,
    Post,
    TypingPace,
    message_delete,
    message_edit,
    read_mark,
    typing_announce,
)
from jobs.frames import job_update_frame
from jobs.selectors import (
    OUTPUT_PAGE_MAX,
    job_output,
    job_readable,
    job_state_get,
)
from realtime.kernel import events
from realtime.kernel.codes import CloseCode, ErrorCode
from realtime.kernel.names import (
    LOG_CHANNEL_PREFIX,
    ROOMS_MINE,
    job_channel,
    job_group,
    owner_group,
)
from realtime.logs.selectors import log_file_get

from .accounts import fingerprint
from .consumers import NotParsed, RoomSocket, user_ref, valid_ref
from .database import on_database_thread
from .job_feed import JobFeed
from .log_feed import get_log_feeds
from .middleware import user_for_token
from .posting import post_queue
from .rooms_mine import RoomsMine, state_text
from .subscription import GATEWAY, Subscription

MAX_SUBSCRIPTIONS = 100

# Each is one trip to the database thread.
read_room_id = on_database_thread(room_id_get)
read_room_replay = on_database_thread(room_replay)
read_job_readable = on_database_thread(job_readable)
read_job_state = on_database_thread(job_state_get)
read_job_output = on_database_thread(job_output)
write_message_edit = on_database_thread(message_edit)
write_message_delete = on_database_thread(message_delete)
mark_read = on_database_thread(read_mark)
read_my_rooms = on_database_thread(my_rooms)


class GatewayConsumer(RoomSocket):
    """Greets the socket, then serves `events.ClientFrame`s; each handler is named in a table."""

    async def connect(self) -> None:
        self.typing_pace = TypingPace()
        self.rooms_mine: RoomsMine | None = None
        await self.accept()
        await self.send_frame(events.HelloFrame(user=self.identity))

    async def handle(self, data: dict[str, Any]) -> None:
        ref = valid_ref(data.get("ref"))
        kind = data.get("type")
        handler = self.HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise NotParsed(ErrorCode.UNKNOWN_TYPE, "Unknown frame type.", ref)
        try:
            frame = events.client_frame_adapter.validate_python(data)
        except ValidationError as exc:
            raise NotParsed(ErrorCode.INVALID_FRAME, _describe(exc), ref) from exc
        await handler(self, frame)

    async def on_ping(self, frame: events.PingFrame) -> None:
        await self.send_frame(events.PongFrame(ref=frame.ref))

    async def on_auth(self, frame: events.AuthFrame) -> None:
        user = await user_for_token(frame.token)
        if user is None:
            raise NotParsed(ErrorCode.AUTH_FAILED, "Invalid token.", frame.ref)
        # From now on the socket counts as this user's and closes when the token is revoked.
        self.stop_rooms_mine()  # the rooms of whoever it was before
        await self.close_account()
        self.scope["user"] = self.user = user
        self.identity = user_ref(user)
        assert self.identity is not None
        self.credential = fingerprint(frame.token)
        if not await self.open_account(f"user:{user.pk}"):
            await self._leave_and_close(CloseCode.TOO_MANY_CONNECTIONS)
            return
        await self.send_frame(events.AuthenticatedFrame(user=self.identity, ref=frame.ref))

    async def on_subscribe(self, frame: events.SubscribeFrame) -> None:
        if frame.share is not None and not frame.channel.startswith("job:"):
            raise NotParsed(ErrorCode.INVALID_FRAME, "share is for a job's channel.", frame.ref)
        if frame.channel.startswith(LOG_CHANNEL_PREFIX):
            await self.subscribe_log(frame)
            return
        if frame.channel == ROOMS_MINE:
            await self.subscribe_rooms_mine(frame)
            return
        if not frame.channel.startswith("room:"):
            await self.subscribe_jobs(frame)
            return
        slug = frame.channel.removeprefix("room:")
        if slug in self.subscriptions:
            raise NotParsed(ErrorCode.ALREADY_SUBSCRIBED, "Already subscribed.", frame.ref)
        self.check_subscription_count(frame)
        viewer = self.user if self.identity is not None else None
        # A room this user may not read answers exactly as a room that does not exist.
        room_id = await read_room_id(slug=slug, viewer=viewer)
        if room_id is None:
            raise NotParsed(ErrorCode.NOT_FOUND, f"No room {slug!r}.", frame.ref)
        # Join the live feed first, then read: a message committed in between is both
        # replayed and held by the subscription, and `go_live` sends it once. Whether the
        # user may read the room is read again with it: a removal committed before is seen
        # here, one committed after reaches the feed that the subscription is now in.
        subscription = await self.join_room(slug, room_id, GATEWAY)
        try:
            replay = await read_room_replay(
                room_id=room_id,
                slug=slug,
                viewer=viewer,
                since=frame.since,
                limit=settings.SWITCHBOARD_REPLAY_LIMIT,
            )
        except BaseException:
            await self.leave_room(slug)  # so that the client may simply ask again
            raise
        if replay is None:
            await self.leave_room(slug)
            raise NotParsed(ErrorCode.NOT_FOUND, f"No room {slug!r}.", frame.ref)
        if replay.frames is None:
            await self.send_frame(
                events.ResyncRequiredFrame(
                    channel=frame.channel,
                    seq=replay.last_seq,
                    detail="Fetch messages after your last seq over REST, then continue live.",
                    ref=frame.ref,
                )
            )
        else:
            await self.send_frame(
                events.SubscribedFrame(channel=frame.channel, seq=replay.last_seq, ref=frame.ref)
            )
            for message in replay.frames:
                self.push_text(json.dumps(message))
        subscription.go_live(replay.last_seq)
        await self.enter_presence(slug)
        if subscription.end_reason is not None:  # removed while this subscribe was under way
            self.room_access_ended(slug, subscription, subscription.end_reason)

    async def subscribe_rooms_mine(self, frame: events.SubscribeFrame) -> None:
        """`rooms:mine`: a snapshot of the user's rooms, then their changes (`room.state`,
        `room.removed`), through the account group this socket is in since it was opened."""
        if self.rooms_mine is not None:
            raise NotParsed(ErrorCode.ALREADY_SUBSCRIBED, "Already subscribed.", frame.ref)
        if self.identity is None:
            raise NotParsed(ErrorCode.NOT_FOUND, "Sign in to follow your rooms.", frame.ref)
        self.check_subscription_count(frame)
        # Following first, then read: a change committed in between is in the snapshot or
        # waits for it.
        self.rooms_mine = RoomsMine(self.push_text, window=settings.CHAT_READ_WINDOW)
        try:
            mine = await read_my_rooms(user_id=self.identity.id)
        except BaseException:
            self.rooms_mine = None  # so that the client may simply ask again
            raise
        await self.send_frame(events.SubscribedFrame(channel=frame.channel, seq=0, ref=frame.ref))
        snapshot = events.RoomsSnapshotFrame(
            rooms=[room_state(row) for row in mine.rows], truncated=mine.truncated
        )
        await self.send_frame(snapshot)
        self.rooms_mine.go_live()

    def room_state(self, event: dict[str, Any]) -> None:
        if self.rooms_mine is not None:
            self.rooms_mine.state(str(event["room"]), state_text(event))

    def room_removed(self, event: dict[str, Any]) -> None:
        if self.rooms_mine is not None:
            self.rooms_mine.removed(str(event["room"]), json.dumps(event["frame"]))

    def stop_rooms_mine(self) -> None:
        if self.rooms_mine is not None:
            self.rooms_mine.close()
            self.rooms_mine = None

    def subscription_count(self) -> int:
        return super().subscription_count() + (self.rooms_mine is not None)

    async def leave_everything(self) -> None:
        self.stop_rooms_mine()
        await super().leave_everything()

    async def subscribe_jobs(self, frame: events.SubscribeFrame) -> None:
        """`job:<id>`: the job's snapshot, then its updates; `jobs:mine`: all my jobs' updates."""
        if frame.channel in self.group_subscriptions:
            raise NotParsed(ErrorCode.ALREADY_SUBSCRIBED, "Already subscribed.", frame.ref)
        self.check_subscription_count(frame)
        viewer = self.user if self.identity is not None else None
        subscription = Subscription(self.push_text, GATEWAY, self.conn_id, self.identity)
        if frame.channel == "jobs:mine":
            if viewer is None:
                raise NotParsed(ErrorCode.NOT_FOUND, "Sign in to follow your jobs.", frame.ref)
            group = owner_group(viewer.pk)
            await self.hub.join(group, subscription, JobFeed.open, job_id=None, owner_id=viewer.pk)
            self.group_subscriptions[frame.channel] = (group, subscription)
            await self.send_frame(
                events.SubscribedFrame(channel=frame.channel, seq=0, ref=frame.ref)
            )
            subscription.go_live(0)
            return
        job_id = frame.channel.removeprefix("job:")
        # Another user's job, or a share link that is not this job's (or is no longer live),
        # answers exactly like a job that does not exist.
        readable = await read_job_readable(job_id=job_id, viewer=viewer, share_token=frame.share)
        if readable is None:
            raise NotParsed(ErrorCode.NOT_FOUND, "No such job.", frame.ref)
        share = readable.share
        if share is not None:
            # Before it joins the job's feed: a revocation the feed hands on from then is its.
            subscription.share_id = share.pk
            subscription.ended = functools.partial(self.share_ended, frame.channel, subscription)
        group = job_group(job_id)
        # Join first, then read: an update committed in between is in the snapshot or after it.
        await self.hub.join(group, subscription, JobFeed.open, job_id=job_id)
        self.group_subscriptions[frame.channel] = (group, subscription)
        try:
            state = await read_job_state(job_id=job_id)
        except BaseException:
            await self.leave_group(frame.channel)  # so that the client may simply ask again
            raise
        subscription.log_after = state.log_lines
        await self.send_frame(
            events.SubscribedFrame(channel=frame.channel, seq=state.seq, ref=frame.ref)
        )
        await self.send_frame(job_update_frame(state))
        if frame.since is not None:  # its output after `since`, up to the snapshot's
            await self.replay_output(job_id, after=frame.since, upto=state.output_chunks)
        subscription.output_after = max(state.output_chunks, frame.since or 0)
        subscription.go_live(state.seq)
        if share is not None:
            # A job followed with a share link ends when the link expires, or is revoked.
            left = (share.expires_at - timezone.now()).total_seconds()
            asyncio.get_running_loop().call_later(
                max(0.0, left), _expire, weakref.ref(subscription)
            )
            if subscription.end_reason is not None:  # revoked while this subscribe was under way
                subscription.end(subscription.end_reason)

    def share_ended(self, channel: str, subscription: Subscription, reason: str) -> None:
        """The share link a job is followed with was revoked or expired: unsubscribe, say why."""
        current = self.group_subscriptions.get(channel)
        if subscription.pending is not None or current is None:
            subscription.end_reason = reason  # the subscribe under way ends it once answered
            return
        if current[1] is not subscription:
            return  # unsubscribed meanwhile
        self.group_subscriptions.pop(channel)
        subscription.push = _dropped  # nothing of the job reaches it after this frame
        frame = events.UnsubscribedFrame(channel=channel, reason=reason)  # type: ignore[arg-type]
        self.push_text(json.dumps(events.dump(frame)))
        task = asyncio.ensure_future(self.hub.leave(current[0], subscription))
        self.leaving.add(task)
        task.add_done_callback(self.leaving.discard)

    async def replay_output(self, job_id: str, *, after: int, upto: int) -> None:
        """Send the job's output chunks in (`after`, `upto`] that are still kept, in frames of
        at most a page each."""
        while after < upto:
            chunks = await read_job_output(
                job_id=job_id, after=after, limit=min(upto - after, OUTPUT_PAGE_MAX)
            )
            chunks = [chunk for chunk in chunks if chunk.seq <= upto]
            if not chunks:
                return
            await self.send_frame(
                events.JobOutputFrame(channel=job_channel(job_id), job_id=job_id, chunks=chunks)
            )
            after = chunks[-1].seq

    async def subscribe_log(self, frame: events.SubscribeFrame) -> None:
        """`log:<name>` (staff): the lines appended to a configured file, from `since` or now."""
        if frame.channel in self.log_subscriptions:
            raise NotParsed(ErrorCode.ALREADY_SUBSCRIBED, "Already subscribed.", frame.ref)
        self.check_subscription_count(frame)
        viewer = self.user if self.identity is not None else None
        log = log_file_get(name=frame.channel.removeprefix(LOG_CHANNEL_PREFIX), viewer=viewer)
        # Someone who may not read logs is told exactly what an unknown name gets.
        if log is None:
            raise NotParsed(ErrorCode.NOT_FOUND, "No such log.", frame.ref)
        subscription = Subscription(self.push_text, GATEWAY, self.conn_id, self.identity)
        start = await get_log_feeds().join(log, subscription, frame.since)
        self.log_subscriptions[frame.channel] = (log.name, subscription)
        await self.send_frame(
            events.SubscribedFrame(channel=frame.channel, seq=start, ref=frame.ref)
        )
        subscription.go_live(0)

    def check_subscription_count(self, frame: events.SubscribeFrame) -> None:
        if self.subscription_count() >= MAX_SUBSCRIPTIONS:
            raise NotParsed(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                f"At most {MAX_SUBSCRIPTIONS} subscriptions per socket.",
                frame.ref,
            )

    async def on_unsubscribe(self, frame: events.UnsubscribeFrame) -> None:
        if frame.channel == ROOMS_MINE and self.rooms_mine is not None:
            self.stop_rooms_mine()
            await self.send_frame(events.UnsubscribedFrame(channel=frame.channel, ref=frame.ref))
            return
        if frame.channel in self.log_subscriptions:
            self.leave_log(frame.channel)
            await self.send_frame(events.UnsubscribedFrame(channel=frame.channel, ref=frame.ref))
            return
        if frame.channel in self.group_subscriptions:
            await self.leave_group(frame.channel)
            await self.send_frame(events.UnsubscribedFrame(channel=frame.channel, ref=frame.ref))
            return
        slug = frame.channel.removeprefix("room:")
        if not frame.channel.startswith("room:") or slug not in self.subscriptions:
            raise NotParsed(ErrorCode.NOT_SUBSCRIBED, "Not subscribed.", frame.ref)
        await self.leave_room(slug)
        await self.send_frame(events.UnsubscribedFrame(channel=frame.channel, ref=frame.ref))

    async def on_chat_send(self, frame: events.ChatSendFrame) -> None:
        post = Post(frame.room, self.poster(), frame.body, frame.client_id)
        result = await post_queue().post(post)
        if isinstance(result, ChatError):
            raise result
        message = result.message
        ack = events.chat_sent(
            room=frame.room,
            seq=message.seq,
            id=message.pk,
            client_id=message.client_id,
            duplicate=not result.created,
            ref=frame.ref,
        )
        self.push_text(json.dumps(ack))

    async def on_chat_edit(self, frame: events.ChatEditFrame) -> None:
        result = await write_message_edit(
            slug=frame.room,
            poster=self.poster(),
            message_id=frame.id,
            body=frame.body,
            client_id=frame.client_id,
        )
        await self.send_frame(_change_ack(events.ChatEditedFrame, frame, result))

    async def on_chat_delete(self, frame: events.ChatDeleteFrame) -> None:
        result = await write_message_delete(
            slug=frame.room, poster=self.poster(), message_id=frame.id, client_id=frame.client_id
        )
        await self.send_frame(_change_ack(events.ChatDeletedFrame, frame, result))

    async def on_chat_typing(self, frame: events.ChatTypingFrame) -> None:
        # Only to a room this socket follows: a room it may read, and whose typists it sees.
        if frame.room not in self.subscriptions:
            raise NotParsed(ErrorCode.NOT_SUBSCRIBED, "Not subscribed.", frame.ref)
        # No database, no wait: the rule is in memory and the event goes out from this loop.
        typing_announce(
            room=frame.room, user=self.identity, typing=frame.typing, pace=self.typing_pace
        )

    async def on_chat_read(self, frame: events.ChatReadFrame) -> None:
        if self.identity is None:
            raise ChatError(ChatErrorCode.NOT_A_MEMBER, "Sign in: read state is kept for members.")
        user = self.user
        assert user is not None  # signed in: it has an identity
        done = await mark_read(slug=frame.room, user=user, seq=frame.seq, conn_id=self.conn_id)
        await self.send_frame(
            events.ChatReadAckFrame(
                room=frame.room,
                last_read_seq=done.state.last_read_seq,
                unread=done.state.unread,
                ref=frame.ref,
            )
        )

    def room_read(self, event: dict[str, Any]) -> None:
        """This user's read position in a room moved (`AccountFeed`): tell this socket, unless
        it is the one that moved it, and its `rooms:mine`."""
        if event.get("conn_id") != self.conn_id:
            self.push_text(json.dumps(event["read"]))
        self.room_state(event)

    HANDLERS: dict[str, Any] = {
        "ping": on_ping,
        "auth": on_auth,
        "subscribe": on_subscribe,
        "unsubscribe": on_unsubscribe,
        "chat.send": on_chat_send,
        "chat.typing": on_chat_typing,
        "chat.edit": on_chat_edit,
        "chat.delete": on_chat_delete,
        "chat.read": on_chat_read,
    }


def _change_ack(
    reply: type[events.ChatEditedFrame] | type[events.ChatDeletedFrame],
    frame: events.ChatEditFrame | events.ChatDeleteFrame,
    result: ChangeResult,
) -> events.ChangeAckFrame:
    """The reply to a change of a message: the change's `seq`, and the message's."""
    return reply(
        room=frame.room,
        seq=result.change.seq,
        id=result.message.pk,
        message_seq=result.message.seq,
        client_id=result.change.client_id,
        duplicate=not result.created,
        ref=frame.ref,
    )


def _describe(exc: ValidationError) -> str:
    first: dict[str, Any] = dict(exc.errors()[0])
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))


def _dropped(text: str) -> None:
    """Where a subscription that ended sends what its feed still hands it: nowhere."""


def _expire(held: weakref.ref[Subscription]) -> None:
    """A share link's time is up: end the subscription that follows the job with it, if that
    is still there (the timer holds it weakly, so a socket gone meanwhile is not kept)."""
    subscription = held()
    if subscription is not None:
        subscription.end("share_expired")
