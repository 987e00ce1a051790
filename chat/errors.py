"""Error codes of the chat domain, each with its HTTP status; the socket sends them unchanged."""

from realtime.kernel.errors import DomainError, DomainErrorCode


class ChatErrorCode(DomainErrorCode):
    ROOM_NOT_FOUND = "not_found", 404
    ROOM_EXISTS = "room_exists", 409
    INVALID_ROOM = "invalid_room", 400
    INVALID_MESSAGE = "invalid_message", 400
    POSTING_NOT_ALLOWED = "posting_not_allowed", 403
    TYPING_NOT_ALLOWED = "typing_not_allowed", 403
    CLIENT_ID_CONFLICT = "client_id_conflict", 409
    RATE_LIMITED = "rate_limited", 429
    ROOM_ADMIN_REQUIRED = "room_admin_required", 403
    ROOM_OWNER_REQUIRED = "room_owner_required", 403
    USER_NOT_FOUND = "user_not_found", 404
    INVALID_MEMBERSHIP = "invalid_membership", 400
    LAST_OWNER = "last_owner", 409
    MESSAGE_NOT_FOUND = "message_not_found", 404
    NOT_MESSAGE_AUTHOR = "not_message_author", 403
    MESSAGE_DELETED = "message_deleted", 409
    NOT_A_MEMBER = "not_a_member", 403
    ROOM_TOO_LARGE = "room_too_large", 409


class ChatError(DomainError):
    """A chat rule refused the request."""

    code: ChatErrorCode


def room_not_found(slug: str) -> ChatError:
    """The answer about a slug that names no room the asker may read: the same, whichever."""
    return ChatError(ChatErrorCode.ROOM_NOT_FOUND, f"No room {slug!r}.")
