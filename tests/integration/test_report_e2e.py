"""Report a site end to end in a real browser: a child reports a harmful site from the block
page's help page, the admin puts it on the local list, the running resolver blocks it for the
house within a second, and the export (UI download and `nestguard reports export`) has the line.

The same real parts as test_browser_e2e.py: household, resolver, web UI, chromium through a
relay from the tablet's address 127.0.0.2, `dig -b 127.0.0.2`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import ipaddress
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from blocklists.feed import Feed
from resolver.cli import main
from resolver.config import PolicyConfig, WebConfig
from tests.conftest import build_config
from tests.integration.test_browser_e2e import KID, PASSWORD, answer
from tests.integration.test_household import REAL, years_ago
from tests.support.tools import needs
from tests.webui.test_browser import (
    ARGS,
    CHROMIUM,
    PHONE,
    first_parent,
    relay_from,
    serve,
    shoot,
)

pytestmark = [
    pytest.mark.browser,
    needs("chromium"),
]
BAD = "harmful-game.example"


async def test_child_reports_admin_lists_house_blocks_export_has_it(
    household_server: Any, fake_upstream: Any, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    for name in ("adult-site.example", BAD):
        fake_upstream.add(name, "A", REAL)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "adult.txt").write_text("adult-site.example\n")
    config = dataclasses.replace(
        build_config(fake_upstream),
        policy=PolicyConfig(timezone="UTC", block_answer="blockpage",
                            blockpage_ipv4=ipaddress.IPv4Address("127.0.0.1")),
        web=WebConfig(listen=("127.0.0.1", 0)),
    )
    hh, addr = await household_server(
        config=config, feeds=(Feed("adult", str(lists / "adult.txt"), "domains", "adult"),)
    )
    store = hh.store
    assert store is not None
    minh = await asyncio.to_thread(store.add_child, "Minh", years_ago(9))
    await asyncio.to_thread(store.upsert_device, KID, name="Minh's tablet", owner=minh.id)
    hh.nudge.set()
    app = hh.web_app()
    async with serve(app) as port, relay_from(KID, port) as relay_port, async_playwright() as pw:
        base = f"http://127.0.0.1:{port}"
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=ARGS + ["--host-resolver-rules=MAP adult-site.example 127.0.0.1"],
        )
        try:
            admin = await first_parent(browser, base, PASSWORD)

            deadline = time.monotonic() + 5
            while await answer(addr, "adult-site.example") != "127.0.0.1":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            assert await answer(addr, BAD) == REAL

            # the child: block page -> help page -> "I saw something harmful"
            kid = await (await browser.new_context(viewport=PHONE)).new_page()
            await kid.goto(f"http://adult-site.example:{relay_port}/")
            await expect(kid.locator("h1")).to_have_text("Trang này đã bị chặn")
            await kid.get_by_role("link", name="Trợ giúp, hoặc báo cho bố mẹ về một trang").click()
            await expect(kid.locator("h1")).to_have_text("Trợ giúp và báo cáo")
            harmful = kid.locator("form", has=kid.locator("input[name=domain]"))
            await kid.get_by_label("Tên trang, ví dụ example.com").fill("đây không phải tên trang")
            await harmful.get_by_role("button", name="Gửi").click()
            await expect(kid.locator(".err")).to_have_text("Nhập tên trang web, ví dụ example.com.")
            await kid.get_by_label("Tên trang, ví dụ example.com").fill(BAD)
            await harmful.get_by_role("button", name="Gửi").click()
            await expect(kid.locator(".notice")).to_contain_text("Cảm ơn con!")
            await shoot(kid, "e2e-report-child")

            # the admin puts it on the local list; the house blocks it within a second
            await admin.goto(base + "/reports/sites")
            card = admin.locator("section.report-item", has_text=BAD)
            await expect(card).to_contain_text("from Minh (child)")
            await expect(card).to_contain_text("No list or rating knows this name.")
            await card.get_by_label("Category").select_option("gambling")
            clicked = time.monotonic()
            await card.get_by_role("button", name="Add to the local list").click()
            await expect(admin.locator(".notice")).to_contain_text("Added to the local list")
            while (got := await answer(addr, BAD)) != "127.0.0.1":
                assert time.monotonic() - clicked < 1.0, f"{BAD}: {got} 1 s after the accept"
            print(f"accept -> blocked: {time.monotonic() - clicked:.3f} s")
            # the background sync folds the line into the index itself (the local feed)
            deadline = time.monotonic() + 30
            while not any(m.source == "local" for m in hh.sync.index.lookup(BAD)):
                assert time.monotonic() < deadline, "the local feed was not synced"
                await asyncio.sleep(0.2)
            assert await answer(addr, BAD) == "127.0.0.1"
            await shoot(admin, "e2e-reports-admin")

            # the download and the command line have the line
            today = time.strftime("%Y-%m-%d", time.gmtime())
            resp = await admin.request.get(f"{base}/reports/export.csv?since={today}")
            assert resp.ok
            line = f"{BAD},gambling,18,reported by a child"
            assert (await resp.text()).splitlines() == ["domain,category,min_age,note", line]
        finally:
            await browser.close()
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "dns": {"upstreams": [f"{fake_upstream.address[0]}:{fake_upstream.address[1]}"]},
    }))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(
            main, ["reports", "export", "--config", str(cfg_file), "--since", today])
    assert code == 0
    assert re.search(rf"^{re.escape(line)}$", out.getvalue(), re.M)
