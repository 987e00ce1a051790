"""Who may do what in a room, decided once: every read, post and membership change asks here.

A room's `kind` says who may read it: a public room anyone (signed in or not), a private or
direct room its members only. To anyone else such a room does not exist: every interface
answers exactly as for an unknown slug. Its `posting` says who among its readers may post.
Owners and admins manage a room; only owners name owners and admins or touch another admin.

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


def may_grant(role: str | None, granted: str) -> bool:
    """Whether this role may give someone the role `granted` (owners any, admins `member`)."""
    return role == Role.OWNER or (role == Role.ADMIN and granted == Role.MEMBER)


def may_remove(role: str | None, removed: str) -> bool:
    """Whether this role may remove a member whose role is `removed` (leaving is apart)."""
    return role == Role.OWNER or (role == Role.ADMIN and removed == Role.MEMBER)
