"""The typing rule, in process, on the real channel layer: who may, how often, and what goes out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chat.errors import ChatError, ChatErrorCode
from chat.services import TypingPace, typing_announce, typing_expires_in
from realtime.kernel.events import UserRef, server_frame_adapter
from realtime.kernel.names import ROOM_TYPING, room_group
from tests.support.layer import Event, LayerListener

ALICE = UserRef(id=1, username="alice")


class Clock:
    """Monotonic seconds that the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pace(clock: Clock) -> TypingPace:
    return TypingPace(clock=clock)


@pytest.fixture
def listener() -> Iterator[LayerListener]:
    """A member of the rooms `lobby` and `random` on the real layer, as a server process is."""
    member = LayerListener()
    member.join(room_group("lobby"))
    member.join(room_group("random"))
    yield member
    member.close()


@pytest.fixture(autouse=True)
def _interval(settings):
    settings.CHAT_TYPING_INTERVAL = 3.0


def announce(pace: TypingPace, *, typing: bool = True, room: str = "lobby") -> bool:
    return typing_announce(room=room, user=ALICE, typing=typing, pace=pace)


def sent(listener: LayerListener, count: int) -> list[Event]:
    """The typing events received, once there are `count` (publishing from sync code waits
    for each send, so none sent before the last can still be on its way)."""
    return listener.wait_for(lambda events: len(events) >= count)


def test_a_start_goes_to_the_rooms_group_with_its_frame(pace, listener):
    assert announce(pace) is True

    (event,) = sent(listener, 1)
    assert event["type"] == ROOM_TYPING
    assert event["group"] == room_group("lobby")
    assert event["user_id"] == ALICE.id
    assert event["frame"] == {
        "type": "typing",
        "channel": "room:lobby",
        "room": "lobby",
        "user": {"id": 1, "username": "alice"},
        "typing": True,
        "expires_in": 6,
    }
    server_frame_adapter.validate_python(event["frame"])


def test_starts_within_the_interval_are_dropped(pace, clock, listener):
    # when: a start at every keystroke for just under the interval, then one after it
    results = []
    for _ in range(30):
        results.append(announce(pace))
        clock.now += 0.099
    clock.now += 0.1  # 3.07 s after the first
    results.append(announce(pace))

    # then: the first and the last went out, nothing between
    assert results == [True] + [False] * 29 + [True]
    assert [event["frame"]["typing"] for event in sent(listener, 2)] == [True, True]


def test_a_stop_goes_out_once_and_only_while_a_start_shows(pace, clock, listener):
    # given: nothing started
    assert announce(pace, typing=False) is False

    # when: a start, then stops
    assert announce(pace) is True
    clock.now += 1
    assert announce(pace, typing=False) is True
    assert announce(pace, typing=False) is False  # nothing shows any more

    # then: a new start waits for the interval all the same (at most two events a period)
    assert announce(pace) is False
    clock.now += 2
    assert announce(pace) is True
    frames = [event["frame"] for event in sent(listener, 3)]
    assert [(f["typing"], f["expires_in"]) for f in frames] == [(True, 6), (False, 0), (True, 6)]


def test_a_stop_after_the_start_expired_is_dropped(pace, clock):
    assert announce(pace) is True
    clock.now += typing_expires_in()

    assert announce(pace, typing=False) is False


def test_rooms_are_paced_apart(pace, listener):
    assert announce(pace, room="lobby") is True
    assert announce(pace, room="random") is True
    assert announce(pace, room="lobby") is False

    assert {event["frame"]["room"] for event in sent(listener, 2)} == {"lobby", "random"}


def test_sockets_are_paced_apart(clock, listener):
    # Each socket has its own pace: two tabs typing at once each send theirs.
    assert announce(TypingPace(clock=clock)) is True
    assert announce(TypingPace(clock=clock)) is True


def test_the_pace_forgets_rooms_whose_start_has_expired(pace, clock):
    for n in range(50):
        announce(pace, room=f"room-{n}")
    clock.now += typing_expires_in()

    announce(pace, room="lobby")

    assert list(pace.rooms) == ["lobby"]


def test_anonymous_sockets_may_not_type(pace, listener):
    # when
    with pytest.raises(ChatError) as refused:
        typing_announce(room="lobby", user=None, typing=True, pace=pace)
    announce(pace)  # then a signed-in user's, to see what reached the room

    # then
    assert refused.value.code == ChatErrorCode.TYPING_NOT_ALLOWED
    assert [event["user_id"] for event in sent(listener, 1)] == [ALICE.id]


def test_expires_in_is_twice_the_interval_in_whole_seconds(settings):
    settings.CHAT_TYPING_INTERVAL = 2.2
    assert typing_expires_in() == 5
    settings.CHAT_TYPING_INTERVAL = 0.1
    assert typing_expires_in() == 1


@pytest.mark.django_db
def test_typing_asks_nothing_of_the_database(pace, django_assert_num_queries):
    with django_assert_num_queries(0):
        announce(pace)
        announce(pace, typing=False)
