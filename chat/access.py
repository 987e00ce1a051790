"""Who may do what in a room, decided once: every read, post, change of a message and
membership change asks here.

A room's `kind` says who may read it: a public room anyone (signed in or not), a private or
direct room its members only. To anyone else such a room does not exist: every interface
answers exactly as for an unknown slug. Its `posting` says who among its readers may post.
Owners and admins manage a room; only owners name owners and admins, touch another admin, or
delete the room (a direct room is not deleted: it is its two people's).
A message is edited by its author only (an anonymous post by nobody), and deleted by its author
or by the room's owners and admins; either only by someone who may still read the room.

The statements of `chat.store` that filter by these rules (`readable` there) say the same in
SQL; tests/chat/test_members.py holds the two together.
"""

from __future__ import annotations

from .models import Posting, Role, RoomKind

MANAGERS = frozenset({Role.OWNER, Role.ADMIN})


def may_read(kind: str, role: str | None) -> bool:
    """Whether someone with this role (None: not a member, or anonymous) may read the room."""
    return kind == RoomKind.PUBLIC or role is not None


def may_post(kind: str, posting: str, role: str | None) -> bool:
    """Whether a reader with this role may post (anonymous posting is a setting, checked apart)."""
    if not may_read(kind, role):
        return False
    if posting == Posting.ADMINS:
        return role in MANAGERS
    if posting == Posting.MEMBERS:
        return role is not None
    return True


def may_manage(role: str | None) -> bool:
    """Whether this role may change the room's settings and add or remove members."""
    return role in MANAGERS


def may_delete_room(kind: str, role: str | None) -> bool:
    """Whether this role may delete the room, its messages and memberships with it."""
    return role == Role.OWNER and kind != RoomKind.DIRECT


def may_grant(role: str | None, granted: str) -> bool:
    """Whether this role may give someone the role `granted` (owners any, admins `member`)."""
    return role == Role.OWNER or (role == Role.ADMIN and granted == Role.MEMBER)


def may_remove(role: str | None, removed: str) -> bool:
    """Whether this role may remove a member whose role is `removed` (leaving is apart)."""
    return role == Role.OWNER or (role == Role.ADMIN and removed == Role.MEMBER)


def may_edit(author_id: int | None, user_id: int | None) -> bool:
    """Whether this user (None: anonymous) may change the text of a message by `author_id`."""
    return user_id is not None and author_id == user_id


def may_delete(author_id: int | None, user_id: int | None, role: str | None) -> bool:
    """Whether this user, with this role in the room, may delete a message by `author_id`."""
    return may_edit(author_id, user_id) or (user_id is not None and may_manage(role))
