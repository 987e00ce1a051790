"""Every frame on `/ws/`, declared once: frames are checked against these; docs come from them."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1

Ref = Annotated[
    Annotated[str, Field(max_length=64, strict=True)]
    | Annotated[int, Field(ge=-(2**53), le=2**53, strict=True)],
    Field(description="Any short client value; echoed back in the reply or error"),
]


class ErrorCode(StrEnum):
    """Stable codes of `error` frames."""

    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    FRAME_TOO_LARGE = "frame_too_large"
    AUTH_FAILED = "auth_failed"
    INTERNAL_ERROR = "internal_error"


class CloseCode:
    """WebSocket close codes the server uses (4000-4999 are application codes)."""

    FORBIDDEN = 4403


class Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ref_adapter: TypeAdapter[str | int | None] = TypeAdapter(Ref | None)


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


ClientFrame = Annotated[PingFrame | AuthFrame, Field(discriminator="type")]
client_frame_adapter: TypeAdapter[PingFrame | AuthFrame] = TypeAdapter(ClientFrame)
CLIENT_FRAME_TYPES = frozenset({"ping", "auth"})


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


class PongFrame(Frame):
    type: Literal["pong"] = "pong"
    ref: Ref | None = None


class ErrorFrame(Frame):
    """A request could not be served; the socket stays usable."""

    type: Literal["error"] = "error"
    code: ErrorCode
    detail: str
    ref: Ref | None = None


ServerFrame = Annotated[
    HelloFrame | AuthenticatedFrame | PongFrame | ErrorFrame, Field(discriminator="type")
]
server_frame_adapter: TypeAdapter[HelloFrame | AuthenticatedFrame | PongFrame | ErrorFrame] = (
    TypeAdapter(ServerFrame)
)


def dump(frame: Frame) -> dict[str, Any]:
    """The JSON-ready dict of a frame; optional fields left as None are omitted, `null` kept."""
    fields = type(frame).model_fields
    return {
        key: value
        for key, value in frame.model_dump(mode="json").items()
        if value is not None or fields[key].is_required()
    }
