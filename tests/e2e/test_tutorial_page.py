"""The tutorial's own chat pages, unchanged, in headless Chromium against a live Daphne."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.support.browser import OpenPage, browser, chromium_path, open_page
from tests.support.processes import http_json

__all__ = ["browser", "chromium_path", "open_page"]  # fixtures, imported for pytest to find

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    # The browser lives on the session loop (see tests/support/browser.py).
    pytest.mark.asyncio(loop_scope="session"),
]

SOCKET_OPEN = "() => chatSocket.readyState === WebSocket.OPEN"
SOCKET_CLOSED = "() => chatSocket.readyState === WebSocket.CLOSED"
# Only observes: the page's own code still runs unchanged, but its close codes are kept,
# since the page itself only logs that its socket closed.
RECORD_CLOSE_CODES = """
window.socketCloseCodes = [];
const PageWebSocket = window.WebSocket;
window.WebSocket = class extends PageWebSocket {
    constructor(...args) {
        super(...args);
        this.addEventListener("close", (event) => window.socketCloseCodes.push(event.code));
    }
};
"""
INVALID_ROOM_CLOSE_CODE = 4400


def room_name(prefix: str) -> str:
    """A valid room name of its own, so no test hears another test's traffic."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def socket_opens(page: Page) -> None:
    """Waits until the page's chat socket is open: the tutorial's page cannot send before."""
    try:
        await page.wait_for_function(SOCKET_OPEN)
    except PlaywrightTimeoutError:
        state = await page.evaluate("() => chatSocket.readyState")
        raise AssertionError(
            f"the chat socket of {page.url} did not open (readyState {state})"
        ) from None


async def enter_room(open_page: OpenPage, who: str, live_server_url: str, room: str) -> Page:
    """Opens the room page as `who` once its socket is open."""
    page = await open_page(who, f"{live_server_url}/chat/{room}/")
    await socket_opens(page)
    return page


async def say(page: Page, message: str) -> None:
    """Types a message into the tutorial's input and presses Enter, as a person would."""
    await page.locator("#chat-message-input").fill(message)
    await page.locator("#chat-message-input").press("Enter")


def chat_log(*messages: str) -> str:
    """The tutorial's #chat-log after these messages: each appended with a newline."""
    return "".join(f"{message}\n" for message in messages)


def server_log(log_dir: Path, live_server_url: str) -> Path:
    """The live server's log file (named by tests/support/processes.daphne)."""
    return log_dir / f"daphne-{urlsplit(live_server_url).port}.log"


async def test_two_people_in_one_room_see_each_others_messages(live_server_url, open_page):
    # given
    room = room_name("lobbyx")
    alice = await enter_room(open_page, "alice", live_server_url, room)
    bob = await enter_room(open_page, "bob", live_server_url, room)

    # when
    await say(alice, "hello from alice")

    # then
    await expect(alice.locator("#chat-log")).to_have_value(chat_log("hello from alice"))
    await expect(bob.locator("#chat-log")).to_have_value(chat_log("hello from alice"))

    # when
    await say(bob, "hi alice, bob here")

    # then
    both = chat_log("hello from alice", "hi alice, bob here")
    await expect(alice.locator("#chat-log")).to_have_value(both)
    await expect(bob.locator("#chat-log")).to_have_value(both)
    await expect(alice.locator("#chat-message-input")).to_have_value("")


async def test_a_room_hears_nothing_of_another_room(live_server_url, open_page):
    # given: the outsider's socket is open before anything is said next door
    lobby, other = room_name("lobbyx"), room_name("elsewhere")
    outsider = await enter_room(open_page, "outsider", live_server_url, other)
    alice = await enter_room(open_page, "alice", live_server_url, lobby)
    bob = await enter_room(open_page, "bob", live_server_url, lobby)
    await say(alice, "lobby secret one")
    await expect(bob.locator("#chat-log")).to_have_value(chat_log("lobby secret one"))
    await say(bob, "lobby secret two")
    await expect(alice.locator("#chat-log")).to_have_value(
        chat_log("lobby secret one", "lobby secret two")
    )

    # when: a socket's frames arrive in order, so a leaked frame would come before this echo
    await say(outsider, "anyone here?")
    await expect(outsider.locator("#chat-log")).to_have_value(chat_log("anyone here?"))

    # then
    outsider_log = await outsider.locator("#chat-log").input_value()
    assert "lobby secret" not in outsider_log

    # when: the same check the other way round
    await say(alice, "lobby closing")

    # then
    lobby_log = chat_log("lobby secret one", "lobby secret two", "lobby closing")
    await expect(alice.locator("#chat-log")).to_have_value(lobby_log)
    await expect(bob.locator("#chat-log")).to_have_value(lobby_log)


async def test_index_page_takes_you_to_the_room_you_name(live_server_url, open_page):
    # given
    room = room_name("picked")
    page = await open_page("visitor", f"{live_server_url}/chat/")
    await expect(page.get_by_text("What chat room would you like to enter?")).to_be_visible()

    # when: the tutorial's page focuses the input itself
    await page.keyboard.type(room)
    await page.keyboard.press("Enter")

    # then
    await expect(page).to_have_url(f"{live_server_url}/chat/{room}/")
    await expect(page.locator("#chat-log")).to_be_visible()
    await socket_opens(page)
    await say(page, "made it")
    await expect(page.locator("#chat-log")).to_have_value(chat_log("made it"))


async def test_an_invalid_room_name_is_refused_without_harming_the_server(
    live_server_url, open_page, log_dir
):
    # given: "café" passes the tutorial's URL pattern but not the server's room names
    log = server_log(log_dir, live_server_url)
    log_before = log.stat().st_size
    assert http_json(f"{live_server_url}/api/health/")[0] == 200

    # when
    refused = await open_page("cafe-visitor", "about:blank")
    await refused.add_init_script(RECORD_CLOSE_CODES)
    async with refused.expect_console_message(
        lambda message: "Chat socket closed unexpectedly" in message.text
    ):
        await refused.goto(f"{live_server_url}/chat/caf%C3%A9/")

    # then: the page got its socket closed, and the server is up and did not trip over it
    await refused.wait_for_function(SOCKET_CLOSED)
    assert await refused.evaluate("() => window.socketCloseCodes") == [INVALID_ROOM_CLOSE_CODE]
    assert http_json(f"{live_server_url}/api/health/")[0] == 200
    room = room_name("after-cafe")
    alice = await enter_room(open_page, "alice-after", live_server_url, room)
    bob = await enter_room(open_page, "bob-after", live_server_url, room)
    await say(alice, "still working")
    await expect(bob.locator("#chat-log")).to_have_value(chat_log("still working"))
    with log.open("rb") as handle:
        handle.seek(log_before)
        new_log = handle.read().decode(errors="replace")
    assert "Traceback" not in new_log, new_log
