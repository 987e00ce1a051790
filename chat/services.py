"""Writes of the chat domain."""

from __future__ import annotations

import functools
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.utils import timezone

from realtime.kernel import events
from realtime.kernel.broadcast import publish_on_commit, publish_transient
from realtime.kernel.names import account_group, room_group
from realtime.kernel.ratelimit import LatestValueGate, parse_rate, retry_after

from . import access, store
from .errors import ChatError, ChatErrorCode, room_not_found
from .frames import (
    access_ended_event,
    change_event,
    message_event,
    room_read_event,
    room_removed_event,
    room_state_event,
    typing_event,
)
from .models import (
    CLIENT_ID_MAX_LENGTH,
    MESSAGE_MAX_LENGTH,
    ChangeKind,
    Membership,
    Message,
    MessageChange,
    Posting,
    Role,
    Room,
    RoomKind,
)
from .selectors import ReadState, VisibleRoom, member_room_states, room_get, unread_count

logger = logging.getLogger(__name__)

__all__ = ["room_not_found"]  # re-exported: the interfaces answer unknown rooms with it


def _random_slug(prefix: str = "") -> str:
    """A slug nobody can guess (128 bits), for rooms whose name must not tell anything."""
    return prefix + secrets.token_urlsafe(16)


def room_create(
    *,
    slug: str | None = None,
    title: str = "",
    created_by: User | None = None,
    kind: str = RoomKind.PUBLIC,
    posting: str = Posting.ANYONE,
) -> Room:
    """Create a public or private room after validating it; its creator becomes its owner.

    Without a slug the room gets one nobody can guess. Slugs are one namespace: a slug taken by
    a private room is `room_exists` here too, though it answers `not_found` to everything else.
    """
    if kind not in (RoomKind.PUBLIC, RoomKind.PRIVATE):
        raise ChatError(ChatErrorCode.INVALID_ROOM, "kind: a new room is public or private.")
    if posting not in Posting.values:
        raise ChatError(ChatErrorCode.INVALID_ROOM, f"posting: one of {', '.join(Posting)}.")
    if kind != RoomKind.PUBLIC and created_by is None:
        raise ChatError(ChatErrorCode.INVALID_ROOM, "A private room needs its owner.")
    slug = _random_slug() if slug is None else slug
    room = Room(slug=slug, title=title or slug, created_by=created_by, kind=kind, posting=posting)
    try:
        room.full_clean(exclude=["direct_key"])
    except ValidationError as exc:
        if "slug" in exc.message_dict and Room.objects.filter(slug=slug).exists():
            raise ChatError(ChatErrorCode.ROOM_EXISTS, f"Room {slug!r} already exists.") from exc
        raise ChatError(ChatErrorCode.INVALID_ROOM, _first_error(exc)) from exc
    try:
        with transaction.atomic():
            room.save()
            if created_by is not None:
                Membership.objects.create(room=room, user=created_by, role=Role.OWNER)
                room_states_announce_later(room_id=room.pk, user_ids=[created_by.pk])
    except IntegrityError as exc:  # lost a race with another creator of the same slug
        raise ChatError(ChatErrorCode.ROOM_EXISTS, f"Room {slug!r} already exists.") from exc
    return room


def room_ensure(*, slug: str, title: str = "") -> Room:
    """The public room with this slug, created if missing (the tutorial creates rooms by
    visiting, and serves public rooms only: another kind answers as a room that is not)."""
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        try:
            return room_create(slug=slug, title=title)
        except ChatError as exc:
            if exc.code != ChatErrorCode.ROOM_EXISTS:
                raise
            room = Room.objects.get(slug=slug)
    if room.kind != RoomKind.PUBLIC:
        raise room_not_found(slug)
    return room


def room_update(
    *, slug: str, actor: User, title: str | None = None, posting: str | None = None
) -> VisibleRoom:
    """Change a room's title or who may post in it: its owners and admins only."""
    visible = _readable_room(slug, actor)
    if not access.may_manage(visible.role):
        raise _admin_required()
    room = visible.room
    if posting is not None and posting not in Posting.values:
        raise ChatError(ChatErrorCode.INVALID_ROOM, f"posting: one of {', '.join(Posting)}.")
    room.title = room.title if title is None else (title or room.slug)
    room.posting = room.posting if posting is None else posting
    try:
        room.full_clean(exclude=["slug", "direct_key"])
    except ValidationError as exc:
        raise ChatError(ChatErrorCode.INVALID_ROOM, _first_error(exc)) from exc
    room.save(update_fields=["title", "posting"])
    room_states_announce_later(room_id=room.pk)
    return visible


def direct_room_open(*, opener: User, username: str) -> tuple[VisibleRoom, bool]:
    """The direct room of `opener` and the user named `username`, made the first time: the
    same pair always gets the same room (a unique key of the pair settles concurrent opens).
    True when it was made now. Its slug is random: it tells nobody who talks to whom."""
    other = _active_user(username)
    if other.pk == opener.pk:
        raise ChatError(ChatErrorCode.INVALID_MEMBERSHIP, "A direct room is between two people.")
    low, high = sorted((opener, other), key=lambda user: int(user.pk))
    key = f"{low.pk}:{high.pk}"
    made = False
    room = Room.objects.filter(direct_key=key).first()
    if room is None:
        try:
            with transaction.atomic():
                room = Room.objects.create(
                    slug=_random_slug("dm-"),
                    title=f"{low.get_username()} & {high.get_username()}",
                    created_by=opener,
                    kind=RoomKind.DIRECT,
                    direct_key=key,
                )
                Membership.objects.bulk_create(
                    [Membership(room=room, user=user, role=Role.MEMBER) for user in (low, high)]
                )
                room_states_announce_later(room_id=room.pk, user_ids=[low.pk, high.pk])
            made = True
        except IntegrityError:  # the other one opened it at the same moment
            room = Room.objects.get(direct_key=key)
    return VisibleRoom(room, Role.MEMBER), made


def room_join(*, slug: str, user: User) -> tuple[Membership, bool]:
    """Become a member of a public room (True), or stay one (False); members only may join
    any other, so to anyone else it answers as an unknown room."""
    # Whoever may read a room that is not public is a member of it already.
    return _membership_ensure(_readable_room(slug, user).room, user, Role.MEMBER)


def member_add(
    *, slug: str, actor: User, username: str, role: str = Role.MEMBER
) -> tuple[Membership, bool]:
    """Add (invite) a user to a room with a role (True), or leave a member as they are (False).

    Owners may add with any role, admins as members; a direct room keeps its two people.
    """
    visible = _readable_room(slug, actor)
    _not_direct(visible.room)
    if role not in Role.values:
        raise ChatError(ChatErrorCode.INVALID_MEMBERSHIP, f"role: one of {', '.join(Role)}.")
    if not access.may_manage(visible.role) or not access.may_grant(visible.role, role):
        raise _admin_required()
    return _membership_ensure(visible.room, _active_user(username), role)


def member_role_set(*, slug: str, actor: User, user_id: int, role: str | None = None) -> Membership:
    """Give a member another role: the room's owners only (a room keeps an owner). No role:
    the member as they are, to whoever may read the room."""
    visible = _readable_room(slug, actor)
    if role is None:
        return _member(visible.room, user_id)
    _not_direct(visible.room)
    if role not in Role.values:
        raise ChatError(ChatErrorCode.INVALID_MEMBERSHIP, f"role: one of {', '.join(Role)}.")
    with transaction.atomic():
        room = _locked(visible.room)
        member = _member(room, user_id)
        if not access.may_remove(visible.role, member.role) or not access.may_grant(
            visible.role, role
        ):
            raise _admin_required()
        if member.role == Role.OWNER and role != Role.OWNER:
            _keep_an_owner(room)
        member.role = role
        member.save(update_fields=["role"])
    return member


def member_remove(*, slug: str, actor: User, user_id: int) -> None:
    """Remove a member, or leave (`user_id` is the actor's own): owners remove anyone, admins
    members. A room keeps an owner, a direct room its two people. Once committed, the removed
    user's subscriptions to a room they may no longer read end, in every server process."""
    visible = _readable_room(slug, actor)
    _not_direct(visible.room)
    leaving = user_id == actor.pk
    with transaction.atomic():
        room = _locked(visible.room)
        member = _member(room, user_id)
        if not leaving and not access.may_remove(visible.role, member.role):
            raise _admin_required()
        if member.role == Role.OWNER:
            _keep_an_owner(room)
        member.delete()
        reason = "left" if leaving else "removed"
        publish_on_commit(account_group(user_id), room_removed_event(room.slug, reason))
        if not access.may_read(room.kind, None):
            publish_on_commit(room_group(room.slug), access_ended_event(room.slug, user_id, reason))


def room_delete(*, slug: str, actor: User) -> None:
    """Delete a room with its messages, their changes and its memberships: its owners only (a
    direct room is not deleted). Once committed, every subscription to it ends (`deleted`) in
    every server process, and each member's `rooms:mine` loses it."""
    visible = _readable_room(slug, actor)
    if not access.may_delete_room(visible.room.kind, visible.role):
        raise ChatError(ChatErrorCode.ROOM_OWNER_REQUIRED, "Only the room's owners may delete it.")
    with transaction.atomic():
        room = _locked(visible.room)
        members = list(Membership.objects.filter(room=room).values_list("user_id", flat=True))
        room.delete()
        publish_on_commit(room_group(slug), access_ended_event(slug, None, "deleted"))
        for user_id in members:
            publish_on_commit(account_group(user_id), room_removed_event(slug, "deleted"))


def _readable_room(slug: str, user: User) -> VisibleRoom:
    visible = room_get(slug=slug, viewer=user)
    if visible is None:
        raise room_not_found(slug)
    return visible


def _locked(room: Room) -> Room:
    """The room's row, locked until the transaction ends (membership changes take turns)."""
    return Room.objects.select_for_update().get(pk=room.pk)


def _member(room: Room, user_id: int) -> Membership:
    member = Membership.objects.filter(room=room, user_id=user_id).select_related("user").first()
    if member is None:
        raise ChatError(
            ChatErrorCode.ROOM_NOT_FOUND, f"User {user_id} is not a member of {room.slug!r}."
        )
    return member


def _keep_an_owner(room: Room) -> None:
    """Refuse to take away the room's last owner."""
    if Membership.objects.filter(room=room, role=Role.OWNER).count() < 2:
        raise ChatError(
            ChatErrorCode.LAST_OWNER, "A room keeps an owner: make another member owner first."
        )


def _not_direct(room: Room) -> None:
    if room.kind == RoomKind.DIRECT:
        raise ChatError(
            ChatErrorCode.INVALID_MEMBERSHIP, "A direct room always has its two people."
        )


def _membership_ensure(room: Room, user: User, role: str) -> tuple[Membership, bool]:
    existing = Membership.objects.filter(room=room, user=user).select_related("user").first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            # From the room's present on: joining does not make its whole past unread.
            member = Membership.objects.create(
                room=room, user=user, role=role, last_read_seq=room.last_seq
            )
            room_states_announce_later(room_id=room.pk, user_ids=[user.pk])
            return member, True
    except IntegrityError:  # added at the same moment by someone else
        return Membership.objects.select_related("user").get(room=room, user=user), False


def _active_user(username: str) -> User:
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ChatError(ChatErrorCode.USER_NOT_FOUND, f"No user {username!r}.")
    return user


def _admin_required() -> ChatError:
    return ChatError(
        ChatErrorCode.ROOM_ADMIN_REQUIRED, "Only the room's owners and admins may do this."
    )


@dataclass(frozen=True)
class Poster:
    """Who posts: a signed-in user, or an anonymous client known by its address.

    The interface that took the post says which address (REST: the peer, or the client that
    `NUM_PROXIES` trusted proxies name; a socket: the ASGI scope's client).
    """

    user: User | None
    address: str

    @property
    def rate_key(self) -> str:
        """Whose posting budget a post spends: the user's, else the address's."""
        return f"user:{self.user.pk}" if self.user is not None else f"addr:{self.address}"


@dataclass(frozen=True)
class PostResult:
    message: Message
    created: bool  # False when `client_id` named a message posted before


@dataclass(frozen=True)
class Post:
    """One post asked for: to the room with this slug, by this poster."""

    room: str
    poster: Poster
    body: str
    client_id: str | None = None


def message_post(
    *, room: Room, poster: Poster, body: str, client_id: str | None = None
) -> PostResult:
    """Append a message with the room's next `seq` and broadcast it after commit.

    The rules are `messages_post`'s; a refusal is raised as a `ChatError`.
    """
    outcome = messages_post([Post(room.slug, poster, body, client_id)])[0]
    if isinstance(outcome, ChatError):
        raise outcome
    return outcome


# Attempts of a batch that lost a race for a client_id to a concurrent transaction (PostgreSQL).
APPEND_ATTEMPTS = 3


def messages_post(posts: Sequence[Post]) -> list[PostResult | ChatError]:
    """Append several posts in one transaction: each one's result, or the rule that refused it.

    Every rule of posting is checked here, whichever interface took the post: the body and
    `client_id`, who may post, that the room exists, and the posting rate (CHAT_POST_RATE, one
    budget per user or anonymous address, spent in the same transaction). A `client_id` seen
    before in the room is answered with that message and spends nothing, even past the rate;
    used by another author, it is a conflict. Each room's row is locked while its posts take
    the next `seq`s, so concurrent posts (any process) commit in `seq` order with no gap; each
    message is broadcast once the transaction commits.

    Posts that arrive together (a socket server's concurrent `chat.send`s) share one commit:
    a handful of statements for the whole batch instead of per post. Locks are taken in one
    order (budgets by key, then rooms by slug), so concurrent batches never deadlock.
    """
    outcomes: list[PostResult | ChatError | None] = [_refusal(post) for post in posts]
    attempts = 0
    # First as if every client_id were new (the unique index tells otherwise, and the batch
    # is then rolled back): a retry is rare, and looking for earlier posts is a query.
    careful = False
    while True:
        todo = [n for n, outcome in enumerate(outcomes) if outcome is None]
        if not todo:
            appended = {}
            break
        try:
            with transaction.atomic():
                appended = _append(posts, todo, careful=careful)
            break
        except _Retried:
            careful = True
        except _Refused as refused:
            # Rolled back, budgets included: those posts are refused, the others go again.
            for n, refusal in refused.outcomes.items():
                outcomes[n] = refusal
        except IntegrityError:
            # Another transaction committed one of these client_ids after this one looked
            # (PostgreSQL, posts in parallel): look again, and answer with that post.
            attempts += 1
            if attempts == APPEND_ATTEMPTS:
                raise
    for n, outcome in appended.items():
        outcomes[n] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


class _Retried(Exception):
    """A post of the batch names a client_id already in its room."""


class _Refused(Exception):
    """Posts of the batch to no room, or to one where their poster may not post."""

    def __init__(self, outcomes: dict[int, ChatError]) -> None:
        super().__init__(f"{len(outcomes)} posts refused")
        self.outcomes = outcomes


def _refusal(post: Post) -> ChatError | None:
    """What refuses a post before the database is asked: its text, or who posts."""
    try:
        _check_body(post.body)
        _check_client_id(post.client_id)
    except ChatError as refused:
        return refused
    if post.poster.user is None and not settings.SWITCHBOARD_ANONYMOUS_POSTING:
        return ChatError(ChatErrorCode.POSTING_NOT_ALLOWED, "Sign in to post in this room.")
    return None


def _append(
    posts: Sequence[Post], todo: list[int], *, careful: bool
) -> dict[int, PostResult | ChatError]:
    """Inside the transaction: retries answered, budgets spent, rooms locked, rows written."""
    outcomes: dict[int, PostResult | ChatError] = {}
    keyed: dict[int, tuple[str, str]] = {}  # post -> (room, client_id), when it has one
    for n in todo:
        client_id = posts[n].client_id
        if client_id is not None:
            keyed[n] = (posts[n].room, client_id)
    # Looked for as their poster may see them: none in a room the poster may not read.
    wanted: dict[tuple[str, int | None], set[str]] = {}
    for n, (slug, client_id) in keyed.items() if careful else ():
        wanted.setdefault((slug, _author_id(posts[n].poster)), set()).add(client_id)
    earlier = {
        (slug, client_id, viewer): found
        for slug, viewer in sorted(wanted, key=lambda key: (key[0], key[1] or 0))
        for client_id, found in store.earlier_posts(
            slug, sorted(wanted[slug, viewer]), viewer
        ).items()
    }
    retries: dict[int, int] = {}  # post -> the earlier message's id
    repeats: dict[int, int] = {}  # post -> the post of this batch it repeats
    first_of: dict[tuple[str, str], int] = {}
    fresh: list[int] = []
    for n in todo:
        author_id = _author_id(posts[n].poster)
        key = keyed.get(n)
        if key is None:
            fresh.append(n)
        elif (*key, author_id) in earlier:
            pk, earlier_author = earlier[*key, author_id]
            if earlier_author == author_id:
                retries[n] = pk
            else:
                outcomes[n] = _conflict()
        elif key in first_of:
            if _author_id(posts[first_of[key]].poster) == author_id:
                repeats[n] = first_of[key]
            else:
                outcomes[n] = _conflict()
        else:
            first_of[key] = n
            fresh.append(n)
    now = timezone.now()
    allowed = _spend_budgets(posts, fresh, now, outcomes, careful=careful)
    _write(posts, allowed, now, outcomes)
    if retries:
        found = Message.objects.in_bulk(list(retries.values()))
        for n, pk in retries.items():
            outcomes[n] = PostResult(found[pk], created=False)
    for n, first in repeats.items():
        result = outcomes[first]
        outcomes[n] = (
            PostResult(result.message, created=False) if isinstance(result, PostResult) else result
        )
    return outcomes


def _spend_budgets(
    posts: Sequence[Post],
    fresh: list[int],
    now: datetime,
    outcomes: dict[int, Any],
    *,
    careful: bool,
) -> list[int]:
    """Spend each poster's budget on their new posts, in order: the posts it allows.

    Not yet `careful` (earlier posts not looked for), a refused post with a client_id may be
    a retry, which is answered with its post whatever the budget: the batch goes again
    carefully.
    """
    allowed_count, period = parse_rate(settings.CHAT_POST_RATE)
    period_no, into = divmod(now.timestamp(), period)
    by_poster: dict[str, list[int]] = {}
    for n in fresh:
        by_poster.setdefault(posts[n].poster.rate_key, []).append(n)
    allowed: list[int] = []
    for who in sorted(by_poster):
        wanting = by_poster[who]
        hits, earlier = store.spend(who, int(period_no), len(wanting))
        before = hits - len(wanting)  # spent earlier in this period
        fading = math.floor(earlier * (1 - into / period))  # the previous period's weight
        room = max(0, min(len(wanting), allowed_count - fading - before))
        allowed += wanting[:room]
        refused = wanting[room:]
        if not careful and any(posts[n].client_id is not None for n in refused):
            raise _Retried
        if refused:
            store.give_back(who, int(period_no), len(refused))
            wait = math.ceil(
                retry_after(allowed_count, period, into, earlier, min(before + room, allowed_count))
            )
            for n in refused:
                outcomes[n] = ChatError(
                    ChatErrorCode.RATE_LIMITED,
                    f"Too many messages; try again in {wait} s.",
                    retry_after=wait,
                )
    return sorted(allowed)


def _write(
    posts: Sequence[Post], allowed: list[int], now: datetime, outcomes: dict[int, Any]
) -> None:
    """Lock each room, take its next `seq`s and write its messages, announced after commit.

    Who may post is read with the lock (the room's kind and posting, a poster's role), so a
    post to a public room takes no statement more; posts by several members to another room
    read their roles in one more. A post its poster may not make is refused, as for an unknown
    room when they may not read it.
    """
    by_room: dict[str, list[int]] = {}
    for n in allowed:
        by_room.setdefault(posts[n].room, []).append(n)
    refused: dict[int, ChatError] = {}
    for slug in sorted(by_room):
        ordered = by_room[slug]
        first_author = _author_id(posts[ordered[0]].poster)
        locked = store.lock_room(slug, len(ordered), now, first_author)
        if locked is None:
            refused.update((n, room_not_found(slug)) for n in ordered)
            continue
        refused.update(_may_not_post(locked, slug, [(n, posts[n]) for n in ordered]))
        if refused:
            continue  # all of it is rolled back
        room_id, last_seq = locked.id, locked.last_seq
        messages = [
            Message(
                room_id=room_id,
                seq=last_seq - len(ordered) + 1 + offset,
                author=posts[n].poster.user,
                author_name=_author_name(posts[n].poster),
                body=posts[n].body,
                created_at=now,
                client_id=posts[n].client_id,
            )
            for offset, n in enumerate(ordered)
        ]
        ids = store.insert(
            [
                (m.room_id, m.seq, m.author_id, m.author_name, m.body, m.created_at, m.client_id)
                for m in messages
            ]
        )
        if ids is None:  # a client_id seen before: roll back, look for earlier posts first
            raise _Retried
        for n, message, pk in zip(ordered, messages, ids, strict=True):
            message.pk = pk
            message._state.adding = False
            message._state.db = DEFAULT_DB_ALIAS
            outcomes[n] = PostResult(message, created=True)
            publish_on_commit(room_group(slug), message_event(message, slug))
        transaction.on_commit(functools.partial(room_activity, room_id=room_id), robust=True)
    if refused:  # a refused post spends no budget: roll back, then go again without it
        raise _Refused(refused)


def _may_not_post(
    locked: store.Locked, slug: str, posts: list[tuple[int, Post]]
) -> dict[int, ChatError]:
    """The posts to a locked room that their posters may not make, with the refusal of each."""
    if locked.kind == RoomKind.PUBLIC and locked.posting == Posting.ANYONE:
        return {}
    authors = {_author_id(post.poster) for _, post in posts}
    roles: dict[int | None, str] = {}  # an anonymous poster (None) is no member
    if len(authors) > 1:
        found = store.roles(locked.id, sorted(a for a in authors if a is not None))
        roles.update(found.items())
    elif locked.role is not None:  # the lock read this poster's role
        roles[authors.pop()] = locked.role
    refusals: dict[int, ChatError] = {}
    for n, post in posts:
        role = roles.get(_author_id(post.poster))
        if not access.may_read(locked.kind, role):
            refusals[n] = room_not_found(slug)
        elif not access.may_post(locked.kind, locked.posting, role):
            refusals[n] = ChatError(
                ChatErrorCode.POSTING_NOT_ALLOWED,
                "Only the room's owners and admins may post here."
                if locked.posting == Posting.ADMINS
                else "Only the room's members may post here: join it first.",
            )
    return refusals


@dataclass(frozen=True)
class ChangeResult:
    """A message as a change left it, and the change (its own `seq` in the room).

    `created` is False when the change was made before: a retry with the same `client_id`,
    or the deletion of a message deleted already (then `change` is that deletion).
    """

    message: Message
    change: MessageChange
    created: bool


def message_edit(
    *, slug: str, poster: Poster, message_id: int, body: str, client_id: str | None = None
) -> ChangeResult:
    """Change the text of a message, by its author: the next `seq` of the room is the edit's.

    The message keeps its own `seq`; its `body` and `edited_at` change, and the edit is an
    event of the room's sequence (`message.edited`, replayed by `since`), broadcast after
    commit. The rules are `_message_change`'s; an edit spends the posting budget as a post
    does (CHAT_POST_RATE); a deleted message is not edited (`message_deleted`).
    """
    _check_body(body)
    _check_client_id(client_id)
    return _message_change(slug, poster, message_id, ChangeKind.EDITED, body, client_id)


def message_delete(
    *, slug: str, poster: Poster, message_id: int, client_id: str | None = None
) -> ChangeResult:
    """Delete a message (its author, or the room's owners and admins): it stays as a tombstone
    with no body, and the deletion takes the next `seq` of the room (`message.deleted`).

    The text of the message's earlier edits goes with it. Deleting a deleted message changes
    nothing and answers the first deletion.
    """
    _check_client_id(client_id)
    return _message_change(slug, poster, message_id, ChangeKind.DELETED, "", client_id)


def message_not_found(slug: str, message_id: int) -> ChatError:
    """The answer about a message that is not in a room the asker may read, or no room at all:
    the same, whichever (it tells nothing of a private room)."""
    return ChatError(ChatErrorCode.MESSAGE_NOT_FOUND, f"No message {message_id} in room {slug!r}.")


class _ChangedMeanwhile(Exception):
    """The message was deleted after it was read: read it again."""


def _message_change(
    slug: str, poster: Poster, message_id: int, kind: str, body: str, client_id: str | None
) -> ChangeResult:
    """Every rule of changing a message, whichever interface asked (`chat.access` decides who).

    The message is read with the viewer's role in its room, once, before the transaction
    (nothing in it that decides who may change it ever changes); in the transaction, a
    `client_id` seen before in the room is answered with its change, the room's row is locked
    as its `seq` advances, and the message is changed only if it is not deleted yet: a race
    lost to a deletion, or to a concurrent change with the same `client_id`, reads again.
    """
    user_id = _author_id(poster)
    for attempt in range(1, APPEND_ATTEMPTS + 1):
        found = store.message(slug, message_id, user_id)
        if found is None:
            raise message_not_found(slug, message_id)
        message, role = found
        allowed = (
            access.may_edit(message.author_id, user_id)
            if kind == ChangeKind.EDITED
            else access.may_delete(message.author_id, user_id, role)
        )
        if not allowed:
            raise ChatError(
                ChatErrorCode.NOT_MESSAGE_AUTHOR,
                "Only its author may edit a message."
                if kind == ChangeKind.EDITED
                else "Only its author, or the room's owners and admins, may delete a message.",
            )
        try:
            with transaction.atomic():
                return _apply_change(slug, poster, message, kind, body, client_id)
        except (IntegrityError, _ChangedMeanwhile):
            if attempt == APPEND_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _apply_change(
    slug: str, poster: Poster, message: Message, kind: str, body: str, client_id: str | None
) -> ChangeResult:
    """Inside the transaction: a retry answered, the budget spent, the `seq` taken, rows written."""
    user_id = _author_id(poster)
    if client_id is not None:
        earlier = MessageChange.objects.filter(room_id=message.room_id, client_id=client_id).first()
        if earlier is not None:
            if (earlier.actor_id, earlier.message_id, earlier.kind) != (user_id, message.pk, kind):
                raise _conflict()
            return ChangeResult(message, earlier, created=False)
    if message.deleted:
        if kind == ChangeKind.EDITED:
            raise ChatError(ChatErrorCode.MESSAGE_DELETED, "A deleted message is not edited.")
        first = MessageChange.objects.get(message=message, kind=ChangeKind.DELETED)
        return ChangeResult(message, first, created=False)
    now = timezone.now()
    if kind == ChangeKind.EDITED:
        refused: dict[int, Any] = {}
        edit = Post(slug, poster, body, client_id)
        _spend_budgets([edit], [0], now, refused, careful=True)
        if refused:
            raise refused[0]
    seq = store.take_seq(message.room_id)
    if seq is None:  # the room went away meanwhile
        raise message_not_found(slug, message.pk)
    current = Message.objects.filter(pk=message.pk, deleted=False)
    if kind == ChangeKind.EDITED:
        if not current.update(body=body, edited_at=now):
            raise _ChangedMeanwhile
        message.body, message.edited_at = body, now
    else:
        if not current.update(body="", deleted=True):
            raise _ChangedMeanwhile
        if message.edited_at is not None:  # its earlier texts go too
            MessageChange.objects.filter(message=message, kind=ChangeKind.EDITED).update(body="")
        message.body, message.deleted = "", True
    change = MessageChange.objects.create(
        room_id=message.room_id,
        seq=seq,
        message=message,
        kind=kind,
        actor_id=user_id,
        body=body,
        created_at=now,
        client_id=client_id,
    )
    publish_on_commit(room_group(slug), change_event(change, message.seq, slug))
    if kind == ChangeKind.DELETED:  # one unread message fewer for members who had not read it
        transaction.on_commit(
            functools.partial(room_activity, room_id=message.room_id), robust=True
        )
    return ChangeResult(message, change, created=True)


class TypingPace:
    """What the typing rule remembers of one socket (or any other session of a transport).

    Per room: when its last start went out, and whether that start may still show. The
    transport keeps it in memory as long as the socket lives; nothing is stored. `clock` gives
    monotonic seconds; tests move it instead of sleeping.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.rooms: dict[str, tuple[float, bool]] = {}  # room -> (start sent at, showing)

    def forget_until(self, moment: float) -> None:
        """Drop rooms whose last start went out by `moment`: they count as never started."""
        for room in [room for room, (started, _) in self.rooms.items() if started <= moment]:
            del self.rooms[room]


def typing_expires_in() -> int:
    """Seconds a receiver shows a start: two intervals, so a typist's next one comes first."""
    return max(1, math.ceil(2 * settings.CHAT_TYPING_INTERVAL))


def typing_announce(
    *, room: str, user: events.UserRef | None, typing: bool, pace: TypingPace
) -> bool:
    """Tell the room's other subscribers that `user` is typing, or stopped; True if sent.

    Signed-in users only: the indicator says who types, an anonymous socket has no one to name,
    and an anonymous reader of a public room must not be able to signal into it (refused with
    `typing_not_allowed`). Best effort and coalesced per `pace`: at most one start a
    CHAT_TYPING_INTERVAL per room, and a stop only while a start sent from there still shows;
    anything else is dropped, not refused. Never stored: it goes to the room's channel-layer
    group, the way its messages reach its subscribers, and each receiver forgets it after
    `expires_in` seconds. The transport checks first that its socket follows the room.
    """
    if user is None:
        raise ChatError(ChatErrorCode.TYPING_NOT_ALLOWED, "Sign in to show that you are typing.")
    now = pace.clock()
    expires_in = typing_expires_in()
    if room not in pace.rooms:
        pace.forget_until(now - expires_in)  # bounded by the rooms typed in lately
    started, showing = pace.rooms.get(room, (-math.inf, False))
    if typing:
        if now - started < settings.CHAT_TYPING_INTERVAL:
            return False
        pace.rooms[room] = (now, True)
    else:
        if not showing or now - started >= expires_in:
            return False
        pace.rooms[room] = (started, False)  # a new start still waits for the interval
    event = typing_event(room, user, typing=typing, expires_in=expires_in if typing else 0)
    publish_transient(room_group(room), event)
    return True


def _author_id(poster: Poster) -> int | None:
    return poster.user.pk if poster.user is not None else None


def _author_name(poster: Poster) -> str:
    return poster.user.get_username() if poster.user is not None else "anonymous"


def _conflict() -> ChatError:
    return ChatError(ChatErrorCode.CLIENT_ID_CONFLICT, "client_id was used by another author.")


def _check_client_id(client_id: object) -> None:
    if client_id is not None:
        _check_text(client_id, "client_id", CLIENT_ID_MAX_LENGTH)


def _check_body(body: object) -> None:
    _check_text(body, "The message body", MESSAGE_MAX_LENGTH)


def _check_text(text: object, name: str, max_length: int) -> None:
    """Refuse an empty or over-long text, or one with a NUL, as `invalid_message`."""
    if not isinstance(text, str) or not text:
        raise ChatError(ChatErrorCode.INVALID_MESSAGE, f"{name} is empty.")
    if len(text) > max_length:
        raise ChatError(
            ChatErrorCode.INVALID_MESSAGE, f"{name} is longer than {max_length} characters."
        )
    if "\x00" in text:
        raise ChatError(ChatErrorCode.INVALID_MESSAGE, f"{name} contains a NUL.")


def _first_error(exc: ValidationError) -> str:
    for field, messages in exc.message_dict.items():
        return f"{field}: {messages[0]}"
    return str(exc)


# ------------------------------------------------------------------ read state


@dataclass(frozen=True)
class ReadResult:
    room: Room
    state: ReadState  # the member's read position and unread count, as stored or about to be


def _read_gate() -> LatestValueGate:
    return LatestValueGate("read", window=settings.CHAT_READ_WINDOW)


def read_state_get(*, slug: str, user: User) -> ReadResult:
    """A member's read position in a room and their unread count (one query).

    A room the user may not read is `not_found`; a public room they read without being a
    member is `not_a_member`: read state is kept for members only (they join to keep it).
    """
    visible = room_get(slug=slug, viewer=user, with_read=True)
    if visible is None:
        raise room_not_found(slug)
    if visible.read is None:
        raise ChatError(
            ChatErrorCode.NOT_A_MEMBER, "Read state is kept for members: join the room first."
        )
    return ReadResult(visible.room, visible.read)


def read_mark(*, slug: str, user: User, seq: int, conn_id: str | None = None) -> ReadResult:
    """The member has read the room up to `seq`: their position moves there, never back and
    never past the room's last `seq` (a `seq` beyond it counts as the last).

    Stored at most once a CHAT_READ_WINDOW per member and room, whatever the client sends:
    the first position of a window is written now; later ones are held (the highest) and a
    Celery task (`chat.read_flush`) writes the last a window later. The answer is the position
    as it is, or will be once held positions are written. Each write tells the member's
    sockets (their other tabs, and `rooms:mine`) but `conn_id`, the one that sent it.
    """
    current = read_state_get(slug=slug, user=user)
    room, stored = current.room, current.state.last_read_seq
    wanted = min(max(seq, 0), room.last_seq)
    if wanted <= stored:
        return current
    outcome = _read_gate().offer(who=f"{room.pk}:{user.pk}", value=wanted)
    if outcome == LatestValueGate.WRITE:
        state = _read_store(room_id=room.pk, user_id=user.pk, seq=wanted, conn_id=conn_id)
        if state is not None:
            return ReadResult(room, state)
    elif outcome == LatestValueGate.SCHEDULE:
        ids = (room.pk, user.pk)
        transaction.on_commit(lambda: _flush_later(*ids), robust=True)
    unread = unread_count(room_id=room.pk, user_id=user.pk, last_read_seq=wanted)
    return ReadResult(room, ReadState(wanted, unread))


def read_flush(*, room_id: int, user_id: int) -> int | None:
    """Write the member's held read position, if any (the trailing write of `read_mark`)."""
    held = _read_gate().take(who=f"{room_id}:{user_id}")
    if held is None:
        return None
    state = _read_store(room_id=room_id, user_id=user_id, seq=held, conn_id=None)
    return None if state is None else state.last_read_seq


def _flush_later(room_id: int, user_id: int) -> None:
    from .tasks import flush_read  # the tasks module imports this one

    try:
        flush_read.apply_async((room_id, user_id), countdown=settings.CHAT_READ_WINDOW, retry=False)
    except Exception:  # no broker: write it now rather than lose it
        logger.warning("read state flush not scheduled; written now", exc_info=True)
        read_flush(room_id=room_id, user_id=user_id)


def _read_store(*, room_id: int, user_id: int, seq: int, conn_id: str | None) -> ReadState | None:
    """Move the position forward (never back), then tell the member's sockets; None: the user
    is no longer a member."""
    moved = store.read_write(room_id, user_id, seq)
    found = member_room_states(room_id=room_id, user_ids=[user_id])
    if not found:
        return None
    row = found[0][1]
    if moved:
        publish_on_commit(account_group(user_id), room_read_event(row, conn_id))
    assert row.last_read_seq is not None
    assert row.unread is not None
    return ReadState(row.last_read_seq, row.unread)


# ------------------------------------------------------------------ rooms:mine


def _activity_gate() -> LatestValueGate:
    return LatestValueGate("room-activity", window=settings.CHAT_READ_WINDOW)


def room_activity(*, room_id: int) -> None:
    """Messages were committed in the room: its members' `rooms:mine` hear of it, at most
    once a CHAT_READ_WINDOW (a Celery task reads every member's state in one query). The
    first post of a window is announced at once, later ones together a window later. Runs
    after the post's commit; no query here, and one Redis call at most (none while a trailing
    announcement this process scheduled is due)."""
    now = time.monotonic()
    if _announced_until.get(room_id, 0.0) > now:
        return  # an announcement this process scheduled reads the room after this post
    outcome = _activity_gate().offer(who=str(room_id), value=1)
    if outcome == LatestValueGate.WRITE:
        room_states_announce_later(room_id=room_id)
    elif outcome == LatestValueGate.SCHEDULE:
        room_states_announce_later(room_id=room_id, paced=True)
        if len(_announced_until) > ANNOUNCED_ROOMS_KEPT:
            _announced_until.clear()
        # Runs a window from now at the earliest: what commits until a little before is in it.
        _announced_until[room_id] = now + 0.9 * settings.CHAT_READ_WINDOW


# Per room, until when a trailing announcement this process scheduled covers its new posts:
# they need no Redis call. Kept for this many rooms at most (then forgotten, which costs only
# a Redis call each).
ANNOUNCED_ROOMS_KEPT = 10_000
_announced_until: dict[int, float] = {}


def room_states_announce_later(
    *, room_id: int, user_ids: list[int] | None = None, paced: bool = False
) -> None:
    """Once the transaction commits, have a Celery task tell the room's members (those of
    `user_ids`, if given) how they see the room now (`paced`: a window later, for
    `room_activity`'s trailing announcement)."""
    from .tasks import announce_room_states  # the tasks module imports this one

    def send() -> None:
        try:
            announce_room_states.apply_async(
                (room_id, user_ids, paced),
                countdown=settings.CHAT_READ_WINDOW if paced else 0,
                retry=False,
            )
        except Exception:  # live hints only: the room list over REST is still right
            logger.warning("room state announcement not scheduled", exc_info=True)

    transaction.on_commit(send, robust=True)


def room_states_announce(
    *, room_id: int, user_ids: list[int] | None = None, paced: bool = False
) -> int:
    """Send each member (of `user_ids`, if given) the room as they see it now, to their
    account group (`rooms:mine` on their sockets, in every process): how many were told."""
    if paced:
        _activity_gate().take(who=str(room_id))  # the next window opens now
    found = member_room_states(room_id=room_id, user_ids=user_ids)
    for user_id, row in found:
        publish_on_commit(account_group(user_id), room_state_event(row))
    return len(found)
