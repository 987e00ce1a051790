"""Rooms with members: kinds, roles, who may read, post and manage, decided by the chat domain."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from chat import access, store
from chat.errors import ChatError, ChatErrorCode
from chat.models import Membership, Message, Posting, Role, Room, RoomKind
from chat.selectors import (
    VisibleRoom,
    member_list,
    message_history,
    room_get,
    room_id_get,
    room_list,
)
from chat.services import (
    Post,
    PostResult,
    direct_room_open,
    member_add,
    member_remove,
    member_role_set,
    message_post,
    messages_post,
    room_create,
    room_delete,
    room_ensure,
    room_join,
    room_update,
)
from realtime.kernel.names import account_group, room_group
from tests.factories import RoomFactory, UserFactory, poster
from tests.support.layer import LayerListener

pytestmark = pytest.mark.django_db


def refused(call, *args, **kwargs) -> ChatErrorCode:
    """The code of the ChatError that `call` raises."""
    with pytest.raises(ChatError) as raised:
        call(*args, **kwargs)
    return raised.value.code


@pytest.fixture
def private(owner: User, member: User) -> Room:
    """A private room: olive owns it, mia is a member, sam is not."""
    room = room_create(slug="secret", title="Secret plans", created_by=owner, kind="private")
    member_add(slug="secret", actor=owner, username=member.username)
    return room


def roles(room: Room) -> dict[str, str]:
    return {m.user.username: m.role for m in member_list(room=room)}


# ---------------------------------------------------------------- the rules themselves


@pytest.mark.parametrize(
    ("kind", "role", "readable"),
    [
        ("public", None, True),
        ("private", None, False),
        ("direct", None, False),
        *[(kind, role, True) for kind in RoomKind for role in Role],
    ],
)
def test_who_may_read(kind, role, readable):
    assert access.may_read(kind, role) is readable


@pytest.mark.parametrize(
    ("kind", "posting", "role"), list(itertools.product(RoomKind, Posting, [None, *Role]))
)
def test_the_statements_filter_rooms_as_the_rules_say(kind, posting, role):
    # given: a room of each kind and posting, and a viewer with each role (or none)
    viewer = UserFactory.create()
    room = RoomFactory.create(kind=kind, posting=posting)
    if role is not None:
        Membership.objects.create(room=room, user=viewer, role=role)

    # when: the statements written once read it for that viewer, and the viewer posts
    found = store.room(room.slug, viewer.pk)
    outcome = messages_post([Post(room.slug, poster(viewer), "hi")])[0]

    # then: they find it exactly when the rule lets the viewer read it, and the post is taken
    # exactly when the rule lets them post; refused as an unknown room when they may not read
    readable = access.may_read(kind, role)
    assert (found is not None) is readable
    assert (store.room_id(room.slug, viewer.pk) is not None) is readable
    assert (store.readable_last_seq(room.pk, viewer.pk) is not None) is readable
    assert (room.slug in [seen.room.slug for seen in room_list(viewer=viewer)]) is readable
    if access.may_post(kind, posting, role):
        assert isinstance(outcome, PostResult)
    else:
        assert isinstance(outcome, ChatError)
        expected = (
            ChatErrorCode.ROOM_NOT_FOUND if not readable else ChatErrorCode.POSTING_NOT_ALLOWED
        )
        assert outcome.code == expected


# ---------------------------------------------------------------- creating rooms


def test_the_creator_of_a_room_owns_it(owner):
    room = room_create(slug="mine", created_by=owner, kind="private", posting="admins")

    assert (room.kind, room.posting) == ("private", "admins")
    assert roles(room) == {"olive": "owner"}
    assert room_get(slug="mine", viewer=owner) == VisibleRoom(room, "owner")


def test_a_room_without_a_slug_gets_one_nobody_can_guess(owner):
    first = room_create(created_by=owner, kind="private")
    second = room_create(created_by=owner, kind="private")

    assert first.slug != second.slug
    assert len(first.slug) >= 20


@pytest.mark.parametrize(
    "change", [{"kind": "direct"}, {"kind": "secret"}, {"posting": "nobody"}, {"created_by": None}]
)
def test_room_create_refuses_what_a_room_cannot_be(owner, change):
    arguments = {"slug": "bad", "created_by": owner, "kind": "private", **change}

    assert refused(room_create, **arguments) == ChatErrorCode.INVALID_ROOM
    assert not Room.objects.exists()


def test_a_public_room_is_todays_room(stranger):
    room = room_create(slug="open")

    assert (room.kind, room.posting) == ("public", "anyone")
    assert message_post(room=room, poster=poster(None), body="anonymous").created
    assert message_post(room=room, poster=poster(stranger), body="anyone").created


# ---------------------------------------------------------------- private rooms


def test_a_private_room_is_to_a_stranger_what_an_unknown_slug_is(private, stranger):
    message_post(room=private, poster=poster(private.created_by), body="the plan")

    for viewer in (stranger, None):
        assert room_get(slug="secret", viewer=viewer) is None
        assert room_id_get(slug="secret", viewer=viewer) is None
        assert message_history(slug="secret", viewer=viewer) is None
        assert message_history(slug="secret", viewer=viewer, after=0) is None
        assert "secret" not in [seen.room.slug for seen in room_list(viewer=viewer)]
    assert room_list(viewer=stranger).count() == 0


def test_members_read_a_private_room(private, member):
    message_post(room=private, poster=poster(private.created_by), body="the plan")

    assert room_get(slug="secret", viewer=member) == VisibleRoom(private, "member")
    page = message_history(slug="secret", viewer=member)
    assert page is not None
    assert [m["body"] for m in page.messages] == ["the plan"]
    assert [(s.room.slug, s.role) for s in room_list(viewer=member)] == [("secret", "member")]


def test_a_stranger_posting_into_a_private_room_is_told_there_is_no_such_room(private, stranger):
    with pytest.raises(ChatError) as raised:
        message_post(room=private, poster=poster(stranger), body="let me in")

    assert raised.value.code == ChatErrorCode.ROOM_NOT_FOUND
    assert raised.value.detail == "No room 'secret'."
    assert Room.objects.get(pk=private.pk).last_seq == 0
    assert not Message.objects.exists()


def test_in_one_batch_the_members_posts_are_taken_and_the_strangers_refused(
    private, member, stranger, owner
):
    # given: posts by a member, a stranger and the owner to the room, handed over together
    posts = [
        Post("secret", poster(member), "one"),
        Post("secret", poster(stranger), "intruder"),
        Post("secret", poster(owner), "two"),
        Post("secret", poster(None), "anonymous"),
    ]

    # when
    outcomes = messages_post(posts)

    # then: the members' posts take seqs 1 and 2, with no gap for the refused ones
    assert [o.message.seq if isinstance(o, PostResult) else o.code for o in outcomes] == [
        1,
        ChatErrorCode.ROOM_NOT_FOUND,
        2,
        ChatErrorCode.ROOM_NOT_FOUND,
    ]
    assert Room.objects.get(pk=private.pk).last_seq == 2


def test_a_retried_client_id_is_not_answered_to_a_stranger(private, member, stranger):
    message_post(room=private, poster=poster(member), body="mine", client_id="c1")

    # a stranger's post with that client_id, which the unique index refuses: it is not a
    # conflict (which would tell the room and the client_id exist), but an unknown room
    outcome = messages_post([Post("secret", poster(stranger), "x", "c1")])[0]

    assert isinstance(outcome, ChatError)
    assert outcome.code == ChatErrorCode.ROOM_NOT_FOUND


def test_the_tutorial_route_serves_public_rooms_only(private):
    assert refused(room_ensure, slug="secret") == ChatErrorCode.ROOM_NOT_FOUND
    assert room_ensure(slug="fresh").kind == "public"


# ---------------------------------------------------------------- who may post


@pytest.mark.parametrize(
    ("posting", "who", "allowed"),
    [
        ("members", "owner", True),
        ("members", "member", True),
        ("members", "stranger", False),
        ("members", None, False),
        ("admins", "owner", True),
        ("admins", "member", False),
        ("admins", "stranger", False),
    ],
)
def test_who_may_post_in_a_public_room(owner, member, stranger, posting, who, allowed):
    room = room_create(slug="town", created_by=owner, posting=posting)
    room_join(slug="town", user=member)
    author = {"owner": owner, "member": member, "stranger": stranger, None: None}[who]

    if allowed:
        assert message_post(room=room, poster=poster(author), body="hi").created
    else:
        with pytest.raises(ChatError) as raised:
            message_post(room=room, poster=poster(author), body="hi")
        assert raised.value.code == ChatErrorCode.POSTING_NOT_ALLOWED


def test_a_stranger_joins_a_public_room_and_then_may_post_where_members_may(owner, stranger):
    room = room_create(slug="club", created_by=owner, posting="members")

    assert room_join(slug="club", user=stranger)[1] is True
    assert room_join(slug="club", user=stranger)[1] is False  # again: already a member
    assert message_post(room=room, poster=poster(stranger), body="hello").created


def test_joining_a_private_room_is_as_joining_an_unknown_one(private, stranger):
    assert refused(room_join, slug="secret", user=stranger) == ChatErrorCode.ROOM_NOT_FOUND
    assert refused(room_join, slug="nowhere", user=stranger) == ChatErrorCode.ROOM_NOT_FOUND


# ---------------------------------------------------------------- managing members


def test_owners_add_with_any_role_admins_add_members_members_add_nobody(
    private, owner, member, stranger
):
    admin = UserFactory.create(username="ada")
    member_add(slug="secret", actor=owner, username="ada", role="admin")

    assert refused(member_add, slug="secret", actor=admin, username="sam", role="admin") == (
        ChatErrorCode.ROOM_ADMIN_REQUIRED
    )
    assert refused(member_add, slug="secret", actor=member, username="sam") == (
        ChatErrorCode.ROOM_ADMIN_REQUIRED
    )
    # a member cannot make themselves an admin either
    assert refused(member_add, slug="secret", actor=member, username="mia", role="admin") == (
        ChatErrorCode.ROOM_ADMIN_REQUIRED
    )
    added, created = member_add(slug="secret", actor=admin, username="sam")
    assert (added.role, created) == ("member", True)
    assert roles(private) == {"olive": "owner", "ada": "admin", "mia": "member", "sam": "member"}


def test_adding_a_member_twice_leaves_them_as_they_are(private, owner, member):
    again, created = member_add(slug="secret", actor=owner, username="mia", role="admin")

    assert (again.role, created) == ("member", False)


def test_adding_an_unknown_user_or_to_a_room_one_cannot_see(private, owner, stranger):
    assert refused(member_add, slug="secret", actor=owner, username="nobody") == (
        ChatErrorCode.USER_NOT_FOUND
    )
    assert refused(member_add, slug="secret", actor=stranger, username="sam") == (
        ChatErrorCode.ROOM_NOT_FOUND
    )


def test_a_newly_added_member_reads_the_room_at_once(private, owner, stranger):
    assert room_id_get(slug="secret", viewer=stranger) is None

    member_add(slug="secret", actor=owner, username="sam")

    assert room_id_get(slug="secret", viewer=stranger) == private.pk


def test_removing_and_leaving(private, owner, member, stranger):
    admin = UserFactory.create(username="ada")
    member_add(slug="secret", actor=owner, username="ada", role="admin")
    member_add(slug="secret", actor=owner, username="sam")

    # an admin may not remove the owner, nor a member remove anyone else
    assert refused(member_remove, slug="secret", actor=admin, user_id=owner.pk) == (
        ChatErrorCode.ROOM_ADMIN_REQUIRED
    )
    assert refused(member_remove, slug="secret", actor=member, user_id=stranger.pk) == (
        ChatErrorCode.ROOM_ADMIN_REQUIRED
    )
    # an admin removes a member; a member leaves; the last owner may not leave
    member_remove(slug="secret", actor=admin, user_id=stranger.pk)
    member_remove(slug="secret", actor=member, user_id=member.pk)
    assert refused(member_remove, slug="secret", actor=owner, user_id=owner.pk) == (
        ChatErrorCode.LAST_OWNER
    )
    assert roles(private) == {"olive": "owner", "ada": "admin"}
    # whoever left no longer sees the room: removing them again is an unknown room to them
    assert room_get(slug="secret", viewer=member) is None
    assert refused(member_remove, slug="secret", actor=member, user_id=member.pk) == (
        ChatErrorCode.ROOM_NOT_FOUND
    )


def test_a_room_keeps_an_owner_but_owners_may_hand_over(private, owner, member):
    assert refused(member_role_set, slug="secret", actor=owner, user_id=owner.pk, role="admin") == (
        ChatErrorCode.LAST_OWNER
    )

    member_role_set(slug="secret", actor=owner, user_id=member.pk, role="owner")
    member_remove(slug="secret", actor=owner, user_id=owner.pk)

    assert roles(private) == {"mia": "owner"}


def test_only_owners_change_roles(private, owner, member):
    admin = UserFactory.create(username="ada")
    member_add(slug="secret", actor=owner, username="ada", role="admin")

    assert refused(
        member_role_set, slug="secret", actor=admin, user_id=member.pk, role="admin"
    ) == (ChatErrorCode.ROOM_ADMIN_REQUIRED)
    assert refused(
        member_role_set, slug="secret", actor=member, user_id=member.pk, role="owner"
    ) == (ChatErrorCode.ROOM_ADMIN_REQUIRED)


def test_room_settings_are_for_owners_and_admins(private, owner, member, stranger):
    changed = room_update(slug="secret", actor=owner, title="New plans", posting="admins")

    assert (changed.room.title, changed.room.posting) == ("New plans", "admins")
    assert refused(room_update, slug="secret", actor=member, title="Mine") == (
        ChatErrorCode.ROOM_ADMIN_REQUIRED
    )
    assert refused(room_update, slug="secret", actor=stranger, title="Mine") == (
        ChatErrorCode.ROOM_NOT_FOUND
    )
    assert refused(room_update, slug="secret", actor=owner, title="t" * 201) == (
        ChatErrorCode.INVALID_ROOM
    )
    with pytest.raises(ChatError):
        message_post(room=private, poster=poster(member), body="only admins now")


# ---------------------------------------------------------------- direct rooms


def test_a_direct_room_is_the_same_room_for_the_same_pair(owner, member, stranger):
    first, made = direct_room_open(opener=owner, username="mia")
    again, made_again = direct_room_open(opener=owner, username="mia")
    theirs, made_by_them = direct_room_open(opener=member, username="olive")

    assert (made, made_again, made_by_them) == (True, False, False)
    assert first.room.pk == again.room.pk == theirs.room.pk
    assert first.room.kind == "direct"
    assert first.room.slug.startswith("dm-")
    assert "olive" not in first.room.slug
    assert roles(first.room) == {"olive": "member", "mia": "member"}
    assert room_get(slug=first.room.slug, viewer=stranger) is None
    assert direct_room_open(opener=owner, username="sam")[0].room.pk != first.room.pk


def test_a_direct_room_keeps_its_two_people(owner, member, stranger):
    seen, _ = direct_room_open(opener=owner, username="mia")
    slug = seen.room.slug

    assert refused(direct_room_open, opener=owner, username="olive") == (
        ChatErrorCode.INVALID_MEMBERSHIP
    )
    assert refused(direct_room_open, opener=owner, username="nobody") == (
        ChatErrorCode.USER_NOT_FOUND
    )
    assert refused(member_add, slug=slug, actor=owner, username="sam") == (
        ChatErrorCode.INVALID_MEMBERSHIP
    )
    assert refused(member_remove, slug=slug, actor=owner, user_id=owner.pk) == (
        ChatErrorCode.INVALID_MEMBERSHIP
    )
    assert refused(room_join, slug=slug, user=stranger) == ChatErrorCode.ROOM_NOT_FOUND
    assert message_post(room=seen.room, poster=poster(member), body="hey").created


# ---------------------------------------------------------------- live sockets are told


@pytest.fixture
def listener() -> Iterator[LayerListener]:
    member = LayerListener()
    yield member
    member.close()


def test_a_removal_is_announced_to_the_rooms_group_after_commit(
    private, owner, member, listener, django_capture_on_commit_callbacks
):
    listener.join(room_group("secret"))
    public = room_create(slug="square", created_by=owner)
    room_join(slug="square", user=member)
    listener.join(room_group(public.slug))

    with django_capture_on_commit_callbacks(execute=True):
        member_remove(slug="square", actor=owner, user_id=member.pk)  # may still read it
        member_remove(slug="secret", actor=member, user_id=member.pk)

    events = listener.wait_for(lambda events: bool(events))
    assert [(e["type"], e["room"], e["user_id"], e["reason"]) for e in events] == [
        ("room.access_ended", "secret", member.pk, "left")
    ]


# ---------------------------------------------------------------- deleting a room


def test_an_owner_deletes_a_room_with_its_messages_and_members(private, owner, member):
    message_post(room=private, poster=poster(member), body="soon gone")
    admin = UserFactory.create()
    member_add(slug="secret", actor=owner, username=admin.username, role=Role.ADMIN)

    # only its owners may: admins, members and strangers are refused as they see it
    assert refused(room_delete, slug="secret", actor=admin) == ChatErrorCode.ROOM_OWNER_REQUIRED
    assert refused(room_delete, slug="secret", actor=member) == ChatErrorCode.ROOM_OWNER_REQUIRED
    stranger = UserFactory.create()
    assert refused(room_delete, slug="secret", actor=stranger) == ChatErrorCode.ROOM_NOT_FOUND

    room_delete(slug="secret", actor=owner)

    assert not Room.objects.filter(slug="secret").exists()
    assert not Message.objects.filter(room_id=private.pk).exists()
    assert not Membership.objects.filter(room_id=private.pk).exists()
    assert room_get(slug="secret", viewer=owner) is None
    # the slug is free again
    assert room_create(slug="secret", created_by=member).slug == "secret"


def test_a_direct_room_is_not_deleted(owner, member):
    seen, _ = direct_room_open(opener=owner, username="mia")

    for who in (owner, member):
        code = refused(room_delete, slug=seen.room.slug, actor=who)
        assert code == ChatErrorCode.ROOM_OWNER_REQUIRED


def test_a_deletion_ends_every_subscription_and_tells_each_member_after_commit(
    private, owner, member, listener, django_capture_on_commit_callbacks
):
    for group in (room_group("secret"), account_group(owner.pk), account_group(member.pk)):
        listener.join(group)

    with django_capture_on_commit_callbacks(execute=True):
        room_delete(slug="secret", actor=owner)

    events = listener.wait_for(lambda events: len(events) >= 3)
    ended = [e for e in events if e["type"] == "room.access_ended"]
    removed = [e for e in events if e["type"] == "room.removed"]
    assert [(e["room"], e["user_id"], e["reason"]) for e in ended] == [("secret", None, "deleted")]
    assert sorted(e["group"] for e in removed) == sorted(
        [account_group(owner.pk), account_group(member.pk)]
    )
    assert {e["frame"]["reason"] for e in removed} == {"deleted"}
