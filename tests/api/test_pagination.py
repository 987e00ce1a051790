"""Pages of lists: the count, the neighbours' links and the end, whichever page tells the count."""

from math import ceil

import pytest
from rest_framework.test import APIClient

from tests.factories import RoomFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.mark.parametrize("rooms", [0, 1, 2, 3, 4, 5])
def test_every_page_tells_the_count_its_rooms_and_its_neighbours(api, rooms):
    # given: rooms never written to, listed by slug
    slugs = [f"room-{n}" for n in range(rooms)]
    for slug in slugs:
        RoomFactory.create(slug=slug)
    pages = max(1, ceil(rooms / 2))

    for page in range(1, pages + 1):
        # when
        body = api.get(f"/api/rooms/?page_size=2&page={page}").json()

        # then: a full page and a short one say the same
        assert body["count"] == rooms
        assert [room["slug"] for room in body["results"]] == slugs[(page - 1) * 2 : page * 2]
        assert (body["next"] is not None) == (page < pages)
        assert (body["previous"] is not None) == (page > 1)


@pytest.mark.parametrize("rooms", [0, 2, 3])
def test_a_page_past_the_last_is_not_found(api, rooms):
    for _ in range(rooms):
        RoomFactory.create()
    past = max(1, ceil(rooms / 2)) + 1

    response = api.get(f"/api/rooms/?page_size=2&page={past}")

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": "Invalid page."}


@pytest.mark.parametrize("page", [2**53, 6200839760430133248, 10**30])
def test_a_page_past_any_offset_a_database_takes_is_not_found(api, page):
    RoomFactory.create()

    response = api.get(f"/api/rooms/?page_size=65&page={page}")

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": "Invalid page."}
