"""The API explorers in headless Chromium with the network cut off from all but this server.

Swagger UI and Redoc must render from this server alone (drf-spectacular-sidecar): every
request to another origin is aborted and recorded, and none may even be attempted. In Swagger
UI a token is entered with "Authorize", a job is enqueued with its countdown and polled until
it is done, by a real worker.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
import yaml
from asgiref.sync import sync_to_async
from playwright.async_api import Browser, Page, Route, expect
from rest_framework.authtoken.models import Token

from tests.factories import UserFactory
from tests.support.browser import SCREENSHOT_DIR, browser, chromium_path
from tests.support.processes import BASE_DIR

__all__ = ["browser", "chromium_path"]  # fixtures, imported for pytest to find

# The browser lives on the session loop (see tests/support/browser.py).
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.e2e,
]

OPERATIONS = [
    operation["operationId"]
    for path in yaml.safe_load((BASE_DIR / "openapi" / "openapi.yaml").read_text())[
        "paths"
    ].values()
    for operation in path.values()
]

OfflinePage = Callable[[str], Awaitable[Page]]


@pytest_asyncio.fixture(loop_scope="session")
async def offline_page(
    browser: Browser, live_server_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[OfflinePage]:
    """Opens a path of the live server in a context that can reach nothing else."""
    context = await browser.new_context()
    context.set_default_timeout(15_000)
    foreign: list[str] = []

    async def only_this_server(route: Route) -> None:
        if route.request.url.startswith(f"{live_server_url}/"):
            await route.continue_()
        else:
            foreign.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_this_server)
    pages: list[Page] = []

    async def open_(path: str) -> Page:
        page = await context.new_page()
        pages.append(page)
        await page.goto(f"{live_server_url}{path}")
        return page

    yield open_

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for index, page in enumerate(pages):
        await page.screenshot(path=SCREENSHOT_DIR / f"{request.node.name}-{index}.png")
    await context.close()
    assert foreign == [], f"requests to other origins were attempted: {foreign}"


async def test_swagger_ui_shows_every_operation_offline(offline_page):
    # when
    page = await offline_page("/api/docs/")

    # then: one block per operation of the committed spec, and the AsyncAPI link
    for operation_id in OPERATIONS:
        await expect(page.locator(f"[id$='-{operation_id}'].opblock")).to_have_count(1)
    shown = await page.eval_on_selector_all(
        ".opblock[id^='operations-']", "els => els.map(e => e.id)"
    )
    assert sorted(i.rsplit("-", 1)[1] for i in shown) == sorted(OPERATIONS)
    await expect(page.locator("a[href='/api/schema/asyncapi/']").first).to_be_visible()


async def test_redoc_shows_every_operation_offline(offline_page):
    # when
    page = await offline_page("/api/redoc/")

    # then
    for operation_id in OPERATIONS:
        section = page.locator(f"[data-section-id='operation/{operation_id}']")
        await expect(section).to_have_count(1)


def _token() -> str:
    return str(Token.objects.create(user=UserFactory.create(username="explorer")).key)


async def _execute(page: Page, operation_id: str, *, fill: dict[str, str] | None = None) -> dict:
    """Expand an operation, "Try it out", fill parameters, "Execute"; the JSON response."""
    block = page.locator(f".opblock[id$='-{operation_id}']")
    if not await block.locator(".execute").count():
        if not await block.locator(".try-out__btn").count():
            await block.locator(".opblock-summary").first.click()
        await block.locator(".try-out__btn").click()
    for name, value in (fill or {}).items():
        await block.locator(f"tr[data-param-name='{name}'] input").fill(value)
    await block.locator(".execute").click()
    response = block.locator(".live-responses-table tr.response")
    body = response.locator(".response-col_description pre.microlight")
    await expect(body.first).to_be_visible()
    status = await response.locator(".response-col_status").first.inner_text()
    return {"status": int(status.strip()), "body": json.loads(await body.first.inner_text())}


async def test_authorize_with_a_token_then_enqueue_and_poll_a_job(offline_page, worker):
    # given
    token = await sync_to_async(_token)()
    page = await offline_page("/api/docs/")

    # when: Authorize with the token
    await page.locator("button.authorize").first.click()
    token_auth = page.locator(".auth-container", has_text="tokenAuth")
    await token_auth.locator("input").fill(f"Token {token}")
    await token_auth.locator("button.authorize").click()
    await page.locator("button.btn-done").first.click()

    # when: enqueue the example (the tutorial's task with a countdown), then poll it
    enqueued = await _execute(page, "jobs_enqueue")
    assert enqueued["status"] == 202, enqueued
    job_id = enqueued["body"]["id"]
    assert enqueued["body"]["status"] == "scheduled"
    seen = set()
    for _ in range(40):
        polled = await _execute(page, "jobs_retrieve", fill={"job_id": job_id})
        assert polled["status"] == 200, polled
        seen.add(polled["body"]["status"])
        if polled["body"]["status"] == "succeeded":
            break
        await page.wait_for_timeout(500)

    # then
    assert polled["body"]["status"] == "succeeded", seen
    assert polled["body"]["progress"]["current"] == polled["body"]["params"]["steps"]
