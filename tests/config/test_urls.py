"""What a browser gets from a live server: the SPA at `/`, explorers with their own assets."""

import re
import urllib.request

import pytest

from tests.support.processes import http_json

pytestmark = pytest.mark.django_db(transaction=True)


def get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        body = response.read()
        return response.status, response.headers["Content-Type"], body.decode(errors="replace")


def test_example_spa_is_served_at_the_root(live_server_url):
    status, content_type, body = get(f"{live_server_url}/")

    assert status == 200
    assert content_type.startswith("text/html")
    assert "<title>Switchboard</title>" in body


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_explorers_load_every_asset_from_this_server(live_server_url, page):
    # given
    _, _, html = get(f"{live_server_url}{page}")
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html)

    # then: nothing from another host, and every asset is served here
    assert assets
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert get(f"{live_server_url}{asset}")[0] == 200


def test_schema_is_served_as_openapi_3(live_server_url):
    status, body, _ = http_json(f"{live_server_url}/api/schema/?format=json")

    assert status == 200
    assert body["openapi"].startswith("3.")
    assert "/api/health/ready/" in body["paths"]
