"""End to end in a real browser: Playwright driving Debian's chromium (never downloaded).

first-run setup -> login -> add a child born 9 years ago -> assign device 127.0.0.2 ->
the child's block page asks for access -> the parent approves for 30 minutes -> switch to
Vietnamese and check a page. Screenshots of every page at phone (360x780) and desktop
(1280x900) widths go to tests/artifacts/webui/ (git-ignored).

The child's browser reaches the block page as a real one would: chromium resolves
casino.example to 127.0.0.1 (--host-resolver-rules, standing in for nestguard's block-page
answer) and a small TCP relay connects onward from 127.0.0.2, the child's device address.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from blocklists.feed import Feed
from policy.model import QueryEvent
from policy.store import FeedStatus
from tests.support.tools import needs, tool_path
from tests.webui.conftest import PASSWORD, Harness, years_ago
from webui.app import create_app

CHROMIUM = tool_path("chromium")  # Debian's, never a downloaded one
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "webui"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 360, "height": 780}
DESKTOP = {"width": 1280, "height": 900}

pytestmark = [
    pytest.mark.browser,
    needs("chromium"),
]


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def relay_from(source_ip: str, target_port: int) -> AsyncIterator[int]:
    """Listen on 127.0.0.1:0; connect each client onward from `source_ip`."""
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", target_port,
                                                   local_addr=(source_ip, 0))
        a = asyncio.create_task(pipe(reader, up_w))
        b = asyncio.create_task(pipe(up_r, writer))
        tasks.update((a, b))
        await asyncio.gather(a, b)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def first_parent(browser: Any, base: str, password: str) -> Any:
    """A phone (360 px, English browser) that sets up the first parent account: signed in at
    once, on Home. Returns the page."""
    from playwright.async_api import expect

    page = await (await browser.new_context(viewport=PHONE, locale="en-GB")).new_page()
    await page.goto(base + "/")  # the first visit follows the browser's language
    await page.get_by_label("User name").fill("mai")
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_label("Password again").fill(password)
    await page.get_by_role("button", name="Create the account").click()
    await expect(page.locator("h1")).to_have_text("Today")
    return page


async def shoot(page: Any, name: str) -> None:
    """Phone and desktop screenshots of the page as it is now (full page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        await page.set_viewport_size(size)
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
        if label == "phone":  # nothing may be wider than the phone's screen
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name} scrolls sideways at 360 px ({overflow} px)"
    await page.set_viewport_size(PHONE)


async def test_parent_and_child_in_a_real_browser(harness: Harness) -> None:
    from playwright.async_api import async_playwright, expect

    harness.services.allowed_hosts = ("127.0.0.1",)
    added: list[Feed] = []

    async def add_feed(feed: Feed) -> None:
        added.append(feed)

    async def feed_sync() -> None:
        await asyncio.sleep(0)

    harness.services.feeds = [
        Feed("ut1-gambling", "https://lists.example/ut1/gambling.txt", "domains", "gambling"),
        Feed("hagezi-nsfw", "https://lists.example/hagezi/nsfw.txt", "adblock", "adult"),
    ]
    harness.services.add_feed = add_feed
    harness.services.feed_sync = feed_sync
    harness.store.save_feed_status(FeedStatus(
        "ut1-gambling", last_try=harness.now(), last_success=harness.now(), entries=38112,
        rejected=4))
    harness.store.save_feed_status(FeedStatus(
        "hagezi-nsfw", last_try=harness.now(), entries=0, rejected=0,
        error="HTTP 503 from lists.example; the last good copy stays in force"))
    app = create_app(harness.services)
    async with serve(app) as port, relay_from("127.0.0.2", port) as relay_port:
        base = f"http://127.0.0.1:{port}"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(CHROMIUM),
                args=ARGS + ["--host-resolver-rules=MAP casino.example 127.0.0.1"],
            )
            try:
                await run_story(browser, base, f"http://casino.example:{relay_port}", harness,
                                expect, added)
            finally:
                await browser.close()


async def run_story(browser: Any, base: str, blocked_url: str, harness: Harness,
                    expect: Any, added: list[Feed]) -> None:
    parent_ctx = await browser.new_context(viewport=PHONE, locale="en-GB")
    parent = await parent_ctx.new_page()
    errors: list[str] = []
    parent.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # first run: every page leads to setup; the parent reads it in English
    await parent.goto(base + "/")
    await expect(parent).to_have_url(re.compile(r"/setup$"))
    # the first visit follows the browser's language (en-GB), not the household's (vi)
    await expect(parent.locator("html")).to_have_attribute("lang", "en")
    await expect(parent.locator("h1")).to_have_text("Welcome to nestguard")
    await shoot(parent, "01-setup")
    await parent.get_by_label("User name").fill("mai")
    await parent.get_by_label("Password", exact=True).fill(PASSWORD)
    await parent.get_by_label("Password again").fill(PASSWORD)
    await parent.get_by_role("button", name="Create the account").click()

    # signed in right after setup; then out and in again (a wrong password first)
    await expect(parent.locator("h1")).to_have_text("Today")
    await expect(parent.locator(".notice")).to_contain_text("Your account is ready")
    await parent.get_by_role("button", name="Log out").click()
    await expect(parent).to_have_url(re.compile(r"/login"))
    await parent.get_by_label("User name").fill("mai")
    await parent.get_by_label("Password").fill("wrong password!")
    await parent.get_by_role("button", name="Log in").click()
    await expect(parent.locator("#login-password-err")).to_have_text(
        "Wrong user name or password.")
    await shoot(parent, "02-login-error")
    await parent.get_by_label("Password").fill(PASSWORD)
    await parent.get_by_role("button", name="Log in").click()
    await expect(parent.locator("h1")).to_have_text("Today")
    await shoot(parent, "03-home-empty")

    # add a child born 9 years ago
    await parent.get_by_role("link", name="Children").click()
    await parent.get_by_label("Name").first.fill("Minh")
    await parent.get_by_label("Birth date").fill(years_ago(9).isoformat())
    await parent.get_by_label("Language of the block page").select_option("vi")
    await parent.get_by_role("button", name="Add a child").click()
    await expect(parent.locator("h1")).to_contain_text("Minh")
    await expect(parent.locator(".words")).to_contain_text("For Minh, 9: blocked")
    await expect(parent.locator(".words")).to_contain_text("Social networks until 13")
    child_url = parent.url.split("?")[0]
    await shoot(parent, "04-child")

    # the device appears on the network (the lead's dig step from 127.0.0.2 goes here:
    # a query through the running resolver records the device); then assign it
    harness.store.seen([("127.0.0.2", None, harness.now())])
    await parent.goto(base + "/devices")
    card = parent.locator("section.device", has_text="127.0.0.2")
    await expect(card.locator(".tag.new")).to_be_visible()
    await shoot(parent, "05-devices-new")
    await card.get_by_label("Used by").select_option(label="Minh")
    await card.get_by_label("Name").fill("Minh's tablet")
    await card.get_by_role("button", name="Save").click()
    await expect(parent.locator(".notice")).to_have_text("Saved.")
    device = harness.store.device_by_identifier("127.0.0.2")
    assert device is not None and isinstance(device.owner, int)
    _, profile = harness.services.live_policy.value.profile_for("127.0.0.2")
    assert profile.child is not None and profile.child.name == "Minh"

    # some of the day's activity, as the resolver logs it
    now = harness.now()
    child_id = device.owner
    harness.store.log_queries([
        QueryEvent(now, "127.0.0.2", device.id, child_id, name, "A", action, reason)
        for name, action, reason in [
            ("www.casino.example", "block", "category:gambling:18+"),
            ("cdn.casino.example", "block", "category:gambling:18+"),
            ("vi.wikipedia.org", "allow", ""),
            ("<script>alert(1)</script>.example", "block", "category:adult:18+"),
            ("login-bank.example", "block", "security:phishing"),
            ("www.tiktok.com", "block", "category:social:13+"),
        ]
    ])

    # the child's browser: a blocked site over plain HTTP shows the block page
    child_ctx = await browser.new_context(viewport=PHONE)
    kid = await child_ctx.new_page()
    await kid.goto(blocked_url + "/play")
    await expect(kid.locator("h1")).to_have_text("Trang này đã bị chặn")
    await expect(kid.locator(".site")).to_have_text("casino.example")
    await expect(kid.locator(".why")).to_contain_text("Cờ bạc")
    await expect(kid.locator(".hotline")).to_contain_text("111")
    await shoot(kid, "06-blockpage")
    await kid.get_by_label("Lời nhắn cho bố mẹ").fill("Con chỉ xem thử thôi ạ")
    await kid.get_by_role("button", name="Xin phép bố mẹ").click()
    await expect(kid.locator(".answer.pending")).to_be_visible()
    await shoot(kid, "07-blockpage-asked")

    # the parent sees the request and approves for 30 minutes
    await parent.goto(base + "/")
    await expect(parent.locator(".badge")).to_have_text("1")
    await expect(parent.locator(".card.child")).to_contain_text("Gambling")
    await shoot(parent, "08-home")
    await parent.locator("nav.main").get_by_role("link", name=re.compile("^Requests")).click()
    await expect(parent.locator(".message")).to_have_text("Con chỉ xem thử thôi ạ")
    await shoot(parent, "09-requests")
    await parent.get_by_role("button", name="Yes, 30 minutes").click()
    await expect(parent.locator(".notice")).to_have_text("Approved.")
    grants = harness.store.grants(active_at=harness.now())
    assert [(g.child_id, g.domain) for g in grants] == [(child_id, "casino.example")]

    # the child's page shows the answer (the page checks every 10 s; a reload is the same)
    await kid.reload()
    await expect(kid.locator(".answer.approved")).to_contain_text("Bố mẹ đã đồng ý")
    await shoot(kid, "10-blockpage-approved")

    # the other pages, for the screenshots and the escaping check
    await parent.goto(base + "/activity")
    await expect(parent.locator(".site.blocked").first).to_be_visible()
    assert await parent.locator("text=<script>alert(1)</script>.example").count() >= 1
    await shoot(parent, "11-activity")
    await parent.goto(child_url)
    await shoot(parent, "12-child-after")
    # an admin adds a feed: a file:// URL is refused next to the field, https works
    await parent.goto(base + "/lists")
    await expect(parent.locator("section.feed.failing")).to_contain_text("HTTP 503")
    await parent.get_by_label("Short name").fill("oisd-small")
    await parent.get_by_label("Address (https://)").fill("file:///etc/passwd")
    await parent.get_by_label("Category").select_option("adult")
    await parent.get_by_role("button", name="Add a list").click()
    await expect(parent.locator("#feed-url-err")).to_have_text(
        "The address must start with https://.")
    assert added == []
    await shoot(parent, "13a-lists-error")
    await parent.get_by_label("Address (https://)").fill("https://lists.example/oisd.txt")
    await parent.get_by_role("button", name="Add a list").click()
    await expect(parent.locator(".notice")).to_have_text("List added.")
    assert [f.name for f in added] == ["oisd-small"]
    for path, name in (("/lists", "13-lists"), ("/settings", "14-settings"),
                       ("/audit", "15-audit"), ("/children", "16-children"),
                       ("/help", "16b-help")):
        await parent.goto(base + path)
        await expect(parent.locator("h1")).to_be_visible()
        await shoot(parent, name)

    # switch to Vietnamese and check a page
    await parent.get_by_role("link", name="VI", exact=True).click()
    await expect(parent.locator("html")).to_have_attribute("lang", "vi")
    nav = parent.locator("nav.main")
    for word in ("Trang chủ", "Con", "Thiết bị", "Hoạt động", "Yêu cầu", "Cài đặt"):
        await expect(nav).to_contain_text(word)
    await parent.goto(base + "/")
    await expect(parent.locator("h1")).to_have_text("Hôm nay")
    await expect(parent.get_by_role("button", name="Tạm dừng Internet")).to_be_visible()
    await shoot(parent, "17-home-vi")
    await parent.goto(child_url)
    await expect(parent.locator(".words")).to_contain_text("Với Minh, 9 tuổi: chặn")
    await shoot(parent, "18-child-vi")
    await parent.goto(base + "/devices")
    await shoot(parent, "19-devices-vi")

    # pause in one tap from home
    await parent.goto(base + "/")
    await parent.get_by_role("button", name="Tạm dừng Internet").click()
    await expect(parent.locator(".paused-note")).to_be_visible()
    await shoot(parent, "20-home-paused-vi")
    assert harness.store.settings(child_id).paused_until is not None

    # no script ever ran from the data, and CSP let the page's own script work
    assert not [e for e in errors if "Content Security Policy" in e], errors
    await child_ctx.close()
    await parent_ctx.close()
