"""Frames built by hand for speed must stay their declared models' dumps."""

from __future__ import annotations

import pytest

from realtime.kernel import events


@pytest.mark.parametrize("client_id", ["c-1", None])
@pytest.mark.parametrize("ref", ["r", 7, None])
@pytest.mark.parametrize("duplicate", [True, False])
def test_chat_sent_is_its_models_json_dump(client_id, ref, duplicate):
    fields = {"room": "lobby", "seq": 3, "id": 41, "client_id": client_id, "duplicate": duplicate}

    frame = events.chat_sent(**fields, ref=ref)

    model = events.dump(events.ChatSentFrame(**fields, ref=ref))
    assert frame == model
    assert list(frame) == list(model)
