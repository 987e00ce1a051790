"""Read state in the chat domain: a member's position only moves forward, never past the room's
last `seq`, is stored at most once a window whatever the client sends, and unread counts count
messages others wrote."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import services
from chat.errors import ChatError, ChatErrorCode
from chat.models import Membership, Room
from chat.selectors import my_rooms, room_get, room_list, seen_by
from chat.services import (
    member_add,
    member_remove,
    message_delete,
    message_edit,
    message_post,
    read_flush,
    read_mark,
    read_state_get,
    room_create,
    room_join,
    room_states_announce,
    room_update,
)
from realtime.kernel.events import UNREAD_CAP
from realtime.kernel.names import account_group
from realtime.kernel.ratelimit import LatestValueGate
from tests.factories import RoomFactory, UserFactory, poster
from tests.support.layer import LayerListener
from tests.support.processes import Service, wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_gates")]

_whos = itertools.count()


@pytest.fixture
def room(owner: User, member: User) -> Room:
    """A private room of olive's with mia, and three messages by olive."""
    room = room_create(slug="secret", created_by=owner, kind="private")
    member_add(slug="secret", actor=owner, username=member.username)
    for n in range(3):
        message_post(room=room, poster=poster(owner), body=f"m{n}")
    return room


def refused(call, **kwargs) -> ChatErrorCode:
    with pytest.raises(ChatError) as raised:
        call(**kwargs)
    return raised.value.code


def stored(room: Room, user: User) -> int:
    return Membership.objects.get(room=room, user=user).last_read_seq


# ---------------------------------------------------------------- the rules


def test_a_member_added_later_has_read_the_rooms_past(room, owner):
    # given: three messages before
    UserFactory.create(username="late")
    member_add(slug="secret", actor=owner, username="late")

    state = read_state_get(slug="secret", user=User.objects.get(username="late")).state

    assert (state.last_read_seq, state.unread) == (3, 0)


def test_marking_read_moves_forward_and_counts_what_is_left(room, owner, member):
    # given: mia joined before the messages
    Membership.objects.filter(room=room, user=member).update(last_read_seq=0)

    # when
    done = read_mark(slug="secret", user=member, seq=2)

    # then
    assert (done.state.last_read_seq, done.state.unread) == (2, 1)
    assert stored(room, member) == 2


def test_a_position_far_ahead_is_taken_as_the_rooms_last(room, member):
    done = read_mark(slug="secret", user=member, seq=2**62)

    assert done.state.last_read_seq == 3
    assert stored(room, member) == 3
    assert done.state.unread == 0


def test_a_position_never_goes_back(room, member):
    read_mark(slug="secret", user=member, seq=3)

    done = read_mark(slug="secret", user=member, seq=1)
    read_flush(room_id=room.pk, user_id=member.pk)  # nothing held: nothing written

    assert done.state.last_read_seq == 3
    assert stored(room, member) == 3


def test_unread_counts_messages_others_wrote_not_seqs(room, owner, member):
    # given: mia from the start; then two of her own messages and one more of olive's
    Membership.objects.filter(room=room, user=member).update(last_read_seq=0)
    message_post(room=room, poster=poster(member), body="mine")
    message_post(room=room, poster=poster(member), body="mine too")
    message_post(room=room, poster=poster(owner), body="theirs")
    # a seq that no message took (edits and deletes will take seqs of their own)
    Room.objects.filter(pk=room.pk).update(last_seq=10)

    # then: olive's four, and nothing of mia's own; olive has read none of mia's two
    assert read_state_get(slug="secret", user=member).state.unread == 4
    Membership.objects.filter(room=room, user=owner).update(last_read_seq=0)
    assert read_state_get(slug="secret", user=owner).state.unread == 2


def test_edits_and_deletions_take_seqs_but_are_not_unread_and_a_deleted_message_is_not(
    room, owner, member
):
    # given: mia has read everything; olive posts two, edits one and deletes the other
    Membership.objects.filter(room=room, user=member).update(
        last_read_seq=Room.objects.get(pk=room.pk).last_seq
    )
    kept = message_post(room=room, poster=poster(owner), body="kept").message
    gone = message_post(room=room, poster=poster(owner), body="gone").message
    message_edit(slug="secret", poster=poster(owner), message_id=kept.pk, body="kept, edited")
    message_delete(slug="secret", poster=poster(owner), message_id=gone.pk)

    # then: four seqs later, one message is unread: the edited one, once
    assert Room.objects.get(pk=room.pk).last_seq == stored(room, member) + 4
    assert read_state_get(slug="secret", user=member).state.unread == 1


def test_unread_counts_stop_at_the_cap():
    # given
    reader, writer = UserFactory.create(), UserFactory.create()
    room = room_create(slug="busy", created_by=writer)
    room_join(slug="busy", user=reader)
    for n in range(UNREAD_CAP + 5):
        message_post(room=room, poster=poster(writer), body=f"m{n}")

    assert read_state_get(slug="busy", user=reader).state.unread == UNREAD_CAP


def test_read_state_is_for_members_and_a_room_you_may_not_read_is_unknown(room, owner):
    stranger = UserFactory.create()
    public = RoomFactory.create(slug="open")

    assert refused(read_mark, slug="secret", user=stranger, seq=1) == ChatErrorCode.ROOM_NOT_FOUND
    assert refused(read_state_get, slug="secret", user=stranger) == ChatErrorCode.ROOM_NOT_FOUND
    assert refused(read_mark, slug="nowhere", user=stranger, seq=1) == ChatErrorCode.ROOM_NOT_FOUND
    assert refused(read_mark, slug=public.slug, user=stranger, seq=1) == ChatErrorCode.NOT_A_MEMBER
    room_join(slug=public.slug, user=stranger)
    assert read_state_get(slug=public.slug, user=stranger).state.last_read_seq == 0


def test_the_room_list_and_a_room_carry_the_viewers_read_state_in_their_one_query(
    room, member, django_assert_num_queries
):
    Membership.objects.filter(room=room, user=member).update(last_read_seq=1)
    RoomFactory.create(slug="public-one")

    with django_assert_num_queries(1):
        page = room_list(viewer=member)[0:10]
    with django_assert_num_queries(1):
        one = room_get(slug="secret", viewer=member, with_read=True)

    by_slug = {seen.room.slug: seen for seen in page}
    assert by_slug["secret"].read is not None
    assert (by_slug["secret"].read.last_read_seq, by_slug["secret"].read.unread) == (1, 2)
    assert by_slug["public-one"].read is None  # not a member
    assert one is not None
    assert one.read == by_slug["secret"].read


def test_seen_by_lists_members_furthest_first_up_to_the_size_set(room, owner, member, settings):
    read_mark(slug="secret", user=owner, seq=3)

    readers = seen_by(room=room)
    settings.CHAT_SEEN_BY_MAX_MEMBERS = 1

    assert (readers[0].username, readers[0].last_read_seq) == ("olive", 3)
    assert {r.username for r in readers} == {"olive", "mia"}
    assert refused(seen_by, room=room) == ChatErrorCode.ROOM_TOO_LARGE


@pytest.fixture
def listener() -> Iterator[LayerListener]:
    member = LayerListener()
    yield member
    member.close()


def test_a_write_tells_the_members_sockets_with_the_one_that_read_named(
    room, member, listener, django_capture_on_commit_callbacks
):
    listener.join(account_group(member.pk))

    with django_capture_on_commit_callbacks(execute=True):
        read_mark(slug="secret", user=member, seq=3, conn_id="abc.1")

    event = listener.wait_for(bool)[0]

    assert event["type"] == "room.read"
    assert event["conn_id"] == "abc.1"
    assert event["read"] == {
        "type": "read",
        "room": "secret",
        "last_read_seq": 3,
        "unread": 0,
    }
    assert event["frame"]["room"]["unread"] == 0


# ---------------------------------------------------------------- the gate


def test_the_gate_lets_one_value_a_window_through_and_keeps_the_highest_of_the_rest():
    gate = LatestValueGate("test", window=60)
    who = f"g{next(_whos)}"

    answers = [gate.offer(who=who, value=v) for v in (5, 9, 7, 8)]

    assert answers == ["write", "schedule", "held", "held"]
    assert gate.take(who=who) == 9
    assert gate.take(who=who) is None
    # the trailing write opened the next window: a value now waits again
    assert gate.offer(who=who, value=10) == "schedule"


def test_a_flood_of_reads_is_one_write_now_and_one_write_of_the_last_value_later(room, member):
    # given: mia from the start of a room of 100 messages
    Membership.objects.filter(room=room, user=member).update(last_read_seq=0)
    for n in range(97):
        message_post(room=room, poster=poster(room.created_by), body=f"more {n}")

    # when: 100 positions within a second
    with CaptureQueriesContext(connection) as queries:
        answers = [read_mark(slug="secret", user=member, seq=seq).state for seq in range(1, 101)]

    # then: the first stored at once, every answer the position as it will be
    writes = [q for q in queries if re.match(r"\s*UPDATE .*chat_membership", q["sql"])]
    assert len(writes) == 1
    assert stored(room, member) == 1
    assert [a.last_read_seq for a in answers] == list(range(1, 101))
    assert answers[-1].unread == 0
    # the trailing write (the Celery task's) stores the last one, once
    assert read_flush(room_id=room.pk, user_id=member.pk) == 100
    assert read_flush(room_id=room.pk, user_id=member.pk) is None
    assert stored(room, member) == 100


@pytest.mark.django_db(transaction=True)
def test_the_trailing_write_is_done_by_a_celery_worker(worker: Service):
    # given
    owner, member = UserFactory.create(username="olive"), UserFactory.create(username="mia")
    room = room_create(slug="flood", created_by=owner)
    room_join(slug="flood", user=member)
    Membership.objects.filter(room=room, user=member).update(last_read_seq=0)
    for n in range(100):
        message_post(room=room, poster=poster(owner), body=f"m{n}")
    log_start = len(worker.log())

    # when: 100 positions within a second
    with CaptureQueriesContext(connection) as queries:
        for seq in range(1, 101):
            read_mark(slug="flood", user=member, seq=seq)

    # then: one write now, and the worker's one trailing write with the last value
    writes = [q for q in queries if re.match(r"\s*UPDATE .*chat_membership", q["sql"])]
    assert len(writes) == 1
    assert stored(room, member) == 1
    wait_until(lambda: stored(room, member) == 100, timeout=20)
    # one task wrote it (another test's flush, done meanwhile, writes another value)
    wait_until(lambda: flushes_of_100(worker.log()[log_start:]), timeout=10)
    assert flushes_of_100(worker.log()[log_start:]) == 1


def flushes_of_100(log: str) -> int:
    """How many `chat.read_flush` tasks in the worker's log wrote the position 100."""
    return len(re.findall(r"chat\.read_flush\[[^\]]+\] succeeded in [0-9.]+s: 100\b", log))


def test_membership_removal_tells_the_removed_users_sockets(
    room, owner, member, listener, django_capture_on_commit_callbacks
):
    listener.join(account_group(member.pk))

    with django_capture_on_commit_callbacks(execute=True):
        member_remove(slug="secret", actor=owner, user_id=member.pk)

    event = listener.wait_for(bool)[0]

    assert event["type"] == "room.removed"
    assert event["frame"] == {
        "type": "room.removed",
        "channel": "rooms:mine",
        "room": "secret",
        "reason": "removed",
    }


def test_posts_in_a_busy_room_ask_redis_about_its_activity_twice_at_most(
    room, owner, monkeypatch, django_capture_on_commit_callbacks
):
    # given: the Redis calls of the room-activity gate counted (the gate itself runs as it is)
    monkeypatch.setattr(services, "_announced_until", {})
    answers: list[str] = []
    offer = LatestValueGate.offer

    def counted(gate: LatestValueGate, *, who: str, value: int) -> str:
        answer = offer(gate, who=who, value=value)
        if gate.scope == "room-activity":
            answers.append(answer)
        return answer

    monkeypatch.setattr(LatestValueGate, "offer", counted)

    # when: 20 posts, each its own commit
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(20):
            message_post(room=room, poster=poster(owner), body=f"busy {n}")

    # then: announced now, and once more a window later; the other posts cost no Redis call
    assert answers == ["write", "schedule"]


def test_a_deletion_tells_the_rooms_members_of_their_unread_counts_an_edit_does_not(
    room, owner, monkeypatch, django_capture_on_commit_callbacks
):
    announced: list[int] = []
    monkeypatch.setattr(services, "room_activity", lambda *, room_id: announced.append(room_id))
    message = message_post(room=room, poster=poster(owner), body="oops").message
    announced.clear()

    with django_capture_on_commit_callbacks(execute=True):
        message_edit(slug="secret", poster=poster(owner), message_id=message.pk, body="oops!")
    edited = list(announced)
    with django_capture_on_commit_callbacks(execute=True):
        message_delete(slug="secret", poster=poster(owner), message_id=message.pk)

    assert (edited, announced) == ([], [room.pk])


# ---------------------------------------------------------------- rooms:mine


def test_a_rooms_state_goes_to_each_member_as_they_see_it_and_to_nobody_else(
    room, owner, member, listener, django_capture_on_commit_callbacks
):
    # given: a stranger, and mia's place at the first message
    stranger = UserFactory.create()
    read_mark(slug="secret", user=member, seq=1)
    for user in (owner, member, stranger):
        listener.join(account_group(user.pk))

    # when: the room is renamed, and its members told
    with django_capture_on_commit_callbacks(execute=True) as announced:
        room_update(slug="secret", actor=owner, title="New name")
    with django_capture_on_commit_callbacks(execute=True):
        told = room_states_announce(room_id=room.pk)

    # then: one announcement was scheduled; each member got their own view of the room
    assert len(announced) == 1
    assert told == 2
    events = listener.wait_for(lambda events: len(events) >= 2)
    states = {e["group"]: e["frame"]["room"] for e in events if e["type"] == "room.state"}
    assert set(states) == {account_group(owner.pk), account_group(member.pk)}
    assert states[account_group(member.pk)]["title"] == "New name"
    assert (
        states[account_group(member.pk)]["unread"],
        states[account_group(owner.pk)]["unread"],
    ) == (
        2,
        0,
    )


def test_my_rooms_are_the_memberships_most_recently_active_first_and_say_when_cut(owner):
    for slug in ("quiet", "busy", "busier"):
        made = room_create(slug=slug, created_by=owner)
        for _ in range({"quiet": 0, "busy": 1, "busier": 2}[slug]):
            message_post(room=made, poster=poster(owner), body="x")
    RoomFactory.create(slug="not-mine")

    everything = my_rooms(user_id=owner.pk)
    cut = my_rooms(user_id=owner.pk, limit=2)

    assert [row.room.slug for row in everything.rows] == ["busier", "busy", "quiet"]
    assert everything.truncated is False
    assert [row.room.slug for row in cut.rows] == ["busier", "busy"]
    assert cut.truncated is True
