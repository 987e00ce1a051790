"""Error codes of the chat domain, shared by REST and the socket."""

from enum import StrEnum


class ChatErrorCode(StrEnum):
    ROOM_NOT_FOUND = "not_found"
    ROOM_EXISTS = "room_exists"
    INVALID_ROOM = "invalid_room"
    INVALID_MESSAGE = "invalid_message"
    POSTING_NOT_ALLOWED = "posting_not_allowed"
    CLIENT_ID_CONFLICT = "client_id_conflict"


class ChatError(Exception):
    """A chat rule refused the request; `code` is stable, `detail` is for people."""

    def __init__(self, code: ChatErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
