"""Daily time budgets in a real browser (Playwright driving Debian's chromium) at 360 px:
the parent sets a budget on the child's page, sees it on Home, the child's block page asks
for 15 more minutes, and the parent gives 30 from Home. Screenshots go to
tests/artifacts/webui/ (git-ignored); nothing may scroll sideways at 360 px.
"""

from __future__ import annotations

import re

import pytest

from policy.model import Action, Verdict
from policy.store import BudgetUsage
from tests.support.tools import needs
from tests.webui.conftest import PASSWORD, Harness, years_ago
from tests.webui.test_browser import (
    ARGS,
    CHROMIUM,
    PHONE,
    first_parent,
    relay_from,
    serve,
    shoot,
)
from webui.app import create_app

pytestmark = [
    pytest.mark.browser,
    needs("chromium"),
]


async def test_budget_set_seen_on_home_more_time_asked_and_given(harness: Harness) -> None:
    from playwright.async_api import async_playwright, expect

    harness.services.allowed_hosts = ("127.0.0.1",)
    store = harness.store
    minh = store.add_child("Minh", years_ago(9), lang="vi")
    store.upsert_device("127.0.0.2", owner=minh.id, name="Minh's tablet")
    harness.rebuild_policy()
    app = create_app(harness.services)
    async with serve(app) as port, relay_from("127.0.0.2", port) as relay_port:
        base = f"http://127.0.0.1:{port}"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(CHROMIUM),
                args=ARGS + ["--host-resolver-rules=MAP tube.example 127.0.0.1"],
            )
            try:
                parent = await first_parent(browser, base, PASSWORD)
                parent_ctx = parent.context

                # the child's page: an hour of YouTube on school days, two at weekends
                await parent.goto(f"{base}/children/{minh.id}")
                section = parent.locator("#sec-budgets")
                await section.locator("summary").click()  # the page's sections start folded
                await section.get_by_label("Limit").select_option(label="YouTube")
                await section.get_by_label("Minutes on school days").fill("2000")
                await section.get_by_role("button", name="Save the time limit").click()
                await expect(parent.locator("#budget-school_days-err")).to_have_text(
                    "Enter minutes from 0 to 1440.")
                section = parent.locator("#sec-budgets")  # reopened at the error
                await section.get_by_label("Limit").select_option(label="YouTube")
                await section.get_by_label("Minutes on school days").fill("60")
                await section.get_by_label("Minutes at weekends and on holidays").fill("120")
                await section.get_by_role("button", name="Save the time limit").click()
                await expect(parent.locator(".notice")).to_have_text("Saved.")
                await expect(parent.locator("#sec-budgets")).to_contain_text(
                    "school days 60 min · weekends and holidays 120 min")
                await shoot(parent, "b1-child-budget")
                [b] = store.budgets(minh.id)
                assert (b.slug, b.school_days, b.weekends) == ("youtube", 60, 120)

                # Home: the bar, 0 minutes used
                await parent.goto(base + "/")
                bar = parent.locator(".card.child .budget[data-budget=youtube]")
                await expect(bar).to_contain_text(re.compile(r"0 of (60|120) min"))
                await shoot(parent, "b2-home-budget")

                # the day's minutes are used up (the resolver's counts, as it writes them)
                today = harness.now().date()
                limit = 120 if today.weekday() >= 5 else 60
                store.save_budget_usage(
                    [BudgetUsage(minh.id, today, "youtube", limit, harness.now(), 300)],
                    spent=True)
                harness.verdict = Verdict(Action.BLOCK, "budget:youtube")
                await parent.reload()
                await expect(bar).to_contain_text("Time is up for today")

                # the child's block page offers "ask for 15 more minutes" (a stand-in name:
                # chromium forces https for youtube.com, HSTS preload)
                child_ctx = await browser.new_context(viewport=PHONE)
                kid = await child_ctx.new_page()
                await kid.goto(f"http://tube.example:{relay_port}/watch")
                await expect(kid.locator(".why")).to_contain_text("YouTube")
                await kid.get_by_label("Lời nhắn cho bố mẹ").fill("Con xem nốt bài học")
                await kid.get_by_role("button", name="Xin thêm 15 phút").click()
                await expect(kid.locator(".answer.pending")).to_be_visible()
                await shoot(kid, "b3-blockpage-more-time")

                # Home shows the request; the parent gives 30 minutes until midnight
                await parent.reload()
                ask = bar.locator(".more-time")
                await expect(ask).to_contain_text("Minh asks for 15 more minutes")
                await expect(ask).to_contain_text("Con xem nốt bài học")
                await shoot(parent, "b4-home-more-time")
                await ask.get_by_role("button", name="+30 min").click()
                await expect(parent.locator(".notice")).to_have_text("Approved.")
                await expect(bar).to_contain_text(f"{limit} of {limit + 30} min")
                await expect(bar).to_contain_text("+30 extra")
                assert store.budget_extras(today) == {(minh.id, "youtube"): 30}
                await shoot(parent, "b5-home-after")
                # the resolver now lets YouTube through (the extra time); the page says yes
                harness.verdict = Verdict(Action.ALLOW)
                await kid.reload()
                await expect(kid.locator(".answer.approved")).to_contain_text("thêm 30 phút")
                await expect(kid.locator(".answer.approved.still")).to_have_count(0)
                await child_ctx.close()
                await parent_ctx.close()
            finally:
                await browser.close()
