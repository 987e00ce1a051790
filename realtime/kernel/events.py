"""Every frame on the sockets, declared once: frames are checked against these; docs come from them.

Imports no domain code, so domains may build frames without import cycles.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .codes import ErrorCodeField
from .names import CHANNEL_PATTERN, ROOM_SLUG_PATTERN

PROTOCOL_VERSION = 1

# Bounds of a message, documented by both contracts; the chat domain enforces them
# (`invalid_message`), so a post over REST and one over a socket are refused alike.
MESSAGE_MAX_LENGTH = 4000
CLIENT_ID_MAX_LENGTH = 64
NO_NUL_PATTERN = "^[^\\x00]*$"

Ref = Annotated[
    Annotated[str, Field(max_length=64, strict=True)]
    | Annotated[int, Field(ge=-(2**53), le=2**53, strict=True)],
    Field(description="Any short client value; echoed back in the reply or error"),
]
ref_adapter: TypeAdapter[str | int | None] = TypeAdapter(Ref | None)
Seq = Annotated[int, Field(ge=0, le=2**63 - 1, strict=True, json_schema_extra={"format": "int64"})]
# ISO 8601 texts, as `datetime.isoformat()` writes them.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
RoomSlug = Annotated[str, Field(pattern=ROOM_SLUG_PATTERN, strict=True)]
ChannelName = Annotated[
    str,
    Field(
        pattern=CHANNEL_PATTERN,
        strict=True,
        description=(
            "`room:<slug>`, `job:<uuid>` (owner or staff), `jobs:mine`, `rooms:mine` (signed "
            "in) or `log:<name>` (staff)"
        ),
    ),
]


class Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def bounded_string(max_length: int) -> dict[str, Any]:
    """JSON Schema bounds of a string that the chat domain checks (the parsers do not)."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": NO_NUL_PATTERN}


# ------------------------------------------------------------------ client → server
class PingFrame(Frame):
    """Keep-alive; answered by `pong`."""

    type: Literal["ping"]
    ref: Ref | None = None


class AuthFrame(Frame):
    """Authenticate this socket with an API token (for clients that cannot set headers)."""

    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=128)
    ref: Ref | None = None


class SubscribeFrame(Frame):
    """Start receiving a channel; with `since`, first replay what came after it.

    For a room, `since` is the `seq` of the last message the client has; for a job, the `seq`
    of the last output chunk it has (0: all that is kept); for a log, the byte offset in the
    file after the last line it has (a line's `offset`).
    """

    type: Literal["subscribe"]
    channel: ChannelName
    since: Seq | None = None
    share: str | None = Field(
        default=None,
        max_length=100,
        description="A job's share link token: follow that job without signing in (job:<id> only)",
    )
    ref: Ref | None = None


class UnsubscribeFrame(Frame):
    type: Literal["unsubscribe"]
    channel: ChannelName
    ref: Ref | None = None


class ChatSendFrame(Frame):
    """Post a message; a retry with the same `client_id` does not post twice.

    A `body` or `client_id` out of its bounds is refused with `invalid_message`, as over REST.
    """

    type: Literal["chat.send"]
    room: RoomSlug
    body: str = Field(strict=True, json_schema_extra=bounded_string(MESSAGE_MAX_LENGTH))
    client_id: (
        Annotated[str, Field(strict=True, json_schema_extra=bounded_string(CLIENT_ID_MAX_LENGTH))]
        | None
    ) = None
    ref: Ref | None = None


class ChatTypingFrame(Frame):
    """Tell the room's other subscribers that you are typing (`typing: false`: you stopped).

    Only in a room this socket is subscribed to (else `not_subscribed`), and only signed in
    (else `typing_not_allowed`). Best effort, with no reply: send it every 2 s or so while the
    user types; the server forwards at most one a `CHAT_TYPING_INTERVAL` (3 s) per socket and
    room and drops the others silently. A stop is forwarded only while a start sent from this
    socket still shows. Nothing is stored.
    """

    type: Literal["chat.typing"]
    room: RoomSlug
    typing: bool = Field(default=True, strict=True)
    ref: Ref | None = None


MessageId = Annotated[int, Field(ge=1, le=2**63 - 1, strict=True, description="The message's `id`")]
ClientId = Annotated[
    str, Field(strict=True, json_schema_extra=bounded_string(CLIENT_ID_MAX_LENGTH))
]


class ChatEditFrame(Frame):
    """Change the text of your own message (`id`, as `chat.message` gave it); replied to with
    `chat.edited`. A retry with the same `client_id` applies once and gets the same reply.

    Refused with `message_not_found` (no such message in a room you may read), `not_message_author`,
    `message_deleted`, `invalid_message` or `rate_limited` (edits spend the posting budget).
    """

    type: Literal["chat.edit"]
    room: RoomSlug
    id: MessageId
    body: str = Field(strict=True, json_schema_extra=bounded_string(MESSAGE_MAX_LENGTH))
    client_id: ClientId | None = None
    ref: Ref | None = None


class ChatDeleteFrame(Frame):
    """Delete a message: your own, or any in a room you own or administer; replied to with
    `chat.deleted`. Deleting a deleted message changes nothing and gets the first reply again.

    Refused with `message_not_found` or `not_message_author`.
    """

    type: Literal["chat.delete"]
    room: RoomSlug
    id: MessageId
    client_id: ClientId | None = None
    ref: Ref | None = None


class ChatReadFrame(Frame):
    """You have read the room up to `seq`: answered by `chat.read_ack`.

    Members only (signed in; a public room's reader who is not a member gets `not_a_member`,
    a room you may not read `not_found`). A `seq` past the room's last is taken as its last,
    and the position never goes back. Send it as often as you like: it is stored at most once
    a second (`CHAT_READ_WINDOW`) per member and room, the latest value a moment later.
    """

    type: Literal["chat.read"]
    room: RoomSlug
    seq: Seq
    ref: Ref | None = None


ClientFrameType = (
    PingFrame
    | AuthFrame
    | SubscribeFrame
    | UnsubscribeFrame
    | ChatSendFrame
    | ChatTypingFrame
    | ChatEditFrame
    | ChatDeleteFrame
    | ChatReadFrame
)
ClientFrame = Annotated[ClientFrameType, Field(discriminator="type")]
client_frame_adapter: TypeAdapter[ClientFrameType] = TypeAdapter(ClientFrame)
CLIENT_FRAME_TYPES = frozenset(
    {
        "ping",
        "auth",
        "subscribe",
        "unsubscribe",
        "chat.send",
        "chat.typing",
        "chat.edit",
        "chat.delete",
        "chat.read",
    }
)


# ------------------------------------------------------------------ server → client
class UserRef(Frame):
    id: int
    username: str


class HelloFrame(Frame):
    """First frame on every connection: who the socket is and which protocol it speaks."""

    type: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    user: UserRef | None


class AuthenticatedFrame(Frame):
    """Reply to a successful `auth`."""

    type: Literal["authenticated"] = "authenticated"
    user: UserRef
    ref: Ref | None = None


class SubscribedFrame(Frame):
    """The subscription is on; `seq` is the room's last `seq` (message or change) when it started.

    Replayed messages and changes (`seq` in `since+1..seq`, each once) follow, then live ones.
    For a job, `seq` is the job's `seq` in the snapshot that follows. For a log, `seq` is the
    byte offset its lines continue from: `since` when nothing is missing; less than `since` when
    the file was rotated or truncated since (its lines follow from that offset in the file as it
    is now); more when `since` was too far behind (`SWITCHBOARD_TAIL_REPLAY`) and older lines
    were skipped.
    """

    type: Literal["subscribed"] = "subscribed"
    channel: ChannelName
    seq: Seq
    ref: Ref | None = None


class UnsubscribedFrame(Frame):
    """The subscription has ended: the reply to `unsubscribe`, or sent unasked with a `reason`.

    The server ends a room's subscription itself when its user may no longer read the room
    (a private or direct room they were removed from or left, on any socket; or a room its
    owner deleted): no message of the room follows, and the room now answers `not_found` like
    an unknown one.
    """

    type: Literal["unsubscribed"] = "unsubscribed"
    channel: ChannelName
    reason: Literal["removed", "left", "deleted", "share_revoked", "share_expired"] | None = Field(
        default=None,
        description=(
            "Why the server ended the subscription unasked: `removed` from the room by an owner "
            "or admin, `left` it (from this client or another), or the room was `deleted`; a "
            "job followed with a share link whose owner revoked it (`share_revoked`) or that "
            "expired (`share_expired`). Absent in a reply."
        ),
    )
    ref: Ref | None = None


class ResyncRequiredFrame(Frame):
    """`since` is too old to replay here: fetch history over REST, then continue live from `seq`."""

    type: Literal["resync_required"] = "resync_required"
    channel: ChannelName
    seq: Seq
    detail: str
    ref: Ref | None = None


class ChatMessageFrame(Frame):
    """A message in a room: replayed or live, in `seq` order, each exactly once.

    Without its `type` and `channel`, it is also a message as REST returns it. A message read
    from the database (replayed, or history) carries its current text: `edited_at` set when it
    was edited, and a deleted one is a tombstone with an empty `body` and `deleted: true`.
    """

    type: Literal["chat.message"] = "chat.message"
    channel: ChannelName
    room: RoomSlug
    seq: Seq
    id: int
    author: UserRef | None
    author_name: str
    body: str = Field(max_length=MESSAGE_MAX_LENGTH)
    created_at: Timestamp
    client_id: Annotated[str, Field(max_length=CLIENT_ID_MAX_LENGTH)] | None = None
    edited_at: Timestamp | None = Field(description="When its text last changed; null: never")
    deleted: bool = Field(description="Deleted: a tombstone, its `body` empty")


class MessageChangeFrame(Frame):
    """What `message.edited` and `message.deleted` share: their own `seq`, and the message's."""

    type: str
    channel: ChannelName
    room: RoomSlug
    seq: Seq
    id: int
    message_seq: Seq


class MessageEditedFrame(MessageChangeFrame):
    """A message's author changed its text: an event of the room's sequence with its own `seq`.

    `id` and `message_seq` name the message; `body` and `edited_at` are its new text and time.
    Replayed by `since` like messages, in `seq` order (a replayed edit of a message deleted since
    has an empty `body`; its `message.deleted` follows).
    """

    type: Literal["message.edited"] = "message.edited"
    body: str = Field(max_length=MESSAGE_MAX_LENGTH)
    edited_at: Timestamp


class MessageDeletedFrame(MessageChangeFrame):
    """A message was deleted (by its author, or a room owner or admin): show a tombstone.

    An event of the room's sequence with its own `seq`; `id` and `message_seq` name the message.
    """

    type: Literal["message.deleted"] = "message.deleted"


class ChangeAckFrame(Frame):
    """What `chat.edited` and `chat.deleted` share."""

    type: str
    room: RoomSlug
    seq: Seq
    id: int
    message_seq: Seq
    client_id: str | None = None
    duplicate: bool = False
    ref: Ref | None = None


class ChatEditedFrame(ChangeAckFrame):
    """Reply to `chat.edit`: the change's `seq`; `duplicate` when `client_id` was seen before."""

    type: Literal["chat.edited"] = "chat.edited"


class ChatDeletedFrame(ChangeAckFrame):
    """Reply to `chat.delete`: the deletion's `seq`; `duplicate` when it was deleted before."""

    type: Literal["chat.deleted"] = "chat.deleted"


# The fields of a `chat.message` frame that are about the socket, not the message.
FRAME_ENVELOPE = frozenset({"type", "channel"})


class ChatSentFrame(Frame):
    """Reply to `chat.send`: the message's `seq`; `duplicate` when `client_id` was seen before."""

    type: Literal["chat.sent"] = "chat.sent"
    room: RoomSlug
    seq: Seq
    id: int
    client_id: str | None = None
    duplicate: bool = False
    ref: Ref | None = None


def chat_sent(
    *, room: str, seq: int, id: int, client_id: str | None, duplicate: bool, ref: str | int | None
) -> dict[str, Any]:
    """`ChatSentFrame`'s JSON dump, built directly: every post is answered with one
    (tests/realtime/test_frames.py holds the two together)."""
    frame: dict[str, Any] = {"type": "chat.sent", "room": room, "seq": seq, "id": id}
    if client_id is not None:
        frame["client_id"] = client_id
    frame["duplicate"] = duplicate
    if ref is not None:
        frame["ref"] = ref
    return frame


class PresenceFrame(Frame):
    """Who is in a room now: users once each (however many tabs), anonymous sockets counted."""

    type: Literal["presence"] = "presence"
    channel: ChannelName
    users: list[UserRef]
    anonymous: int
    count: int
    version: int


class TypingFrame(Frame):
    """Someone else in the room is typing (`typing: false`: stopped); never stored, never replayed.

    Show it for `expires_in` seconds unless another `typing` of the same user comes, and drop
    it when that user's `chat.message` arrives. Never sent back to the typist's own sockets.
    """

    type: Literal["typing"] = "typing"
    channel: ChannelName
    room: RoomSlug
    user: UserRef
    typing: bool
    expires_in: int = Field(
        ge=0, description="Seconds after which to stop showing it (0 with `typing: false`)"
    )


# Unread counts stop here ("this many or more"): counting reads at most this many rows.
UNREAD_CAP = 100
UnreadCount = Annotated[
    int,
    Field(
        ge=0,
        le=UNREAD_CAP,
        description=(
            f"Messages after your read position that others wrote; {UNREAD_CAP} means "
            f"{UNREAD_CAP} or more"
        ),
    ),
]


class ChatReadAckFrame(Frame):
    """Reply to `chat.read`: your read position in the room now, and what is left unread."""

    type: Literal["chat.read_ack"] = "chat.read_ack"
    room: RoomSlug
    last_read_seq: Seq
    unread: UnreadCount
    ref: Ref | None = None


class ReadFrame(Frame):
    """You read a room on another socket or over REST (another tab): clear its badge.

    Sent to your other sockets (signed in as you) whenever your stored position moves, at
    most once a second per room.
    """

    type: Literal["read"] = "read"
    room: RoomSlug
    last_read_seq: Seq
    unread: UnreadCount


class RoomState(Frame):
    """One of your rooms as you see it: a room of the REST list, with your read state."""

    slug: RoomSlug
    title: str
    kind: Literal["public", "private", "direct"]
    posting: Literal["anyone", "members", "admins"]
    role: Literal["owner", "admin", "member"]
    last_seq: Seq
    last_message_at: Timestamp | None
    last_read_seq: Seq
    unread: UnreadCount


class RoomsSnapshotFrame(Frame):
    """Sent after `subscribed` to `rooms:mine`: the rooms you are a member of, most recently
    active first, at most 500 (`truncated`: there are more; read them over REST)."""

    type: Literal["rooms.snapshot"] = "rooms.snapshot"
    channel: Literal["rooms:mine"] = "rooms:mine"
    rooms: list[RoomState]
    truncated: bool


class RoomStateFrame(Frame):
    """One of your rooms changed (`rooms:mine`): new messages, your unread count, its title or
    settings, or you became a member. The whole state each time: the latest one wins. At most
    one a second per room and socket (changes in between are coalesced)."""

    type: Literal["room.state"] = "room.state"
    channel: Literal["rooms:mine"] = "rooms:mine"
    room: RoomState


class RoomRemovedFrame(Frame):
    """A room is no longer one of yours (`rooms:mine`): you were removed, you left, or its
    owner deleted it."""

    type: Literal["room.removed"] = "room.removed"
    channel: Literal["rooms:mine"] = "rooms:mine"
    room: RoomSlug
    reason: Literal["removed", "left", "deleted"]


class JobProgress(Frame):
    current: int
    total: int
    message: str


class JobError(Frame):
    type: str
    message: str


class JobStatus(StrEnum):
    """Where a job is: scheduled → queued → running → succeeded | failed | cancelled; a failed
    attempt with attempts left goes `retrying` → running, a cancelled running job
    `cancelling` → cancelled."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RETRYING = "retrying"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobState(Frame):
    """A job's full state, as REST returns it and `job.update` carries it."""

    id: Uuid
    kind: str
    status: JobStatus
    params: dict[str, Any]
    progress: JobProgress
    result: dict[str, Any] | None
    error: JobError | None
    created_at: Timestamp
    run_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    attempts: int = Field(description="Attempts started so far")
    max_attempts: int = Field(description="Attempts it may have before it fails for good")
    next_attempt_at: Timestamp | None = Field(description="When it runs again (`retrying`)")
    seq: int = Field(description="Counts the job's changes; a later state has a larger seq")
    cancel_requested: bool
    log_lines: int
    output_chunks: int = Field(description="Output chunks written so far (the last one's `seq`)")
    queue_position: int | None = Field(
        description="Due and waiting for a worker: its place among the due jobs (1: next)"
    )
    estimated_start_at: Timestamp | None = Field(
        description="Due and waiting: when it should start, from recent jobs' durations"
    )
    request_id: str | None = Field(
        description="The id of the request that enqueued it (its `X-Request-ID`, or the one "
        "the server gave it), also on the job's log lines in the worker"
    )


class JobUpdateFrame(Frame):
    """A job's state after a change; `job.seq` orders updates (a later one supersedes)."""

    type: Literal["job.update"] = "job.update"
    channel: ChannelName
    job: JobState


class JobLogFrame(Frame):
    """A line the job wrote; `number` counts from 1 with no gap."""

    type: Literal["job.log"] = "job.log"
    channel: ChannelName
    job_id: str
    number: int
    line: str


class JobOutputChunk(Frame):
    seq: int = Field(description="Counts the job's chunks from 1, with no gap")
    data: str


class JobOutputFrame(Frame):
    """Chunks the job wrote to its output, in order; several at once when it writes fast.

    Subscribing with `since` replays the chunks after that `seq` first (those still kept: see
    `GET /api/jobs/{id}/output/`), then the live ones, none twice.
    """

    type: Literal["job.output"] = "job.output"
    channel: ChannelName
    job_id: str
    chunks: list[JobOutputChunk]


class LogLine(Frame):
    """One line of a log file, without its line ending."""

    text: str = Field(
        description=(
            "The line as UTF-8 text; bytes that are not UTF-8 are replaced by U+FFFD. At most "
            "`SWITCHBOARD_TAIL_LINE_MAX` bytes of the line (4096 by default)."
        )
    )
    offset: Seq = Field(
        description=(
            "Byte offset in the file just after this line (its newline): subscribe again with "
            "`since` set to it to go on from here. Offsets count from the start of the file "
            "as it is now: after the file was rotated or truncated they start again from 0."
        )
    )
    cut: bool = Field(
        default=False,
        description="The line was longer than `SWITCHBOARD_TAIL_LINE_MAX`; its end is left out",
    )


class LogLinesFrame(Frame):
    """Lines appended to a log file (`log:<name>`), in the order they were written.

    After a `subscribe` with `since`, the lines from that offset come first, then each line
    as it is written, none twice. Under load one frame carries several lines.
    """

    type: Literal["log.lines"] = "log.lines"
    channel: ChannelName
    lines: list[LogLine] = Field(min_length=1)


class PongFrame(Frame):
    type: Literal["pong"] = "pong"
    ref: Ref | None = None


class ErrorFrame(Frame):
    """A request could not be served; the socket stays usable."""

    type: Literal["error"] = "error"
    code: ErrorCodeField
    detail: str
    ref: Ref | None = None
    retry_after: int | None = Field(
        default=None,
        ge=1,
        description="Whole seconds after which the same request may succeed (`rate_limited`)",
    )


ServerFrame = Annotated[
    HelloFrame
    | AuthenticatedFrame
    | SubscribedFrame
    | UnsubscribedFrame
    | ResyncRequiredFrame
    | ChatMessageFrame
    | MessageEditedFrame
    | MessageDeletedFrame
    | ChatSentFrame
    | ChatEditedFrame
    | ChatDeletedFrame
    | PresenceFrame
    | TypingFrame
    | ChatReadAckFrame
    | ReadFrame
    | RoomsSnapshotFrame
    | RoomStateFrame
    | RoomRemovedFrame
    | JobUpdateFrame
    | JobLogFrame
    | JobOutputFrame
    | LogLinesFrame
    | PongFrame
    | ErrorFrame,
    Field(discriminator="type"),
]
server_frame_adapter: TypeAdapter[Any] = TypeAdapter(ServerFrame)


# ------------------------------------------------------------------ /ws/chat/<room>/ (tutorial)
class TutorialMessageFrame(Frame):
    """The tutorial's frame, both ways: `{"message": "..."}`."""

    message: str = Field(strict=True)


class TutorialErrorFrame(Frame):
    """Sent on the tutorial route when a client frame cannot be served.

    The tutorial's page shows `message` of every frame, so the explanation goes there too.
    """

    message: str
    error: ErrorCodeField


def dump(frame: Frame) -> dict[str, Any]:
    """The JSON-ready dict of a frame; optional fields left as None are omitted, `null` kept."""
    fields = type(frame).model_fields
    return {
        key: value
        for key, value in frame.model_dump(mode="json").items()
        if value is not None or fields[key].is_required()
    }
