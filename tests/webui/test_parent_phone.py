"""The parents' UI walked through as a parent on a 360 px phone (issue 14), in chromium.

Each test is one thing a parent stumbled on: "Yes, always" at bedtime, long words widening
the page, a first-run device's lookups credited to no one or the wrong child, an error
3,700 px below the fold, an allow offered for probes nestguard answers itself, a saved site
that is not what was typed. Real parts: the store in tmp_path, the policy built by
policy/reload.py after every write, decide() over a small index for the block page, the web
app on 127.0.0.1:0, Debian's chromium via Playwright. Screenshots of every page (phone and
desktop, vi and en) go to tests/artifacts/phone/.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from blocklists.feed import Feed
from policy.model import QueryEvent, Schedule
from policy.store import FeedStatus
from tests.support.tools import needs
from tests.webui.conftest import PASSWORD, Harness, years_ago
from tests.webui.test_browser import ARGS, CHROMIUM, DESKTOP, PHONE, relay_from, serve
from tests.webui.test_parent_words import real_policy
from webui.app import create_app

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "phone"
KID_IP = "127.0.0.2"
LONG = "x" * 300  # a child's message, a pasted name: one word, no spaces

pytestmark = [
    pytest.mark.browser,
    needs("chromium"),
]


@contextlib.asynccontextmanager
async def chromium(harness: Harness) -> AsyncIterator[tuple[Any, str, str]]:
    """(browser, the UI's base URL, the blocked site's URL as the child's tablet sees it)."""
    from playwright.async_api import async_playwright

    app = create_app(harness.services)
    async with serve(app) as port, relay_from(KID_IP, port) as relay_port, \
            async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=ARGS + ["--host-resolver-rules=MAP casino.example 127.0.0.1"],
        )
        try:
            yield browser, f"http://127.0.0.1:{port}", f"http://casino.example:{relay_port}"
        finally:
            await browser.close()


async def parent_page(browser: Any, base: str, lang: str = "en") -> Any:
    """A parent's phone, signed in (first-run setup, then the login form if shown)."""
    from playwright.async_api import expect

    ctx = await browser.new_context(viewport=PHONE, locale="en-GB")
    page = await ctx.new_page()
    await page.goto(f"{base}/lang/{lang}?next=/")
    if "/setup" in page.url:
        await page.locator("#setup-username").fill("mai")
        await page.locator("#setup-password").fill(PASSWORD)
        await page.locator("#setup-confirm").fill(PASSWORD)
        await page.locator("form button[type=submit]").click()
    if "/login" in page.url:
        await page.locator("#login-username").fill("mai")
        await page.locator("#login-password").fill(PASSWORD)
        await page.locator("form button[type=submit]").click()
    await expect(page.locator("nav.main")).to_be_visible()
    return page


async def overflow(page: Any) -> int:
    return int(await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"))


async def shoot(page: Any, name: str) -> None:
    """Phone and desktop screenshots, full page; the phone one must not scroll sideways."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.set_viewport_size(PHONE)
    assert await overflow(page) <= 0, f"{name} scrolls sideways at 360 px"
    await page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)
    await page.screenshot(path=str(ARTIFACTS / f"{name}-desktop.png"), full_page=True)
    await page.set_viewport_size(PHONE)


def family(harness: Harness, *, name: str = "Minh") -> int:
    """A child born 9 years ago with the tablet 127.0.0.2."""
    child = harness.store.add_child(name, years_ago(9), lang="vi")
    harness.store.seen([(KID_IP, None, harness.now())])
    device = harness.store.device_by_identifier(KID_IP)
    assert device is not None
    harness.store.set_owner(device.id, child.id)
    harness.services.nudge()
    return child.id


# -- "Yes, always" at bedtime ------------------------------------------------------------


async def test_yes_always_at_bedtime_says_what_still_applies(harness: Harness) -> None:
    from playwright.async_api import expect

    real_policy(harness)
    cid = family(harness)
    now = harness.now()
    start = (now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (now + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    harness.store.add_schedule(cid, Schedule("Giờ ngủ", "bedtime", frozenset(range(7)),
                                             start, end))
    harness.services.nudge()
    async with chromium(harness) as (browser, base, casino):
        kid = await (await browser.new_context(viewport=PHONE)).new_page()
        await kid.goto(casino + "/")
        await expect(kid.locator("h1")).to_have_text("Trang này đã bị chặn")
        await kid.get_by_role("button", name="Xin phép bố mẹ").click()
        await expect(kid.locator(".answer.pending")).to_be_visible()

        parent = await parent_page(browser, base)
        await parent.goto(base + "/requests")
        await parent.get_by_role("button", name="Yes, always").click()
        # the parent reads what the yes does not lift, and can open it for tonight too
        still = parent.locator(".still")
        until = end.strftime("%H:%M")
        await expect(still).to_contain_text(
            f"casino.example is allowed for good, but Giờ ngủ until {until} still applies")
        await shoot(parent, "requests-yes-at-bedtime")

        # the child's page never says yes while bedtime still blocks
        await kid.reload()
        await expect(kid.locator("h1")).to_have_text("Trang này đã bị chặn")
        await expect(kid.locator(".answer.approved")).to_contain_text(
            f"Giờ ngủ đến {until} vẫn còn hiệu lực")
        await expect(kid.locator("body")).not_to_contain_text("Từ giờ con được dùng")
        await expect(kid.get_by_role("button", name="Xin dùng ngay bây giờ")).to_be_visible()
        await shoot(kid, "blockpage-yes-but-bedtime")

        # one more tap opens it until bedtime ends: heading, text (once) and form change
        await still.get_by_role("button", name=f"Open it now too, until {until}").click()
        await expect(parent.locator(".notice")).to_have_text("Site allowed.")
        await kid.reload()
        await expect(kid.locator("h1")).to_have_text("Bố mẹ đã đồng ý")
        assert await kid.locator("text=mở lại trang sau một phút").count() == 1
        assert await kid.locator("textarea").count() == 0
        await shoot(kid, "blockpage-yes-open")


# -- long words --------------------------------------------------------------------------


async def fill_free_text(page: Any) -> int:
    """300 characters in every free-text field of the page; returns how many."""
    fields = page.locator(
        "input[type=text]:visible, input[type=search]:visible, input[type=url]:visible,"
        " textarea:visible")
    n = await fields.count()
    for i in range(n):
        await fields.nth(i).fill(LONG)
    return n


async def test_no_page_scrolls_sideways_at_360_px_with_long_words(harness: Harness) -> None:
    from playwright.async_api import expect

    real_policy(harness)
    long_label = "a" * 63
    long_domain = ".".join([long_label] * 3) + ".example"
    cid = family(harness, name="B" * 40)
    device = harness.store.device_by_identifier(KID_IP)
    assert device is not None
    harness.store.rename_device(device.id, "T" * 60)
    harness.store.seen([("127.0.0.9", None, harness.now())])
    harness.store.add_rule(cid, long_domain, "deny")
    harness.store.add_schedule(cid, Schedule("S" * 40, "school", frozenset({0}),
                                             harness.now().time().replace(hour=7, minute=0),
                                             harness.now().time().replace(hour=8, minute=0)))
    harness.store.log_queries([
        QueryEvent(harness.now(), KID_IP, device.id, cid, long_domain, "A", "block",
                   "category:gambling:18+", "u" * 80 + ":12"),
    ])
    harness.store.add_request(child_id=cid, device_id=device.id, client=KID_IP,
                              domain=long_domain, reason="category:gambling:18+",
                              message=LONG)
    harness.store.add_report(kind="wrong_block", domain=long_domain, source="child",
                             reporter="B" * 40, note=LONG, child_id=cid, device_id=device.id)
    harness.services.feeds = [
        Feed("l" * 40, "https://lists.example/" + "p" * 300, "domains", "gambling")]
    harness.store.save_feed_status(FeedStatus(
        "l" * 40, last_try=harness.now(), entries=0, rejected=0, error="E" * 300))
    harness.services.nudge()
    async with chromium(harness) as (browser, base, casino):
        parent = await parent_page(browser, base)
        for path in ("/", "/children", f"/children/{cid}", "/devices", "/activity",
                     "/requests", "/lists", "/settings", "/audit", "/help", "/reports/sites",
                     "/reports/new", "/reports/weekly"):
            await parent.goto(base + path)
            await parent.evaluate(
                "document.querySelectorAll('details').forEach(d => d.open = true)")
            await fill_free_text(parent)
            width = await parent.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} is {width} px wide at 360 px"
            # "Decline" (every button) stays on the screen
            for box in [await b.bounding_box() for b in
                        await parent.locator("main button:visible").all()]:
                assert box is None or box["x"] + box["width"] <= PHONE["width"] + 1, path
        # the same with the messages a 300-letter entry brings back beside the field
        await parent.goto(f"{base}/children/{cid}?open=sec-sites")
        await parent.locator("#rule-domain").fill(LONG)
        await parent.get_by_role("button", name="Add the site").click()
        await expect(parent.locator("#rule-domain-err")).to_be_visible()
        assert await overflow(parent) <= 0
        kid = await (await browser.new_context(viewport=PHONE)).new_page()
        await kid.goto(casino + "/")
        await fill_free_text(kid)
        assert await overflow(kid) <= 0
        await kid.get_by_role("button", name="Xin phép bố mẹ").click()
        assert await overflow(kid) <= 0
        await kid.goto(casino + "/__nestguard/help")  # the children's help and report page
        await fill_free_text(kid)
        assert await overflow(kid) <= 0


# -- first-run Activity ------------------------------------------------------------------


async def test_first_run_activity_credits_the_device_not_a_child(harness: Harness) -> None:
    from playwright.async_api import expect

    real_policy(harness)
    na = harness.store.add_child("Bé Na", years_ago(7), lang="vi")
    harness.services.nudge()
    now = harness.now()
    # a new phone's first lookups, logged before it was a known device (as the resolver
    # logs them: no device, no child; filtered under the strictest profile, Bé Na's)
    harness.store.log_queries([
        QueryEvent(now, "127.0.0.9", None, None, qname, "A", "block", reason, source)
        for qname, reason, source in [
            ("www.casino.example", "category:gambling:18+", "ut1-gambling:12"),
            ("mask.icloud.com", "bypass:private-relay", ""),
            ("_dns.resolver.arpa", "bypass:ddr", ""),
            ("dns.google", "category:bypass:99+", "bypass-builtin:14"),
        ]
    ])
    harness.store.seen([("127.0.0.9", None, now)])
    phone = harness.store.device_by_identifier("127.0.0.9")
    assert phone is not None
    async with chromium(harness) as (browser, base, _):
        parent = await parent_page(browser, base)
        await parent.goto(base + "/activity")
        casino = parent.locator("li.site", has_text="casino.example")
        await expect(casino.locator(".unassigned")).to_contain_text(
            "Device not assigned to a child yet · filtered as Bé Na")
        await expect(casino).to_contain_text("Blocked by: list ut1-gambling, line 12")
        assert await parent.locator("form.allow").count() == 0  # no allow without a child
        assert await parent.locator("text=Allow this site for").count() == 0
        # probes nestguard answers itself, and encrypted DNS: said, not offered
        for site in ("icloud.com", "resolver.arpa"):
            row = parent.locator("li.site", has_text=site)
            await expect(row.locator(".cannot-allow")).to_contain_text("Cannot be allowed")
        await expect(parent.locator("li.site", has_text="dns.google")).to_contain_text(
            "skip nestguard's filter")
        await shoot(parent, "activity-first-run")

        # the phone's own activity shows its first lookups at once
        await parent.goto(f"{base}/activity?device={phone.id}")
        await expect(parent.locator("li.site", has_text="casino.example")).to_be_visible()

        # assigned to Bé Na: her next lookups are hers, with an allow for her; the
        # filters stay after the allow
        harness.store.set_owner(phone.id, na.id)
        harness.services.nudge()
        harness.store.log_queries([QueryEvent(harness.now(), "127.0.0.9", phone.id, na.id,
                                              "casino.example", "A", "block",
                                              "category:gambling:18+", "ut1-gambling:12")])
        await parent.goto(f"{base}/activity?child={na.id}&blocked=1")
        row = parent.locator("li.site", has_text="casino.example")
        await expect(row.locator("form.allow label")).to_have_text(
            "Allow this site for Bé Na")
        await row.get_by_role("button", name="Allow").click()
        await expect(parent.locator(".notice")).to_have_text("Site allowed.")
        assert f"child={na.id}" in parent.url and "blocked=1" in parent.url
        await expect(parent.locator("#f-child")).to_have_value(str(na.id))


# -- errors where the parent looks, and what was saved -----------------------------------


async def in_view(page: Any, selector: str) -> bool:
    box = await page.locator(selector).bounding_box()
    return box is not None and 0 <= box["y"] < PHONE["height"]


async def test_the_site_form_answers_where_the_parent_is(harness: Harness) -> None:
    from playwright.async_api import expect

    real_policy(harness)
    cid = family(harness)
    async with chromium(harness) as (browser, base, _):
        parent = await parent_page(browser, base)
        await parent.goto(f"{base}/children/{cid}")
        sites = parent.locator("#sec-sites")
        await sites.locator("summary").click()
        await parent.locator("#rule-domain").fill("not a site!")
        await sites.get_by_role("button", name="Add the site").click()
        # back at the Sites section, open, its message beside the field, a note on top
        assert parent.url.endswith("#sec-sites")
        await expect(sites).to_have_attribute("open", "")
        await expect(parent.locator("#rule-domain-err")).to_be_visible()
        assert await in_view(parent, "#rule-domain-err")
        await expect(parent.locator(".top-error")).to_contain_text("Not saved")
        await shoot(parent, "child-site-error")

        # a pasted address saves the host, says so, and offers the whole site
        await parent.locator("#rule-domain").fill("https://www.YouTube.com/watch?v=abc")
        await parent.locator("#rule-kind").select_option("deny")
        await sites.get_by_role("button", name="Add the site").click()
        await expect(parent.locator(".saved")).to_contain_text(
            "Saved: Block www.youtube.com (and its subdomains).")
        assert parent.url.endswith("#sec-sites")
        await expect(sites).to_have_attribute("open", "")
        await parent.get_by_role("button", name="Block all of youtube.com").click()
        assert {r.domain for r in harness.store.rules(cid)} == {
            "www.youtube.com", "youtube.com"}

        # IDN names read in Unicode; an allow replacing a block says so
        await parent.locator("#rule-domain").fill("ví-dụ.vn")
        await parent.locator("#rule-kind").select_option("deny")
        await sites.get_by_role("button", name="Add the site").click()
        await expect(sites.locator(".list")).to_contain_text("ví-dụ.vn")
        await expect(sites.locator(".list")).not_to_contain_text("xn--")
        await parent.locator("#rule-domain").fill("ví-dụ.vn")
        await parent.locator("#rule-kind").select_option("allow")
        await sites.get_by_role("button", name="Add the site").click()
        await expect(parent.locator(".saved")).to_contain_text(
            "This replaces your earlier rule “Block” for it.")
        await shoot(parent, "child-site-saved")


# -- every page, phone and desktop, vi and en ----------------------------------------------


async def test_every_page_in_both_languages(harness: Harness) -> None:
    from playwright.async_api import expect

    real_policy(harness)
    cid = family(harness)
    device = harness.store.device_by_identifier(KID_IP)
    assert device is not None
    harness.store.rename_device(device.id, "Máy tính bảng của Minh")
    harness.store.seen([("127.0.0.9", None, harness.now())])
    now = harness.now()
    harness.store.add_rule(cid, "xn--v-d-rma6749a.vn", "allow")
    harness.store.add_schedule(cid, Schedule("Giờ ngủ", "bedtime", frozenset(range(7)),
                                             (now - timedelta(hours=1)).time().replace(
                                                 second=0, microsecond=0),
                                             (now + timedelta(hours=3)).time().replace(
                                                 second=0, microsecond=0)))
    harness.store.log_queries([
        QueryEvent(now, KID_IP, device.id, cid, name, "A", action, reason, source)
        for name, action, reason, source in [
            ("www.casino.example", "block", "category:gambling:18+", "ut1-gambling:12"),
            ("vi.wikipedia.org", "allow", "", ""),
            ("www.google.com", "rewrite", "safe-search", ""),
        ]
    ] + [QueryEvent(now, "127.0.0.9", None, None, "mask.icloud.com", "A", "block",
                    "bypass:private-relay")])
    harness.store.add_request(child_id=cid, device_id=device.id, client=KID_IP,
                              domain="casino.example", reason="category:gambling:18+",
                              message="Con cần cho bài tập ạ")
    harness.services.feeds = [
        Feed("ut1-gambling", "https://lists.example/ut1/gambling.txt", "domains", "gambling")]

    async def add_feed(feed: Feed) -> None:
        del feed

    harness.services.add_feed = add_feed  # the Lists page shows its form (format choice)
    harness.services.nudge()
    async with chromium(harness) as (browser, base, casino):
        for lang in ("vi", "en"):
            parent = await parent_page(browser, base, lang)
            await expect(parent.locator("html")).to_have_attribute("lang", lang)
            for path, name in (("/", "home"), ("/children", "children"),
                               (f"/children/{cid}", "child"), ("/devices", "devices"),
                               ("/activity", "activity"), ("/requests", "requests"),
                               ("/lists", "lists"), ("/settings", "settings"),
                               ("/audit", "audit"), ("/help", "help")):
                await parent.goto(base + path)
                await expect(parent.locator("h1")).to_be_visible()
                # no key shown raw (format.wildcard and the like)
                assert not re.search(r"\b(format|rule|kind|status|duration)\.[a-z0-9_]+\b",
                                     await parent.locator("main").inner_text()), (lang, path)
                if path == "/lists":  # every format has words (format.wildcard was raw)
                    options = await parent.locator("#feed-format option").all_inner_texts()
                    assert len(options) == 8 and not [o for o in options if "format." in o]
                await shoot(parent, f"{name}-{lang}")
                # tap targets of at least 44 px (language switch, log out, footer links,
                # breadcrumbs, checkboxes' labels, buttons), and a skip link
                for target in await parent.locator(
                        ".langs a, .logout button, .foot a, .crumb a, label.check,"
                        " main button:visible").all():
                    box = await target.bounding_box()
                    assert box is None or box["width"] == 0 or box["height"] >= 44, (
                        path, await target.inner_text())
                assert await parent.locator("a.skip[href='#main']").count() == 1
            await parent.goto(f"{base}/children/{cid}")
            await expect(parent.locator("p.in-force")).to_contain_text(
                "Giờ ngủ " + ("đến" if lang == "vi" else "until"))
            await parent.goto(base + "/")
            await expect(parent.locator(".card.child .in-force")).to_be_visible()
            await parent.goto(base + "/activity")  # a safe-search rewrite is explained
            await expect(parent.locator("li.site", has_text="google.com").locator(
                ".rewritten")).to_be_visible()
            await parent.context.close()
        kid = await (await browser.new_context(viewport=PHONE)).new_page()
        await kid.goto(casino + "/")
        await shoot(kid, "blockpage-vi")
