"""The whole product in a real browser: a parent sets nestguard up, a child asks for access.

Everything is real: the household (SQLite store, policy reload, synced list), the resolver on
a loopback port in front of a loopback upstream, the web UI served by `Household.web_app()`,
Debian's chromium driven by Playwright (never downloaded), and `dig -b 127.0.0.2` as the
child's tablet. The resolver answers blocked names with the block page's address; chromium is
pointed at the address `dig` got (--host-resolver-rules), and a small relay carries the child's
HTTP from 127.0.0.2, the tablet's address, so the block page knows whose device it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import time
from pathlib import Path
from typing import Any

import pytest

from blocklists.feed import Feed
from resolver.config import PolicyConfig, WebConfig
from tests.conftest import build_config
from tests.integration.test_household import REAL, years_ago
from tests.resolver.dnsclient import dig
from tests.support.tools import needs
from tests.webui.test_browser import ARGS, CHROMIUM, PHONE, relay_from, serve, shoot

KID = "127.0.0.2"
PASSWORD = "correct horse battery staple"

pytestmark = [
    pytest.mark.browser,
    needs("chromium"),
    needs("dig"),
]


async def answer(addr: tuple[str, int], name: str) -> str:
    out = await dig(addr, "-b", KID, name, "A", "+short", "+tries=1", "+time=2")
    return out.strip().splitlines()[-1] if out.strip() else "NODATA"


async def until(addr: tuple[str, int], name: str, want: str, *, within: float) -> float:
    """Seconds until `dig -b KID name` answers `want`; fails after `within` seconds."""
    start = time.monotonic()
    while (got := await answer(addr, name)) != want:
        assert time.monotonic() - start < within, f"{name}: {got}, not {want}, after {within} s"
    return time.monotonic() - start


async def test_setup_to_approved_request_in_chromium(
    household_server: Any, fake_upstream: Any, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    for name in ("adult-site.example", "school.example"):
        fake_upstream.add(name, "A", REAL)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "adult.txt").write_text("adult-site.example\n")
    config = build_config(fake_upstream)
    config = dataclasses.replace(
        config,
        policy=PolicyConfig(timezone="UTC", block_answer="blockpage",
                            blockpage_ipv4=ipaddress.IPv4Address("127.0.0.1")),
        web=WebConfig(listen=("127.0.0.1", 0)),
    )
    hh, addr = await household_server(
        config=config, feeds=(Feed("adult", str(lists / "adult.txt"), "domains", "adult"),)
    )
    app = hh.web_app()
    async with serve(app) as port, relay_from(KID, port) as relay_port, async_playwright() as pw:
        base = f"http://127.0.0.1:{port}"
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=ARGS + ["--host-resolver-rules=MAP adult-site.example 127.0.0.1"],
        )
        try:
            parent = await (await browser.new_context(viewport=PHONE, locale="en-GB")).new_page()
            # first run: set up the parent's account (signed in at once)
            await parent.goto(base + "/")
            await expect(parent).to_have_url(re.compile(r"/setup$"))
            # the first visit follows the browser's language (en-GB), not the household's (vi)
            await expect(parent.locator("html")).to_have_attribute("lang", "en")
            await parent.get_by_label("User name").fill("mai")
            await parent.get_by_label("Password", exact=True).fill(PASSWORD)
            await parent.get_by_label("Password again").fill(PASSWORD)
            await parent.get_by_role("button", name="Create the account").click()
            await expect(parent.locator("h1")).to_have_text("Today")  # signed in at once

            # add a child born 9 years ago
            await parent.get_by_role("link", name="Children").click()
            await parent.get_by_label("Name").first.fill("Minh")
            await parent.get_by_label("Birth date").fill(years_ago(9).isoformat())
            await parent.get_by_label("Language of the block page").select_option("vi")
            await parent.get_by_role("button", name="Add a child").click()
            await expect(parent.locator(".words")).to_contain_text("For Minh, 9: blocked")

            # the tablet asks its first question: it shows up as a new device, unclaimed,
            # and (strictest profile for unknown devices) already filtered
            assert await answer(addr, "school.example") == REAL
            assert await answer(addr, "adult-site.example") == "127.0.0.1"
            for _ in range(50):  # sightings are written in batches, about once a second
                if await asyncio.to_thread(hh.store.device_by_identifier, KID):
                    break
                await asyncio.sleep(0.1)
            await parent.goto(base + "/devices")
            card = parent.locator("section.device", has_text=KID)
            await expect(card.locator(".tag.new")).to_be_visible()
            await card.get_by_label("Used by").select_option(label="Minh")
            await card.get_by_label("Name").fill("Minh's tablet")
            await card.get_by_role("button", name="Save").click()
            await expect(parent.locator(".notice")).to_have_text("Saved.")
            _, profile = hh.live_policy.value.profile_for(KID)
            await until(addr, "adult-site.example", "127.0.0.1", within=1.0)
            assert profile.child is None or profile.child.name == "Minh"

            # the child opens the blocked site: the block page, in Vietnamese, says why
            kid = await (await browser.new_context(viewport=PHONE)).new_page()
            await kid.goto(f"http://adult-site.example:{relay_port}/")
            await expect(kid.locator("h1")).to_have_text("Trang này đã bị chặn")
            await expect(kid.locator(".site")).to_have_text("adult-site.example")
            await expect(kid.locator(".why")).to_contain_text("18")
            await kid.get_by_label("Lời nhắn cho bố mẹ").fill("Con cần cho bài tập ạ")
            await kid.get_by_role("button", name="Xin phép bố mẹ").click()
            await expect(kid.locator(".answer.pending")).to_be_visible()
            await shoot(kid, "e2e-blockpage-asked")

            # the parent approves for 30 minutes; the name resolves within a second
            await parent.goto(base + "/requests")
            await expect(parent.locator(".message")).to_have_text("Con cần cho bài tập ạ")
            await parent.get_by_role("button", name="Yes, 30 minutes").click()
            await expect(parent.locator(".notice")).to_have_text("Approved.")
            took = await until(addr, "adult-site.example", REAL, within=1.0)
            assert took < 1.0
            await kid.reload()
            await expect(kid.locator(".answer.approved")).to_be_visible()

            # the activity page shows why the earlier query was blocked
            await parent.goto(base + "/activity")
            await expect(parent.locator("body")).to_contain_text("adult-site.example")

            # switch to Vietnamese and check a page
            await parent.get_by_role("link", name="VI", exact=True).click()
            await parent.goto(base + "/")
            await expect(parent.locator("h1")).to_have_text("Hôm nay")
            await shoot(parent, "e2e-home-vi")
        finally:
            await browser.close()
