"""`room.export`: a real job on a real worker writes a room's history; only its owner reads it."""

import json

import pytest
from rest_framework.test import APIClient

from chat.services import message_delete, message_edit, message_post
from jobs.models import Job
from tests.factories import RoomFactory, UserFactory, poster, say
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def export(client: APIClient, **params) -> dict:
    job = client.post("/api/jobs/", {"kind": "room.export", "params": params}, format="json")
    assert job.status_code == 202, job.json()
    return wait_until(
        lambda: (
            (body := client.get(f"/api/jobs/{job.json()['id']}/").json())["status"]
            in ("succeeded", "failed")
            and body
        ),
        timeout=30,
        interval=0.2,
    )


def test_export_writes_every_message_in_order_for_its_owner_only(worker):
    # given: a room with more messages than one batch
    room = RoomFactory.create(slug="history")
    for n in range(1, 1203):
        message_post(room=room, poster=poster(), body=f'line {n} \u00e9 "quoted"')
    owner, other = UserFactory.create(), UserFactory.create()

    # when
    done = export(client_for(owner), room="history")
    download = client_for(owner).get(done["result"]["download_url"])

    # then
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["messages"] == 1202
    assert done["progress"] == {
        "current": 1202,
        "total": 1202,
        "message": "Exported 1202 messages, up to seq 1202 of 1202",
    }
    assert download.status_code == 200
    assert "attachment" in download["Content-Disposition"]
    rows = [json.loads(line) for line in download.getvalue().splitlines()]
    assert [row["seq"] for row in rows] == list(range(1, 1203))
    assert rows[0]["body"] == 'line 1 \u00e9 "quoted"'
    assert client_for(other).get(done["result"]["download_url"]).status_code == 404


def test_export_writes_messages_as_they_are_now_without_the_deleted_ones(worker):
    # given: a room whose messages were edited and deleted (each change took a seq)
    room = RoomFactory.create(slug="changed")
    owner = UserFactory.create()
    first, second, third = (say(room, owner, body) for body in ("one", "two", "three"))
    message_edit(slug="changed", poster=poster(owner), message_id=first.pk, body="one, edited")
    message_delete(slug="changed", poster=poster(owner), message_id=second.pk)

    # when
    done = export(client_for(owner), room="changed")
    download = client_for(owner).get(done["result"]["download_url"])

    # then
    rows = [json.loads(line) for line in download.getvalue().splitlines()]
    assert [(row["seq"], row["body"]) for row in rows] == [(1, "one, edited"), (3, "three")]
    assert done["result"]["messages"] == 2
    assert (done["progress"]["current"], done["progress"]["total"]) == (5, 5)
    assert third.seq == 3


def test_export_as_csv(worker):
    room = RoomFactory.create(slug="small")
    message_post(room=room, poster=poster(), body="a,b")
    owner = UserFactory.create()

    done = export(client_for(owner), room="small", format="csv")
    content = client_for(owner).get(done["result"]["download_url"]).getvalue()

    assert content.decode().splitlines()[0] == "seq,created_at,author,body"
    assert content.decode().splitlines()[1].endswith(',anonymous,"a,b"')


def test_exporting_an_unknown_room_fails_plainly(worker):
    owner = UserFactory.create()

    done = export(client_for(owner), room="nope")

    assert done["status"] == "failed"
    assert done["error"] == {"type": "LookupError", "message": "No room 'nope'."}
    assert Job.objects.get().result is None
