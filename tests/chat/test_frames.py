"""A message's frame is built by hand for speed; it must stay the declared model's dump."""

from __future__ import annotations

import pytest

from chat.frames import message_frame, message_model
from chat.services import message_post
from realtime.kernel import events
from tests.factories import RoomFactory, UserFactory, poster

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("signed_in", [True, False])
@pytest.mark.parametrize("client_id", ["c-1", None])
def test_a_message_frame_is_its_models_json_dump(signed_in, client_id):
    room = RoomFactory.create()
    author = UserFactory.create() if signed_in else None
    message = message_post(
        room=room, poster=poster(author), body='hé "quoted"', client_id=client_id
    ).message

    frame = message_frame(message, room.slug)

    assert frame == events.dump(message_model(message, room.slug))
    assert list(frame) == list(events.dump(message_model(message, room.slug)))
    events.server_frame_adapter.validate_python(frame)
