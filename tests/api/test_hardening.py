"""REST hardening: CSRF on session writes, CORS allow-list, Host check, body size and type."""

from __future__ import annotations

import http.client
import io
import json
from urllib.parse import urlsplit

import pytest
import yaml
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from api.errors import RequestTooLarge
from api.pagination import MAX_PAGE_SIZE
from api.parsers import JSONParser
from chat.models import Message
from chat.selectors import HISTORY_MAX_LIMIT
from jobs.models import Job
from jobs.selectors import LOG_PAGE_MAX
from tests.factories import RoomFactory, UserFactory
from tests.support.processes import BASE_DIR

LIMIT = 256 * 1024


def assert_error_shape(response_json: object, code: str) -> None:
    assert isinstance(response_json, dict)
    assert response_json["code"] == code
    assert isinstance(response_json["detail"], str)
    assert set(response_json) <= {"code", "detail", "fields"}


# ------------------------------------------------------------------ CSRF


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/rooms/{room}/messages/", {"body": "hi"}),
        ("/api/jobs/", {"kind": "demo.sleep", "params": {"steps": 1}, "countdown": 60}),
        ("/api/rooms/", {"slug": "made-by-csrf"}),
    ],
)
def test_a_session_write_without_the_csrf_token_is_refused(user, path, body):
    # given: a browser signed in with the session cookie
    room = RoomFactory.create()
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    url = path.format(room=room.slug)

    # when
    refused = browser.post(url, body, format="json")

    # then
    assert refused.status_code == 403
    assert_error_shape(refused.json(), "permission_denied")
    assert "CSRF" in refused.json()["detail"]
    assert not Message.objects.exists()
    assert not Job.objects.exists()

    # and with the token the same write goes through
    csrf = browser.get("/api/auth/csrf/").json()["csrf_token"]
    accepted = browser.post(url, body, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert accepted.status_code in {201, 202}, accepted.json()


# ------------------------------------------------------------------ CORS


@pytest.fixture
def allowed_origin(settings) -> str:
    settings.CORS_ALLOWED_ORIGINS = ["https://spa.example"]
    return "https://spa.example"


@pytest.mark.django_db
def test_cors_answers_only_the_listed_origin(allowed_origin):
    client = Client()

    listed = client.get("/api/rooms/", HTTP_ORIGIN=allowed_origin)
    unlisted = client.get("/api/rooms/", HTTP_ORIGIN="https://evil.example")

    assert listed.status_code == 200
    assert listed["Access-Control-Allow-Origin"] == allowed_origin
    assert listed["Access-Control-Allow-Credentials"] == "true"
    assert "Access-Control-Allow-Origin" not in unlisted


@pytest.mark.django_db
def test_a_preflight_from_the_listed_origin_may_send_idempotency_key(allowed_origin):
    client = Client()
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    }

    listed = client.options("/api/jobs/", headers={**preflight, "Origin": allowed_origin})
    unlisted = client.options("/api/jobs/", headers={**preflight, "Origin": "https://evil.example"})

    assert listed.status_code == 200
    assert listed["Access-Control-Allow-Origin"] == allowed_origin
    allowed = {h.strip() for h in listed["Access-Control-Allow-Headers"].split(",")}
    assert {"idempotency-key", "authorization", "content-type", "x-csrftoken"} <= allowed
    assert "POST" in listed["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Origin" not in unlisted


# ------------------------------------------------------------------ Host, bodies, types over HTTP


def raw_request(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    chunked: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """One request exactly as given (any Host, chunked or not) to a live server."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        if chunked:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            step = 64 * 1024
            for start in range(0, len(body or b""), step):
                chunk = (body or b"")[start : start + step]
                conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture
def live_room_and_token(live_server_url) -> tuple[str, str]:
    room = RoomFactory.create()
    return room.slug, Token.objects.create(user=UserFactory.create()).key


@pytest.mark.django_db(transaction=True)
def test_a_foreign_host_header_is_400_in_the_error_shape(live_server_url):
    host = urlsplit(live_server_url).netloc

    status, headers, body = raw_request(
        live_server_url, "GET", "/api/rooms/", headers={"Host": "evil.example"}
    )
    ours = raw_request(live_server_url, "GET", "/api/rooms/", headers={"Host": host})

    assert status == 400
    assert headers["content-type"] == "application/json"
    assert_error_shape(json.loads(body), "bad_request")
    assert b"evil.example" not in body
    assert ours[0] == 200


def huge_json(size: int) -> bytes:
    return json.dumps({"body": "x" * size, "kind": "no.such.kind", "params": {}}).encode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/api/rooms/{room}/messages/", "/api/jobs/"])
def test_a_body_over_the_limit_is_413_in_the_error_shape(
    live_server_url, live_room_and_token, path
):
    # given
    room, token = live_room_and_token
    headers = {
        "Host": urlsplit(live_server_url).netloc,
        "Content-Type": "application/json",
        "Authorization": f"Token {token}",
    }
    url = path.format(room=room)

    # when: valid JSON twice the limit (still under Django's default), far over it, and for
    # contrast just under it
    over = [
        raw_request(live_server_url, "POST", url, huge_json(size), headers)
        for size in (2 * LIMIT, 16 * LIMIT)
    ]
    under = raw_request(live_server_url, "POST", url, huge_json(LIMIT - 100), headers)

    # then
    for status, got, body in over:
        assert status == 413, body[:300]
        assert got["content-type"] == "application/json"
        assert_error_shape(json.loads(body), "request_too_large")
    assert under[0] == 400, under[2][:300]  # read, then refused by validation, not by size
    assert json.loads(under[2])["code"] != "request_too_large"
    assert not Message.objects.exists()
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/api/rooms/{room}/messages/", "/api/jobs/"])
def test_a_huge_chunked_body_is_refused_cleanly(live_server_url, live_room_and_token, path):
    # given: no Content-Length, so nothing can refuse it before it is read
    room, token = live_room_and_token
    headers = {
        "Host": urlsplit(live_server_url).netloc,
        "Content-Type": "application/json",
        "Authorization": f"Token {token}",
    }

    # when
    status, got, body = raw_request(
        live_server_url,
        "POST",
        path.format(room=room),
        huge_json(16 * LIMIT),
        headers,
        chunked=True,
    )

    # then: a 4xx in the error shape, never a 500, and nothing written
    assert status in {400, 413}, body[:300]
    assert got["content-type"] == "application/json"
    assert json.loads(body)["code"] in {"invalid", "request_too_large"}
    assert not Message.objects.exists()
    assert not Job.objects.exists()


def test_the_json_parser_counts_what_it_reads(settings):
    # DRF 3.18 reads `request.body`, where Django checks Content-Length; a stream read
    # directly (older DRF, a body without Content-Length) is counted by the parser itself.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 12  # exactly the first body
    parser = JSONParser()

    assert parser.parse(io.BytesIO(b'{"a": 12345}')) == {"a": 12345}
    with pytest.raises(RequestTooLarge):
        parser.parse(io.BytesIO(b'{"a": 123456}'))


@pytest.mark.django_db
def test_the_body_limit_is_set_deliberately(settings):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == LIMIT


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content_type", "payload"),
    [
        ("text/plain", "body=hi"),
        ("application/x-www-form-urlencoded", "body=hi&kind=demo.sleep"),
        (
            "multipart/form-data; boundary=BoUnDaRy",
            "--BoUnDaRy\r\n"
            'Content-Disposition: form-data; name="body"\r\n\r\nhi\r\n--BoUnDaRy--\r\n',
        ),
    ],
    ids=["text", "form", "multipart"],
)
@pytest.mark.parametrize("path", ["/api/rooms/{room}/messages/", "/api/jobs/", "/api/rooms/"])
def test_a_body_that_is_not_json_is_415(user, path, content_type, payload):
    room = RoomFactory.create()
    client = APIClient()
    client.force_authenticate(user)

    response = client.post(path.format(room=room.slug), payload, content_type=content_type)

    assert response.status_code == 415
    assert_error_shape(response.json(), "unsupported_media_type")
    assert not Message.objects.exists()
    assert not Job.objects.exists()


# ------------------------------------------------------------------ paging bounds


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("page_size", "status"),
    [("2", 200), ("100", 200), ("101", 400), ("0", 400), ("x", 400), ("", 400)],
)
def test_page_size_beyond_the_cap_is_refused(user, page_size, status):
    for _ in range(3):
        RoomFactory.create()

    response = APIClient().get(f"/api/rooms/?page_size={page_size}")

    assert response.status_code == status
    if status == 200:
        assert len(response.json()["results"]) == min(3, int(page_size))
    else:
        assert_error_shape(response.json(), "invalid")
        assert "page_size" in response.json()["fields"]


def test_the_contract_states_every_paging_cap():
    spec = yaml.safe_load((BASE_DIR / "openapi" / "openapi.yaml").read_text())

    def bound(path: str, name: str) -> dict[str, object]:
        parameters = spec["paths"][path]["get"]["parameters"]
        return next(p["schema"] for p in parameters if p["name"] == name)

    assert bound("/api/rooms/", "page_size")["maximum"] == MAX_PAGE_SIZE
    assert bound("/api/jobs/", "page_size")["maximum"] == MAX_PAGE_SIZE
    assert bound("/api/rooms/{slug}/messages/", "limit")["maximum"] == HISTORY_MAX_LIMIT
    assert bound("/api/jobs/{job_id}/log/", "limit")["maximum"] == LOG_PAGE_MAX


@pytest.mark.django_db
def test_history_and_log_limits_beyond_the_cap_are_refused(user):
    room = RoomFactory.create()
    client = APIClient()
    client.force_authenticate(user)
    job = Job.objects.create(owner=user, kind="demo.sleep", params={}, run_at="2030-01-01T00:00Z")

    history = client.get(f"/api/rooms/{room.slug}/messages/?limit={HISTORY_MAX_LIMIT + 1}")
    log = client.get(f"/api/jobs/{job.pk}/log/?limit={LOG_PAGE_MAX + 1}")

    assert history.status_code == 400
    assert "limit" in history.json()["fields"]
    assert log.status_code == 400
    assert "limit" in log.json()["fields"]
    assert client.get(f"/api/jobs/{job.pk}/log/?limit={LOG_PAGE_MAX}").status_code == 200


# ------------------------------------------------------------------ unknown paths


@pytest.mark.parametrize("debug", [True, False], ids=["local-debug", "production"])
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_an_unknown_api_path_answers_the_error_shape_in_every_profile(settings, debug, method):
    # given: the local profile's DEBUG (Django's HTML debug page) or production's
    settings.DEBUG = debug
    client = Client(enforce_csrf_checks=True)

    # when
    response = getattr(client, method)("/api/no-such-thing/deeper/")

    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert_error_shape(response.json(), "not_found")
    assert "/api/no-such-thing/deeper/" in response.json()["detail"]


@pytest.mark.django_db
def test_an_api_path_without_its_slash_gets_a_hint_not_a_redirect(settings):
    settings.DEBUG = True

    response = Client().post("/api/rooms", {"slug": "x"}, content_type="application/json")

    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")
    assert response.json()["detail"].endswith("Did you mean /api/rooms/ ?")
