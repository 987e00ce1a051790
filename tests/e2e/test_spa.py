"""The example SPA (frontend-example/) in headless Chromium against live Daphne, Redis and Celery.

People sign in through the page, chat, see each other's presence and run jobs; one ASGI
server is restarted under a page, and a page's socket is cut under a job's output stream: the
page must reconnect and resume without a gap or a double.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from playwright.async_api import Locator, Page, WebSocketRoute, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from rest_framework.authtoken.models import Token

from chat.services import message_post, room_ensure
from config.redis_server import free_port
from jobs.models import Job
from tests.factories import PASSWORD, UserFactory, poster
from tests.support.browser import SCREENSHOT_DIR, OpenPage, browser, chromium_path, open_page
from tests.support.processes import BASE_DIR, Service, child_env, daphne, wait_until

__all__ = ["browser", "chromium_path", "open_page"]  # fixtures, imported for pytest to find

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    # The browser lives on the session loop (see tests/support/browser.py).
    pytest.mark.asyncio(loop_scope="session"),
]

# Every test here signs people in from 127.0.0.1; the servers it starts allow that often.
SERVER_ENV = {"LOGIN_THROTTLE_RATE": "1000/min"}
# The page reads over REST once its socket has been down 4 s, then every 5 s (app.js).
POLL_WAIT_MS = 12_000
XSS = "<img src=x onerror=alert(1)>"
# The statuses of GETs of these paths, from the page (its cookies, its origin).
STATUSES = "(paths) => Promise.all(paths.map(async (path) => (await fetch(path)).status))"
# Records every alert(), every value the progress bars take, each job card's status and
# attempt line each time either is shown (a `retrying` lasts a fraction of a second with the
# test kinds' backoff), and each text a job's output area shows, from before the page's code.
RECORDERS = """
window.alerts = [];
window.alert = (message) => window.alerts.push(String(message));
window.progressSeen = [];
new MutationObserver((changes) => {
    for (const change of changes) {
        window.progressSeen.push(Number(change.target.getAttribute("aria-valuenow")));
    }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["aria-valuenow"] });
window.jobStatesSeen = [];
new MutationObserver((changes) => {
    for (const { target } of changes) {
        const card = target.closest?.("li.job");
        if (!card || !(target === card || target.matches(".job-attempt"))) continue;
        window.jobStatesSeen.push({
            job: card.dataset.jobId,
            status: card.dataset.status,
            attempt: card.querySelector(".job-attempt")?.textContent ?? "",
        });
    }
}).observe(document, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"],
});
window.outputSeen = [];
new MutationObserver((changes) => {
    for (const { target } of changes) {
        const shown = target.nodeType === Node.TEXT_NODE ? target.parentElement : target;
        if (!shown?.matches?.(".job-output-text")) continue;
        const job = shown.closest("li.job").dataset.jobId;
        window.outputSeen.push({ job, text: shown.textContent });
    }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


@dataclass
class Server:
    """A Daphne process of this module's own, on a fixed port, that a test may restart."""

    env: dict[str, str]
    log_dir: Path
    port: int
    service: Service | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.service, _ = await asyncio.to_thread(daphne, self.env, self.log_dir, self.port)

    async def stop(self) -> None:
        if self.service is not None:
            await asyncio.to_thread(self.service.stop)


@pytest.fixture(scope="module")
def static_origin(log_dir: Path) -> Iterator[str]:
    """frontend-example/ served by a plain static server on another origin (another site, too)."""
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    argv += ["--directory", str(BASE_DIR / "frontend-example")]
    service = Service(f"static-{port}", argv, child_env(), log_dir / f"static-{port}.log").start()

    def serving() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                return True
        except OSError:
            return False

    wait_until(serving)
    yield f"http://localhost:{port}"
    service.stop()


@pytest.fixture(scope="module")
def spa_env(shared_env: dict[str, str], worker: Service, static_origin: str) -> dict[str, str]:
    """The run's database, Redis and queue (a live Celery worker on it); the static origin is
    allowed (CORS and sockets), and logins are not throttled for these tests."""
    return {**shared_env, **SERVER_ENV, "CORS_ALLOWED_ORIGINS": static_origin}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def spa_server(spa_env: dict[str, str], log_dir: Path) -> AsyncIterator[Server]:
    server = Server(spa_env, log_dir, free_port())
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def restartable_server(spa_env: dict[str, str], log_dir: Path) -> AsyncIterator[Server]:
    """A second ASGI server that the test stops and starts again on the same port."""
    server = Server(spa_env, log_dir, free_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def people(db: None) -> list[User]:
    """alice and bob, who sign in with the factories' password."""
    return [UserFactory.create(username=name) for name in ("alice", "bob")]


@database_sync_to_async
def alice_has_token() -> bool:
    return Token.objects.filter(user__username="alice").exists()


@database_sync_to_async
def post_messages(slug: str, bodies: list[str]) -> None:
    """A room with these messages from an anonymous poster (seq 1, 2, ...)."""
    room = room_ensure(slug=slug)
    for body in bodies:
        message_post(room=room, poster=poster(), body=body)


def new_slug(prefix: str = "spa") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def make_room(slug: str, title: str = "") -> None:
    await database_sync_to_async(room_ensure)(slug=slug, title=title or slug)


# ------------------------------------------------------------------ what a person does


async def visit(
    open_page: OpenPage,
    who: str,
    url: str,
    before: Callable[[Page], Awaitable[None]] | None = None,
) -> Page:
    """Opens the SPA as `who` with the recorders installed; waits for its socket."""
    page = await open_page(who, "about:blank")
    await page.set_viewport_size({"width": 1100, "height": 700})
    await page.add_init_script(RECORDERS)
    if before is not None:
        await before(page)
    await page.goto(url)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


async def sign_in(page: Page, username: str) -> None:
    form = page.locator("#sign-in")
    await form.locator("input[name=username]").fill(username)
    await form.locator("input[name=password]").fill(PASSWORD)
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#username")).to_have_text(username)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")


async def say(page: Page, text: str) -> None:
    await page.locator("#message-input").fill(text)
    await page.locator("#message-input").press("Enter")


def messages(page: Page) -> Locator:
    """The bodies of the messages shown, in order (not the ones still being sent)."""
    return page.locator("#messages li.message .body")


async def enqueue(page: Page, kind: str, countdown: int, **params: object) -> str:
    """Fills the job form and enqueues; returns the new job's id."""
    before = await page.locator("#job-list li.job").count()
    await page.locator("#job-kind").select_option(kind)
    for name, value in params.items():
        field = page.locator(f"#job-params [name={name}]")
        if await field.evaluate("(field) => field.tagName") == "SELECT":
            await field.select_option(str(value))
        else:
            await field.fill(str(value))
    await page.locator("#job-countdown").fill(str(countdown))
    async with page.expect_response(
        lambda response: response.url.endswith("/api/jobs/") and response.request.method == "POST"
    ) as answer:
        await page.locator("#job-form button[type=submit]").click()
    assert (await answer.value).status == 202
    await expect(page.locator("#job-list li.job")).to_have_count(before + 1)
    job_id = await page.locator("#job-list li.job").first.get_attribute("data-job-id")
    assert job_id
    return job_id


def job_card(page: Page, job_id: str) -> Locator:
    return page.locator(f'#job-list li.job[data-job-id="{job_id}"]')


async def states_shown(page: Page, job_id: str) -> list[tuple[str, list[str]]]:
    """Each status the job's card took, in order, with the attempt lines it showed meanwhile
    (a card is rendered again when only its progress changes: no status follows itself)."""
    shown: list[tuple[str, list[str]]] = []
    for state in await page.evaluate("() => window.jobStatesSeen"):
        if state["job"] != job_id:
            continue
        if not shown or shown[-1][0] != state["status"]:
            shown.append((state["status"], [state["attempt"]]))
        elif shown[-1][1][-1] != state["attempt"]:
            shown[-1][1].append(state["attempt"])
    return shown


async def outputs_shown(page: Page, job_id: str) -> list[str]:
    """Each text the job's output area showed, in order, none twice in a row."""
    shown: list[str] = []
    for seen in await page.evaluate("() => window.outputSeen"):
        if seen["job"] == job_id and (not shown or shown[-1] != seen["text"]):
            shown.append(seen["text"])
    return shown


async def output_shows(page: Page, job_id: str, text: str) -> None:
    """Waits for the job's output area to show exactly `text` (whitespace and all), then
    compares, so that a failure shows the difference."""
    with contextlib.suppress(PlaywrightTimeoutError):
        await page.wait_for_function(
            "([id, text]) => document.querySelector(`li.job[data-job-id='${id}'] pre`)"
            "?.textContent === text",
            arg=[job_id, text],
        )
    assert await job_card(page, job_id).locator(".job-output-text").text_content() == text


async def output_written(job_id: str, chunks: int, timeout: float = 10) -> Job:
    """The job once its worker has written at least `chunks` output chunks."""
    read = database_sync_to_async(Job.objects.get)
    deadline = asyncio.get_running_loop().time() + timeout
    while (job := await read(pk=job_id)).output_chunks < chunks:
        assert asyncio.get_running_loop().time() < deadline, (job.status, job.output_chunks)
        await asyncio.sleep(0.05)
    return job


def retry_notes(states: list[tuple[str, list[str]]]) -> list[str]:
    """The attempt line shown as each `retrying` began, less its countdown."""
    return [lines[0].split(", next attempt")[0] for status, lines in states if status == "retrying"]


def countdown(line: str) -> int:
    """A retrying job's seconds to its next attempt, as its card shows them (0: due)."""
    if line.endswith(", next attempt waiting for a worker"):
        return 0
    found = re.search(r", next attempt in (\d+) s$", line)
    assert found, line
    return int(found[1])


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOT_DIR / f"spa-{name}.png")


# ------------------------------------------------------------------ tests


async def test_two_people_chat_and_see_each_other(spa_server, people, open_page):
    # given: alice signs in and creates a room through the page
    slug = new_slug()
    alice = await visit(open_page, "alice", f"{spa_server.url}/")
    await sign_in(alice, "alice")
    await alice.locator("#room-create input[name=slug]").fill(slug)
    await alice.locator("#room-create input[name=title]").fill("Design review")
    await alice.locator("#room-create button[type=submit]").click()
    await expect(alice.locator("#room-title")).to_have_text("Design review")
    await expect(alice.locator(f'#room-list li.room.current[data-slug="{slug}"]')).to_be_visible()

    # when: bob opens the room from its link and signs in
    bob = await visit(open_page, "bob", f"{spa_server.url}/#/rooms/{slug}")
    await sign_in(bob, "bob")

    # then: each sees both in the room
    for page in (alice, bob):
        await expect(page.locator("#presence-list li")).to_have_text(["alice", "bob"])
        await expect(page.locator("#room-online")).to_have_text("2 online")

    # when
    await say(alice, "hello bob")
    await expect(bob.locator("#messages li.message .body")).to_have_text(["hello bob"])
    await say(bob, "hi alice")
    await say(bob, XSS)

    # then: same conversation on both sides, in order; the markup is shown as text
    for page in (alice, bob):
        await expect(messages(page)).to_have_text(["hello bob", "hi alice", XSS])
        await expect(page.locator("#messages li.message .author")).to_have_text(
            ["alice", "bob", "bob"]
        )
        assert await page.locator("#messages img").count() == 0
        assert await page.evaluate("() => window.alerts") == []
    await expect(alice.locator("#outbox li")).to_have_count(0)

    # when: someone not signed in opens the room
    visitor = await visit(open_page, "visitor", f"{spa_server.url}/#/rooms/{slug}")

    # then: the history is readable, and the others see an anonymous reader arrive
    await expect(messages(visitor)).to_have_text(["hello bob", "hi alice", XSS])
    await expect(visitor.locator("#sign-in")).to_be_visible()
    await expect(visitor.locator("#jobs-signed-out")).to_be_visible()
    await expect(alice.locator("#presence-anonymous")).to_have_text("and 1 anonymous")
    await expect(alice.locator(f'#room-list li[data-slug="{slug}"] .room-online')).to_have_text(
        "3 online"
    )
    await screenshot(alice, "chat")

    # when: bob signs out, then leaves
    await bob.locator("#sign-out").click()
    await expect(bob.locator("#sign-in")).to_be_visible()
    await expect(alice.locator("#presence-list li")).to_have_text(["alice"])
    await expect(alice.locator("#presence-anonymous")).to_have_text("and 2 anonymous")
    await bob.close()

    # then
    await expect(alice.locator("#presence-anonymous")).to_have_text("and 1 anonymous")


async def test_an_edit_and_a_deletion_are_seen_live_by_the_other_and_after_a_reload(
    spa_server, people, open_page
):
    # given: alice and bob in a room, each with a message
    slug = new_slug()
    await make_room(slug)
    alice = await visit(open_page, "alice", f"{spa_server.url}/#/rooms/{slug}")
    await sign_in(alice, "alice")
    bob = await visit(open_page, "bob", f"{spa_server.url}/#/rooms/{slug}")
    await sign_in(bob, "bob")
    await say(alice, "helo bob")
    await say(bob, "hi")
    await say(alice, "oops, wrong room")
    for page in (alice, bob):
        await expect(messages(page)).to_have_text(["helo bob", "hi", "oops, wrong room"])
    # only your own messages offer edit and delete
    await expect(bob.locator("#messages li.message button.edit")).to_have_count(1)
    await expect(alice.locator("#messages li.message button.edit")).to_have_count(2)

    # when: alice corrects her first message in place, and deletes her last one
    first = alice.locator("#messages li.message").first
    await first.locator("button.edit").click()
    await first.locator("input.edit-input").fill("hello bob")
    await first.locator("input.edit-input").press("Enter")
    await alice.locator("#messages li.message").last.locator("button.delete").click()

    # then: bob sees both at once, as alice does
    for page in (alice, bob):
        await expect(messages(page)).to_have_text(["hello bob", "hi", "message deleted"])
        await expect(page.locator("#messages li.message").first.locator(".edited")).to_have_text(
            "(edited)"
        )
        await expect(page.locator("#messages li.message.deleted")).to_have_count(1)
    await expect(alice.locator("#messages li.message.deleted button")).to_have_count(0)

    # when: bob reads the room again (history with gaps where the changes took their seqs)
    await bob.reload()
    await expect(bob.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(messages(bob)).to_have_text(["hello bob", "hi", "message deleted"])

    # then: new messages still flow both ways past those gaps
    await say(alice, "still here")
    await say(bob, "me too")
    for page in (alice, bob):
        await expect(messages(page)).to_have_text(
            ["hello bob", "hi", "message deleted", "still here", "me too"]
        )
    await screenshot(bob, "edits")


async def test_the_others_see_who_is_typing_until_it_is_sent_or_stops(
    spa_server, people, open_page
):
    # given: alice and bob in a room, each in a browser of their own
    slug = new_slug()
    await make_room(slug)
    pages = {}
    for name in ("alice", "bob"):
        pages[name] = await visit(open_page, name, f"{spa_server.url}/#/rooms/{slug}")
        await sign_in(pages[name], name)
    alice, bob = pages["alice"], pages["bob"]
    for page in (alice, bob):
        await expect(page.locator("#presence-list li")).to_have_text(["alice", "bob"])

    # when: bob types
    await bob.locator("#message-input").press_sequentially("hello", delay=30)

    # then: alice sees it; bob is not shown himself
    await expect(alice.locator("#typing")).to_have_text("bob is typing…")
    await expect(bob.locator("#typing")).to_be_empty()

    # when: bob stops typing without sending, it goes away by itself (`expires_in`, 6 s)
    await expect(alice.locator("#typing")).to_be_empty(timeout=10_000)

    # when: he types on, then sends
    await bob.locator("#message-input").press_sequentially(" alice", delay=30)
    await expect(alice.locator("#typing")).to_have_text("bob is typing…")
    await bob.locator("#message-input").press("Enter")

    # then: his message replaces the indicator at once, well before it would expire
    await expect(messages(alice)).to_have_text(["hello alice"])
    await expect(alice.locator("#typing")).to_be_empty(timeout=2_000)
    await expect(bob.locator("#typing")).to_be_empty()


async def test_signing_out_in_one_tab_signs_out_the_other(spa_server, people, open_page):
    # given: two tabs of one browser, signed in (one session; the socket of each rides on it)
    first = await visit(open_page, "alice", f"{spa_server.url}/")
    await sign_in(first, "alice")
    second = await first.context.new_page()
    await second.goto(f"{spa_server.url}/")
    await expect(second.locator("#username")).to_have_text("alice")
    await expect(second.locator("#connection")).to_have_attribute("data-state", "live")

    # when: one tab signs out; the server closes the session's sockets with 4401
    await first.locator("#sign-out").click()

    # then: the other tab notices at once and shows the signed-out page
    await expect(second.locator("#sign-in")).to_be_visible()
    await expect(second.locator("#jobs-signed-out")).to_be_visible()


async def test_older_history_loads_when_asked(spa_server, open_page):
    # given: more messages than the first page holds
    slug = new_slug("history")
    bodies = [f"message {n}" for n in range(1, 56)]
    await post_messages(slug, bodies)

    # when
    page = await visit(open_page, "reader", f"{spa_server.url}/#/rooms/{slug}")

    # then: the newest page, then the rest on request
    await expect(messages(page)).to_have_text(bodies[-50:])
    await page.locator("#load-earlier").click()
    await expect(messages(page)).to_have_text(bodies)
    await expect(page.locator("#load-earlier")).to_be_hidden()


async def test_a_job_waits_for_its_countdown_then_shows_progress_and_log(
    spa_server, people, open_page
):
    # given
    page = await visit(open_page, "alice", f"{spa_server.url}/")
    await sign_in(page, "alice")

    # when
    job_id = await enqueue(page, "demo.sleep", countdown=3, steps=5, max_seconds=1)
    card = job_card(page, job_id)

    # then: it waits, counting down, then runs to the end with a log line per step
    await expect(card.locator(".job-status")).to_have_text("scheduled")
    await expect(card.locator(".job-countdown")).to_contain_text("starts in")
    await expect(card.locator(".job-status")).to_have_text("running", timeout=15_000)
    await screenshot(page, "jobs")
    await expect(card.locator(".job-status")).to_have_text("succeeded", timeout=20_000)
    await expect(card.locator('[role="progressbar"]')).to_have_attribute("aria-valuenow", "100")
    await expect(card.locator(".job-percent")).to_have_text("100%")
    await expect(card.locator(".job-message")).to_have_text("Slept 5 of 5 times")
    await expect(card.locator(".job-log-lines li")).to_have_count(5)
    for line in await card.locator(".job-log-lines li").all_inner_texts():
        assert line.startswith("Going to sleep for ")
    await expect(card.locator(".job-result")).to_contain_text("steps: 5")
    seen = await page.evaluate("() => window.progressSeen")
    assert seen == sorted(seen), seen
    assert seen[-1] == 100
    assert any(0 < value < 100 for value in seen), f"the bar never moved between: {seen}"


async def test_cancelling_a_waiting_and_a_running_job(spa_server, people, open_page):
    # given
    page = await visit(open_page, "alice", f"{spa_server.url}/")
    await sign_in(page, "alice")
    waiting = await enqueue(page, "demo.sleep", countdown=600, steps=1, max_seconds=0)
    running = await enqueue(page, "demo.sleep", countdown=0, steps=100, max_seconds=0.5)
    await expect(job_card(page, running).locator(".job-status")).to_have_text("running")

    # when
    for job_id in (waiting, running):
        await job_card(page, job_id).locator(".job-cancel").click()

    # then
    for job_id in (waiting, running):
        card = job_card(page, job_id)
        await expect(card.locator(".job-status")).to_have_text("cancelled")
        await expect(card.locator(".job-cancel")).to_be_hidden()
    jobs = await database_sync_to_async(lambda: {j.pk: j for j in Job.objects.all()})()
    assert jobs[uuid.UUID(waiting)].status == "cancelled"
    assert jobs[uuid.UUID(waiting)].started_at is None
    assert jobs[uuid.UUID(running)].status == "cancelled"
    assert jobs[uuid.UUID(running)].progress_current < 100


async def test_a_failed_job_is_tried_again_by_its_kind_then_retried_by_its_owner(
    spa_server, people, open_page
):
    # given: a kind of another app that tries 3 times, and a job that fails its first 4
    page = await visit(open_page, "alice", f"{spa_server.url}/")
    await sign_in(page, "alice")

    # when
    job_id = await enqueue(page, "tests.flaky", countdown=0, fail_times=4)
    card = job_card(page, job_id)

    # then: it fails for good after its 3 attempts, each failure shown with its next try
    await expect(card.locator(".job-status")).to_have_text("failed", timeout=20_000)
    await expect(card.locator(".job-attempt")).to_have_text("attempt 3 of 3")
    await expect(card.locator(".job-error")).to_have_text(
        "Failed: attempt 3 failed (ConnectionError)"
    )
    states = await states_shown(page, job_id)
    # (`queued` may never show: the worker's `running` can reach the page before the answer)
    assert [status for status, _ in states if status != "queued"] == [
        *("running", "retrying") * 2,
        *("running", "failed"),
    ], states
    assert retry_notes(states) == [
        "attempt 1 of 3 failed: attempt 1 failed (ConnectionError)",
        "attempt 2 of 3 failed: attempt 2 failed (ConnectionError)",
    ], states
    # (the waits, 0.15 to 0.6 s, may be over before they are shown)
    for status, lines in states:
        assert status != "retrying" or all(countdown(line) in (0, 1) for line in lines), states
    await expect(card.locator(".job-cancel")).to_be_hidden()

    # when: alice opens its attempts
    await card.locator(".job-attempts summary").click()

    # then
    attempts = card.locator(".job-attempts-list li")
    await expect(attempts.locator(".job-attempt-status")).to_have_text(["failed"] * 3)
    await expect(attempts.nth(2)).to_contain_text("attempt 3 failed (ConnectionError)")

    # when: she retries it, the attempts left open
    async with page.expect_response(
        lambda response: response.url.endswith(f"/api/jobs/{job_id}/retry/")
    ) as answer:
        await card.locator(".job-retry").click()
    assert (await answer.value).status == 202

    # then: it is tried again under the same id, fails once more, then succeeds; the list
    # of attempts follows while open
    await expect(card.locator(".job-status")).to_have_text("succeeded", timeout=20_000)
    await expect(card.locator(".job-result")).to_have_text("Result: attempt: 5")
    await expect(card.locator(".job-attempt")).to_have_text("attempt 5 of 6")
    await expect(card.locator(".job-retry")).to_be_hidden()
    states = await states_shown(page, job_id)
    assert [status for status, _ in states if status != "queued"][6:] == [
        *("running", "retrying", "running", "succeeded")
    ], states
    assert retry_notes(states)[2:] == [
        "attempt 4 of 6 failed: attempt 4 failed (ConnectionError)"
    ], states
    # the wait after the 4th attempt is 1.2 to 2.4 s: shown, then counted down each second
    last_wait = [lines for status, lines in states if status == "retrying"][-1]
    waited = [countdown(line) for line in last_wait]
    assert 1 <= waited[0] <= 3, states
    assert len(waited) > 1, states
    assert waited == sorted(set(waited), reverse=True), states
    await expect(attempts.locator(".job-attempt-status")).to_have_text(
        ["failed"] * 4 + ["succeeded"]
    )
    await expect(card.locator(".job-attempts summary")).to_have_text("Attempts (5)")
    await expect(page.locator("#job-list li.job")).to_have_count(1)
    await expect(page.locator("#job-error")).to_be_empty()
    job = await database_sync_to_async(Job.objects.get)(pk=job_id)
    assert (job.status, job.attempts, job.result) == ("succeeded", 5, {"attempt": 5})
    await screenshot(page, "retried")


async def test_a_job_that_never_checks_is_cancelling_then_cancelled(spa_server, people, open_page):
    # given: a job spinning in a loop that never asks whether it was cancelled
    page = await visit(open_page, "alice", f"{spa_server.url}/")
    await sign_in(page, "alice")
    job_id = await enqueue(page, "tests.stuck_long_grace", countdown=0, how="busy")
    card = job_card(page, job_id)
    await expect(card.locator(".job-status")).to_have_text("running", timeout=15_000)

    # when
    await card.locator(".job-cancel").click()

    # then: it is cancelling (nothing more to press), until its process is stopped after its
    # kind's grace (4 s: `cancelling` must still show when a busy machine answers the click)
    await expect(card.locator(".job-status")).to_have_text("cancelling…")
    await expect(card.locator(".job-cancel")).to_be_hidden()
    await expect(card.locator(".job-retry")).to_be_hidden()
    await screenshot(page, "cancelling")
    await expect(card.locator(".job-status")).to_have_text("cancelled", timeout=12_000)
    await expect(card.locator(".job-outcome")).to_have_text("Cancelled.")
    await expect(card.locator(".job-retry")).to_be_hidden()
    await card.locator(".job-attempts summary").click()
    await expect(card.locator(".job-attempts-list li .job-attempt-status")).to_have_text(
        ["cancelled"]
    )
    states = [status for status, _ in await states_shown(page, job_id)]
    assert states[-3:] == ["running", "cancelling", "cancelled"], states
    job = await database_sync_to_async(Job.objects.get)(pk=job_id)
    assert job.status == "cancelled"


async def test_a_room_export_offers_its_file(spa_server, people, open_page):
    # given: a room with a conversation, open in alice's page
    slug = new_slug("export")
    await make_room(slug)
    page = await visit(open_page, "alice", f"{spa_server.url}/#/rooms/{slug}")
    await sign_in(page, "alice")
    for text in ("first", XSS):
        await say(page, text)
    await expect(messages(page)).to_have_text(["first", XSS])

    # when: the export's room starts as the room that is open
    await page.locator("#job-kind").select_option("room.export")
    await expect(page.locator("#job-params [name=room]")).to_have_value(slug)
    job_id = await enqueue(page, "room.export", countdown=0, format="csv")

    # then
    card = job_card(page, job_id)
    await expect(card.locator(".job-status")).to_have_text("succeeded", timeout=20_000)
    link = card.locator("a.job-download")
    await expect(link).to_contain_text("Download the csv file")
    await expect(link).to_have_attribute("download", f"{slug}-{job_id}.csv")
    href = await link.get_attribute("href")
    assert href == f"{spa_server.url}/api/jobs/{job_id}/download/"
    response = await page.request.get(href)
    assert response.status == 200
    body = await response.text()
    assert "first" in body
    assert XSS in body


async def test_errors_are_shown_plainly(spa_server, people, open_page):
    # given
    page = await visit(open_page, "alice", f"{spa_server.url}/")

    # when: a wrong password
    form = page.locator("#sign-in")
    await form.locator("input[name=username]").fill("alice")
    await form.locator("input[name=password]").fill("not the password")
    await form.locator("button[type=submit]").click()

    # then
    await expect(page.locator("#account-error")).to_contain_text("Sign-in failed")
    await expect(page.locator("#sign-in")).to_be_visible()

    # when: a job whose params the server refuses
    await sign_in(page, "alice")
    await page.locator("#job-kind").select_option("room.export")
    await page.locator("#job-params [name=room]").fill("no such room!")
    await page.locator("#job-form button[type=submit]").click()

    # then
    await expect(page.locator("#job-error")).to_contain_text("Not enqueued")
    await expect(page.locator("#job-error")).to_contain_text("room")
    await expect(page.locator("#job-list li.job")).to_have_count(0)


async def test_staff_follow_a_server_log_across_a_restart(
    restartable_server, people, open_page, tail_file
):
    # given: a staff member following a log that has some history
    await database_sync_to_async(UserFactory.create)(username="root", is_staff=True)
    tail_file.append(b"history\n")
    page = await visit(open_page, "root", f"{restartable_server.url}/")
    await sign_in(page, "root")
    await expect(page.locator("#logs")).to_be_visible()
    await page.locator("#log-name").select_option(tail_file.name)
    await expect(page.locator("#log-status")).to_have_text("live")
    shown = page.locator("#log-lines li.log-line")

    # when: lines are written, one of them markup and one too long
    tail_file.append(b"first\n<img src=x onerror=alert(1)>\n" + b"y" * 5000 + b"\n")

    # then: shown as text as they come (not the history), the long one cut
    await expect(shown).to_have_text(["first", XSS, "y" * 4096])
    await expect(page.locator("#log-lines li.log-line.cut")).to_have_count(1)
    assert await page.locator("#log-lines img").count() == 0
    await screenshot(page, "logs")

    # when: the server goes away while more lines are written, then comes back
    await restartable_server.stop()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    tail_file.append(b"while away\n")
    await restartable_server.start()
    await expect(page.locator("#connection")).to_have_attribute(
        "data-state", "live", timeout=20_000
    )
    tail_file.append(b"back\n")  # before or after it subscribes again: it comes once

    # then: it went on from its last line: nothing missed, nothing twice
    await expect(shown).to_have_text(["first", XSS, "y" * 4096, "while away", "back"])

    # when: someone who is not staff signs in
    other = await visit(open_page, "alice", f"{restartable_server.url}/")
    await sign_in(other, "alice")

    # then: no log pane
    await expect(other.locator("#logs")).to_be_hidden()
    assert await page.evaluate("() => window.alerts") == []


async def test_the_page_resumes_after_its_server_restarts(
    spa_server, restartable_server, people, open_page
):
    # given: alice on the server that will restart, bob on another server, one room
    slug = new_slug("restart")
    await make_room(slug, "Release planning")
    alice = await visit(open_page, "alice", f"{restartable_server.url}/#/rooms/{slug}")
    await sign_in(alice, "alice")
    bob = await visit(open_page, "bob", f"{spa_server.url}/#/rooms/{slug}")
    await sign_in(bob, "bob")
    await say(alice, "before 1")
    await expect(messages(bob)).to_have_text(["before 1"])  # else the two posts race
    await say(bob, "before 2")
    await expect(messages(alice)).to_have_text(["before 1", "before 2"])
    job_id = await enqueue(alice, "demo.sleep", countdown=1, steps=4, max_seconds=0.5)
    # Messages missed while away must come from the socket's replay (`since`), not REST.
    await alice.route(lambda url: "/messages/?after=" in url, lambda route: route.abort())

    # when: alice's server goes away; bob goes on talking meanwhile, and alice writes too
    await restartable_server.stop()
    await expect(alice.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    during = [f"while away {n}" for n in range(1, 4)]
    for text in during:
        await say(bob, text)
    await expect(messages(bob)).to_have_text(["before 1", "before 2", *during])
    await say(alice, "written while away")
    await expect(alice.locator("#outbox li.waiting")).to_have_text(["written while away"])
    await restartable_server.start()

    # then: alice's page is live again with every message once, in order, hers sent once
    await expect(alice.locator("#connection")).to_have_attribute(
        "data-state", "live", timeout=20_000
    )
    resumed = ["before 1", "before 2", *during, "written while away"]
    await expect(messages(alice)).to_have_text(resumed)
    await expect(alice.locator("#outbox li")).to_have_count(0)
    await say(bob, "after")
    await expect(messages(alice)).to_have_text([*resumed, "after"])
    await say(alice, "back")
    expected = [*resumed, "after", "back"]
    await expect(messages(alice)).to_have_text(expected)
    await expect(messages(bob)).to_have_text(expected)
    seqs = await alice.locator("#messages li.message").evaluate_all(
        "items => items.map((item) => Number(item.dataset.seq))"
    )
    assert seqs == list(range(1, len(expected) + 1))
    # and the job that ran meanwhile shows its end, and its whole log
    card = job_card(alice, job_id)
    await expect(card.locator(".job-status")).to_have_text("succeeded", timeout=20_000)
    await expect(card.locator(".job-log-lines li")).to_have_count(4)
    await expect(alice.locator("#presence-list li")).to_have_text(["alice", "bob"])
    await screenshot(alice, "overview")


async def test_a_jobs_output_streams_live_and_resumes_after_the_socket_drops(
    spa_server, people, open_page
):
    # given: alice's socket passes through a switch the test holds, which notes what she sends
    text = "each word of this line comes once, in order, <b>as</b> written though the socket drops"
    words = text.split(" ")
    written = (text + "\n") * 3  # as demo.stream writes it: a chunk per word, a line per text
    refused = False
    sockets: list[WebSocketRoute] = []
    sent: list[dict[str, object]] = []

    async def socket_route(socket: WebSocketRoute) -> None:
        if refused:
            await socket.close(code=1011, reason="the network is down")
            return
        server = socket.connect_to_server()

        def from_page(message: str | bytes) -> None:
            sent.append(json.loads(message))
            server.send(message)

        socket.on_message(from_page)
        sockets.append(socket)

    page = await visit(
        open_page,
        "alice",
        f"{spa_server.url}/",
        before=lambda page: page.route_web_socket(lambda url: url.endswith("/ws/"), socket_route),
    )
    await sign_in(page, "alice")

    # when
    job_id = await enqueue(
        page, "demo.stream", countdown=0, text=text, words_per_second=20, repeat=3
    )
    card = job_card(page, job_id)
    output = card.locator(".job-output-text")

    # then: its words come as they are written
    await expect(output).to_contain_text(" ".join(words[:5]))

    # when: her socket drops mid-stream, and the job writes on while she is away
    refused = True
    await sockets[-1].close(code=1006, reason="the network went down")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    had = len((await output.text_content() or "").split())  # a chunk per word
    job = await output_written(job_id, had + 10)
    assert job.output_chunks < len(words) * 3, "the stream ended before the socket came back"
    refused = False
    await page.evaluate("() => window.dispatchEvent(new Event('online'))")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    # then: it resumes after the last chunk shown, and ends with each word once, in order
    subscribes = [
        frame.get("since")
        for frame in sent
        if frame["type"] == "subscribe" and frame["channel"] == f"job:{job_id}"
    ]
    # (the page reads over REST only after 4 s away: all it had came over the socket)
    assert subscribes == [0, had], subscribes
    await expect(card.locator(".job-status")).to_have_text("succeeded", timeout=20_000)
    await output_shows(page, job_id, written)
    assert await card.locator(".job-output b").count() == 0
    await expect(card.locator(".job-output-note")).to_be_empty()
    shown = await outputs_shown(page, job_id)
    assert all(written.startswith(seen) for seen in shown), shown
    assert [len(seen) for seen in shown] == sorted({len(seen) for seen in shown}), shown
    assert len(shown) > 10, f"not live: the output came in {len(shown)} steps"
    job = await database_sync_to_async(Job.objects.get)(pk=job_id)
    assert (job.status, job.output_chunks) == ("succeeded", len(words) * 3)
    await screenshot(page, "output")


async def test_a_flood_of_output_keeps_only_its_newest_text_on_the_page(
    spa_server, people, open_page
):
    # given
    page = await visit(open_page, "alice", f"{spa_server.url}/")
    await sign_in(page, "alice")

    # when: a job writes 6000 chunks of 50 characters as fast as it may (300,000 characters;
    # the server keeps the newest 5000 chunks)
    job_id = await enqueue(page, "tests.flood", countdown=0, chunks=6000, size=50)
    card = job_card(page, job_id)

    # then: the page holds the newest 100,000 characters, and says so
    newest = "".join(str(number % 10) * 50 for number in range(4000, 6000))
    await expect(card.locator(".job-status")).to_have_text("succeeded", timeout=20_000)
    await output_shows(page, job_id, newest)
    await expect(card.locator(".job-output-note")).to_contain_text(
        "showing the last 100000 characters"
    )

    # when: she reads the page again (a finished job: its output is read over REST)
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    # then: the same text, and the chunks the server no longer keeps are passed over
    await output_shows(page, job_id, newest)
    await expect(card.locator(".job-output-note")).to_have_text(
        "chunks 1 to 1000 are no longer kept; showing the last 100000 characters"
    )


async def test_a_share_link_shows_one_job_live_and_read_only_until_it_is_revoked(
    spa_server, people, open_page
):
    # given: alice has a job waiting, and one writing a hundred words, five a second
    words = [f"word{number}" for number in range(1, 101)]
    owner = await visit(open_page, "alice", f"{spa_server.url}/")
    await owner.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await sign_in(owner, "alice")
    other = await enqueue(owner, "demo.sleep", countdown=600, steps=1, max_seconds=0)
    job_id = await enqueue(
        owner, "demo.stream", countdown=0, text=" ".join(words), words_per_second=5
    )
    card = job_card(owner, job_id)

    # when: she shares the streaming one and copies its link
    await card.locator(".job-share").click()
    link = card.locator(".job-share-link")
    url = await link.locator(".job-share-url").input_value()
    await link.locator(".job-share-copy").click()

    # then: the link is this page's own address, opening that job
    await expect(link.locator(".job-share-copy")).to_have_text("Copied")
    assert await owner.evaluate("() => navigator.clipboard.readText()") == url
    assert url.startswith(f"{spa_server.url}/?"), url
    query = parse_qs(urlsplit(url).query)
    assert query["job"] == [job_id]
    token = query["share"][0]

    # when: someone not signed in, in a browser of their own, opens it
    viewer = await visit(open_page, "viewer", url)
    written_before = (await output_written(job_id, 1)).output_chunks
    shared = viewer.locator("#shared-job li.job")
    output = shared.locator(".job-output-text")

    # then: that job alone, read-only, with its output growing as it is written
    await expect(shared).to_have_count(1)
    await expect(shared).to_have_attribute("data-job-id", job_id)
    await expect(shared.locator(".job-status")).to_have_text("running")
    # Several words after it opened, each its own step (a busy machine had only five by +4).
    await expect(output).to_contain_text(f" {words[written_before + 8]} ")
    await expect(shared.locator('[role="progressbar"]')).not_to_have_attribute("aria-valuenow", "0")
    await expect(shared.locator("button")).to_have_count(0)  # no cancel, retry or share
    await expect(viewer.locator("#share-status")).to_be_empty()
    # ...and nothing of alice's account or other jobs
    await expect(viewer.locator("main.layout")).to_be_hidden()
    await expect(viewer.locator("#job-list li.job")).to_have_count(0)
    await expect(viewer.locator("#username")).to_have_count(0)
    assert "alice" not in await viewer.locator("body").inner_text()
    reads = [
        "/api/jobs/",
        f"/api/jobs/{other}/?share={token}",
        f"/api/jobs/{job_id}/?share={token}",
    ]
    assert await viewer.evaluate(STATUSES, reads) == [401, 404, 200]

    # when: alice revokes the link while the job writes on
    await link.locator(".job-share-revoke").click()

    # then: the page says so, and shows no more of the job, which goes on for its owner
    await expect(viewer.locator("#share-status")).to_contain_text("This link was revoked")
    await expect(link).to_have_attribute("data-revoked", "")
    frozen = await output.text_content() or ""
    job = await output_written(job_id, len(frozen.split()) + 10)
    assert job.status == "running"
    await expect(card.locator(".job-output-text")).to_contain_text(
        " ".join(words[: job.output_chunks])
    )
    assert await output.text_content() == frozen
    shown = await outputs_shown(viewer, job_id)
    assert shown[-1] == frozen, shown
    assert all(" ".join(words).startswith(seen) for seen in shown), shown
    assert [len(seen) for seen in shown] == sorted({len(seen) for seen in shown}), shown
    assert len(shown) > 5, f"not live: the output came in {len(shown)} steps"
    await expect(shared.locator(".job-status")).to_have_text("running")
    assert await viewer.evaluate(STATUSES, reads[2:]) == [404]
    await screenshot(viewer, "shared-revoked")

    # when: the link is opened again
    await viewer.reload()

    # then
    await expect(viewer.locator("#share-status")).to_contain_text("This link does not work")
    await expect(shared).to_have_count(0)
    await card.locator(".job-cancel").click()  # (the owner's page works as before)
    await expect(card.locator(".job-status")).to_have_text("cancelled")


async def test_the_page_works_from_another_origin(spa_server, static_origin, people, open_page):
    # given: the SPA from a static server elsewhere, pointed at the API with `?api=`
    slug = new_slug("cors")
    await make_room(slug)
    alice = await visit(
        open_page, "alice-elsewhere", f"{static_origin}/?api={spa_server.url}#/rooms/{slug}"
    )
    bob = await visit(open_page, "bob", f"{spa_server.url}/#/rooms/{slug}")
    await sign_in(bob, "bob")

    # when: alice signs in there (with a token: the API's cookies are another site's)
    await sign_in(alice, "alice")
    await say(alice, "hello from elsewhere")
    # bob answers what he has seen (else the two posts race and either may take the first seq)
    await expect(messages(bob)).to_have_text(["hello from elsewhere"])
    await say(bob, "heard you")

    # then
    for page in (alice, bob):
        await expect(messages(page)).to_have_text(["hello from elsewhere", "heard you"])
        await expect(page.locator("#presence-list li")).to_have_text(["alice", "bob"])
    await alice.locator("#job-kind").select_option("room.export")
    job_id = await enqueue(alice, "room.export", countdown=0)
    card = job_card(alice, job_id)
    await expect(card.locator(".job-status")).to_have_text("succeeded", timeout=20_000)
    await expect(card.locator(".job-log-lines li")).to_have_count(2)
    # a link would carry no token: the page fetches the file with it, then saves it
    async with alice.expect_download() as download_info:
        await card.locator(".job-download").click()
    download = await download_info.value
    assert download.suggested_filename == f"{slug}-{job_id}.jsonl"
    exported = await asyncio.to_thread(Path(await download.path()).read_text)
    assert "hello from elsewhere" in exported
    assert "heard you" in exported
    assert await alice_has_token()

    # when
    await alice.locator("#sign-out").click()

    # then: signed out, and the token is revoked
    await expect(alice.locator("#sign-in")).to_be_visible()
    assert not await alice_has_token()
    await expect(bob.locator("#presence-list li")).to_have_text(["bob"])


async def test_while_the_socket_cannot_connect_the_page_reads_and_posts_over_rest(
    spa_server, people, open_page
):
    # given: bob and alice in one room; alice's socket passes through a switch the test holds
    slug = new_slug("polling")
    await make_room(slug)
    bob = await visit(open_page, "bob", f"{spa_server.url}/#/rooms/{slug}")
    await sign_in(bob, "bob")
    refused = False
    sockets: list[WebSocketRoute] = []

    async def socket_route(socket: WebSocketRoute) -> None:
        if refused:
            await socket.close(code=1011, reason="the network is down")
        else:
            sockets.append(socket)
            socket.connect_to_server()

    alice = await visit(
        open_page,
        "alice",
        f"{spa_server.url}/#/rooms/{slug}",
        before=lambda page: page.route_web_socket(lambda url: url.endswith("/ws/"), socket_route),
    )
    await sign_in(alice, "alice")

    # when: her socket drops and cannot come back
    refused = True
    await sockets[-1].close(code=1006, reason="the network went down")
    await expect(alice.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    await say(bob, "can you read me?")

    # then: after a while the page reads over REST, and posts over REST
    await expect(alice.locator("#connection")).to_contain_text(
        "reading over REST", timeout=POLL_WAIT_MS
    )
    await expect(messages(alice)).to_have_text(["can you read me?"], timeout=POLL_WAIT_MS)
    await say(alice, "yes, over REST")
    await expect(messages(bob)).to_have_text(["can you read me?", "yes, over REST"])
    await expect(messages(alice)).to_have_text(
        ["can you read me?", "yes, over REST"], timeout=POLL_WAIT_MS
    )

    # when: the network is back
    refused = False
    await alice.evaluate("() => window.dispatchEvent(new Event('online'))")

    # then: live again, polling stopped, and live messages flow again
    await expect(alice.locator("#connection")).to_have_text("Live")
    await say(bob, "live again")
    await expect(messages(alice)).to_have_text(["can you read me?", "yes, over REST", "live again"])


async def test_a_private_room_and_a_direct_room_are_seen_by_their_members_only(
    spa_server, open_page
):
    # given: alice, bob and carol; carol's page keeps every frame and response it receives
    for name in ("alice", "bob", "carol"):
        await database_sync_to_async(UserFactory.create)(username=name)
    slug = new_slug("secret")
    received: list[str] = []

    async def recording(page: Page) -> None:
        def on_socket(socket: object) -> None:
            socket.on("framereceived", lambda payload: received.append(str(payload)))  # type: ignore[attr-defined]

        async def on_response(response: object) -> None:
            try:
                received.append(await response.text())  # type: ignore[attr-defined]
            except Exception:  # a response without a body (204)
                return

        page.on("websocket", on_socket)
        page.on("response", on_response)

    alice = await visit(open_page, "alice", f"{spa_server.url}/")
    await sign_in(alice, "alice")

    # when: alice creates a private room and invites bob from the member list
    await alice.locator("#room-create input[name=slug]").fill(slug)
    await alice.locator("#room-create input[name=title]").fill("Secret plans")
    await alice.locator("#room-create input[name=private]").check()
    await alice.locator("#room-create button[type=submit]").click()
    await expect(alice.locator("#room-title")).to_have_text("Secret plans")
    await expect(alice.locator("#room-kind")).to_have_text("private")
    await alice.locator("#member-invite input[name=username]").fill("bob")
    await alice.locator("#member-invite button[type=submit]").click()
    await expect(alice.locator("#member-list li .role")).to_have_text(["owner", "member"])

    # then: bob finds it in his list, reads and posts; alice sees his message
    bob = await visit(open_page, "bob", f"{spa_server.url}/")
    await sign_in(bob, "bob")
    await expect(bob.locator(f'#room-list li[data-slug="{slug}"] .room-kind')).to_have_text(
        "private"
    )
    await bob.locator(f'#room-list li[data-slug="{slug}"] a').click()
    await expect(bob.locator("#room-title")).to_have_text("Secret plans")
    await say(bob, "the plan is at noon")
    await expect(messages(alice)).to_have_text(["the plan is at noon"])

    # when: carol, signed in, guesses the room's link
    carol = await visit(open_page, "carol", f"{spa_server.url}/", before=recording)
    await sign_in(carol, "carol")
    await carol.goto(f"{spa_server.url}/#/rooms/{slug}")
    await carol.reload()
    await expect(carol.locator("#connection")).to_have_attribute("data-state", "live")

    # then: she is told there is no such room, and nothing of it reached her page
    await expect(carol.locator("#chat-error")).to_contain_text(f"No room '{slug}'")
    await say(alice, "carol must not see this")
    await expect(messages(bob)).to_have_text(["the plan is at noon", "carol must not see this"])
    # ...nor its edits, its members typing, their reads and unread counts
    last = alice.locator("#messages li.message").last
    await last.locator("button.edit").click()
    await last.locator("input.edit-input").fill("carol must not see this edit")
    await last.locator("input.edit-input").press("Enter")
    await expect(messages(bob)).to_have_text(
        ["the plan is at noon", "carol must not see this edit"]
    )
    # (typing for 4 s: the server forwards one start per socket a CHAT_TYPING_INTERVAL, 3 s,
    # and bob's last one was when he wrote above)
    await bob.locator("#message-input").press_sequentially(
        "typing where carol can't see", delay=150
    )
    await expect(alice.locator("#typing")).to_have_text("bob is typing…", timeout=8_000)
    await expect(carol.locator(f'#room-list li[data-slug="{slug}"]')).to_have_count(0)
    seen_by_carol = await carol.locator("body").inner_text()
    for secret in ("Secret plans", "the plan is at noon", "carol must not see this"):
        assert secret not in seen_by_carol
        assert not [text for text in received if secret in text]
    # no frame of the room at all: only her own refused request named it
    frames = [json.loads(text) for text in received if text.startswith("{")]
    about_it = [frame for frame in frames if slug in json.dumps(frame)]
    assert {frame.get("type") for frame in about_it} <= {"error", None}, about_it
    assert received  # the recorders did hear her page's traffic

    # when: alice removes bob while his page has the room open
    await alice.locator('#member-list li[data-user-id] button:text("remove")').click()

    # then: his page is told at once, and the room leaves his list
    await expect(bob.locator("#chat-error")).to_have_text("You were removed from this room.")
    await expect(bob.locator(f'#room-list li[data-slug="{slug}"]')).to_have_count(0)
    await expect(alice.locator("#member-list li .role")).to_have_text(["owner"])

    # when: alice opens a direct room with carol and writes to her
    await alice.locator("#direct-open input[name=username]").fill("carol")
    await alice.locator("#direct-open button[type=submit]").click()
    await expect(alice.locator("#room-kind")).to_have_text("direct")
    await say(alice, "hi carol")
    await expect(messages(alice)).to_have_text(["hi carol"])

    # then: carol finds it in her list; bob does not
    await carol.reload()
    direct = carol.locator("#room-list li", has=carol.locator(".room-kind", has_text="direct"))
    await expect(direct).to_have_count(1)
    await direct.locator("a").click()
    await expect(messages(carol)).to_have_text(["hi carol"])
    await bob.reload()
    await expect(bob.locator("#room-list .room-kind", has_text="direct")).to_have_count(0)
    await screenshot(alice, "members")


async def test_an_unread_badge_comes_live_clears_on_opening_and_the_writer_sees_seen_by(
    spa_server, people, open_page
):
    # given: alice's private room with bob in it; bob has another room open
    lobby, slug = new_slug("lobby"), new_slug("secret")
    await make_room(lobby, "Lobby")
    alice = await visit(open_page, "alice", f"{spa_server.url}/")
    await sign_in(alice, "alice")
    await alice.locator("#room-create input[name=slug]").fill(slug)
    await alice.locator("#room-create input[name=title]").fill("Just us")
    await alice.locator("#room-create input[name=private]").check()
    await alice.locator("#room-create button[type=submit]").click()
    await expect(alice.locator("#room-title")).to_have_text("Just us")
    await alice.locator("#member-invite input[name=username]").fill("bob")
    await alice.locator("#member-invite button[type=submit]").click()
    await expect(alice.locator("#member-list li .role")).to_have_text(["owner", "member"])
    bob = await visit(open_page, "bob", f"{spa_server.url}/#/rooms/{lobby}")
    await sign_in(bob, "bob")
    await expect(bob.locator("#room-title")).to_have_text("Lobby")
    badge = bob.locator(f'#room-list li[data-slug="{slug}"] .unread')
    await expect(badge).to_have_count(0)

    # when: alice writes twice
    await say(alice, "are you there?")
    await say(alice, "news inside")

    # then: bob's badge comes live, with no reload (rooms:mine)
    await expect(badge).to_have_text("2")

    # when: bob opens the room
    await bob.locator(f'#room-list li[data-slug="{slug}"] a').click()
    await expect(messages(bob)).to_have_text(["are you there?", "news inside"])

    # then: his badge clears, and alice sees he has read her last message
    await expect(badge).to_have_count(0)
    await expect(alice.locator("#seen-by")).to_have_text("Seen by bob")
    await screenshot(alice, "seen-by")
