"""Headless Chromium for end-to-end tests: one browser per run, fresh contexts per test."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.conftest import skip_or_fail
from tests.support.processes import BASE_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT_DIR = BASE_DIR / "test-artifacts" / "screenshots"

# Why async: after every call the sync API marks its own loop as running in this thread, so
# Django's async-safety check would then refuse the transactional flush and other modules'
# async tests could not start their loops. The async API runs on pytest-asyncio's session
# loop, and tests that use these fixtures must run on that loop too:
# `pytest.mark.asyncio(loop_scope="session")`.
OpenPage = Callable[[str, str], Awaitable[Page]]


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Debian's Chromium; Playwright's own download is not available here."""
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    return CHROMIUM


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    """One headless Chromium for the whole run."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[OpenPage]:
    """Opens `url` as `who` in a context of its own (another person); screenshots each page.

    The screenshots are taken at teardown, so a failed test leaves one of what it saw.
    """
    opened: list[tuple[str, BrowserContext, Page]] = []

    async def open_(who: str, url: str) -> Page:
        context = await browser.new_context()
        # Everything here answers within milliseconds; a stuck wait should fail soon.
        context.set_default_timeout(10_000)
        page = await context.new_page()
        opened.append((who, context, page))
        await page.goto(url)
        return page

    yield open_

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    for who, context, page in opened:
        if not page.is_closed():
            await page.screenshot(path=SCREENSHOT_DIR / f"{test_name}--{who}.png", full_page=True)
        await context.close()
