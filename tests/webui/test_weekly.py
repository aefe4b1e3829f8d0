"""The weekly report: the page, the Monday e-mail (real aiosmtpd server; HTML and plain text,
vi and en), its HTML in chromium at 360 and 1280 px, and `nestguard report weekly`."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.header
import html as html_lib
import io
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy.model import QueryEvent
from policy.store import AlertPrefs, Store
from tests.support.smtp import Mailbox
from tests.support.tools import needs, tool_path
from tests.webui.conftest import HOUSEHOLD_TZ, Harness, setup_and_login, years_ago
from tests.webui.test_alerts import parts
from webui.alerts import Alerts, parse_alerts
from webui.i18n import load_catalogues
from webui.weekly import bundled_tld, last_week, weekly_loop

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = tool_path("chromium")  # Debian's, never a downloaded one




def a_week(store: Store, now: datetime) -> datetime:
    """Minh (9) with a tablet: a week of look-ups, blocks, a bypass try and a request."""
    start = last_week(now)
    minh = store.add_child("Minh", years_ago(9))
    tablet = store.upsert_device("192.168.1.20", name="Minh's tablet", owner=minh.id)
    events = []

    def ev(day: int, name: str, action: str = "allow", reason: str = "", n: int = 1) -> None:
        at = start + timedelta(days=day, hours=16)
        events.extend(QueryEvent(at=at, client="192.168.1.20", device_id=tablet.id,
                                 child_id=minh.id, qname=name, qtype="A", action=action,
                                 reason=reason) for _ in range(n))

    for day in range(7):
        ev(day, "www.youtube.com", n=10 + day)
        ev(day, "vi.wikipedia.org", n=3)
    ev(2, "casino.example", "block", "category:gambling:18+", n=4)
    ev(5, "www.casino.example", "block", "category:gambling:18+", n=2)
    ev(3, "mask.icloud.com", "block", "bypass:private-relay", n=1)
    store.log_queries(events)
    req = store.add_request(child_id=minh.id, device_id=tablet.id, client="192.168.1.20",
                            domain="game.example", reason="category:games:16+", message="")
    store.answer_request(req.id, approve=False, minutes=0, by="mai", now=now)
    with store._write() as c:  # the request was made last week  # noqa: SLF001
        c.execute("UPDATE requests SET created = ? WHERE id = ?",
                  (int((start + timedelta(days=4)).timestamp() * 1_000_000), req.id))
    return start


async def test_weekly_page_shows_each_childs_week(client: Any, harness: Harness) -> None:
    await setup_and_login(client)
    start = a_week(harness.store, harness.now())
    r = await client.get("/reports/weekly")
    assert r.status == 200
    page = html_lib.unescape(await r.text())
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert f"Tuần từ {start.date().isoformat()}" in text
    assert "Minh" in text and "Minh's tablet" in text
    assert "youtube.com (91)" in text  # 10+11+...+16 look-ups, grouped by site
    assert "casino.example (6) – Cờ bạc (từ 18 tuổi)" in text
    assert "Số lần cố vượt bộ lọc: 1" in text
    assert "game.example: đã từ chối (mai)" in text
    assert page.count('class="bar-blocked w') == 7 and "<script" not in page.split("<main")[1]
    assert "style=" not in page  # the UI's CSP: classes only
    r = await client.get("/reports/weekly?week=not-a-date")
    assert r.status == 400


async def test_monday_email_per_parent_in_their_language_once(
    harness: Harness, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    store = harness.store
    monday = datetime(2026, 3, 9, 7, 5, tzinfo=HOUSEHOLD_TZ)
    start = a_week(store, monday)
    ba = store.add_account("ba", "x", "parent")
    store.add_account("me", "x", "parent")  # no address: the household's `to`
    store.save_alert_prefs(AlertPrefs(ba.id, email="ba@home.example", lang="en"))
    alerts = Alerts(store, parse_alerts({"email": {
        "host": "127.0.0.1", "port": port, "security": "none", "from": "ng@home.example",
        "to": ["me@home.example"]}, "ui_url": "http://nestguard.lan:8080"}),
        lambda: monday, load_catalogues(), household_lang=lambda: "vi")
    stop = asyncio.Event()
    task = asyncio.create_task(weekly_loop(store, alerts, harness.services.categories,
                                           bundled_tld(), lambda: "vi", stop, every=0.05))
    await asyncio.sleep(0.5)  # ten turns of the loop: queued once
    stop.set()
    await task
    await alerts.deliver_due()
    by_to = {str(m["To"]): m for m in box.messages}
    assert sorted(by_to) == ["ba@home.example", "me@home.example"]
    en, vi = by_to["ba@home.example"], by_to["me@home.example"]
    assert en["Subject"] == "nestguard: the week of 02/03 to 08/03"
    vi_subject = str(email.header.make_header(email.header.decode_header(vi["Subject"])))
    assert vi_subject == "nestguard: tuần từ 02/03 đến 08/03"
    en_parts, vi_parts = parts(en), parts(vi)
    assert set(en_parts) == {"plain", "html"}
    assert "Most blocked sites, and why" in en_parts["plain"]
    assert "casino.example (6): " in en_parts["plain"]
    assert "Các trang bị chặn nhiều nhất và lý do" in vi_parts["html"]
    link = f"http://nestguard.lan:8080/reports/weekly?week={start.date().isoformat()}"
    assert link in en_parts["plain"] and f'href="{link}"' in en_parts["html"]
    assert "<script" not in en_parts["html"]
    assert 'class="bar-blocked w0" style="display:inline-block' in en_parts["html"]  # inlined
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "weekly-email-en.html").write_text(en_parts["html"], encoding="utf-8")
    (ARTIFACTS / "weekly-email-vi.html").write_text(vi_parts["html"], encoding="utf-8")


@pytest.mark.browser
@needs("chromium")
async def test_weekly_email_html_fits_a_phone_and_a_desktop(harness: Harness) -> None:
    from playwright.async_api import async_playwright

    from webui.i18n import Translator
    from webui.weekly import build_week, render_html

    store = harness.store
    start = a_week(store, harness.now())
    week = build_week(store, start, bundled_tld())
    html = render_html(week, Translator("vi", load_catalogues()), harness.services.categories,
                       link="http://nestguard.lan:8080/reports/weekly")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless=new", "--no-sandbox"])
        try:
            for width in (360, 1280):
                page = await browser.new_page(viewport={"width": width, "height": 900},
                                              java_script_enabled=False)
                await page.set_content(html)
                box = await page.locator("section.weekly-child").bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
                await page.screenshot(path=str(ARTIFACTS / f"weekly-email-{width}.png"),
                                      full_page=True)
                await page.close()
        finally:
            await browser.close()


def test_cli_prints_last_weeks_report(tmp_path: Path) -> None:
    from resolver.cli import main

    data = tmp_path / "data"
    data.mkdir()
    store = Store.open(data / "nestguard.sqlite")
    try:
        a_week(store, datetime.now(HOUSEHOLD_TZ))
    finally:
        store.close()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(data), "dns": {"upstreams": ["9.9.9.9"]},
                                   "policy": {"timezone": "Asia/Ho_Chi_Minh"}}))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["report", "weekly", "--config", str(cfg), "--lang", "en"])
    assert code == 0
    text = out.getvalue()
    assert "== Minh ==" in text and "Most visited sites:" in text
    assert "youtube.com (91)" in text and "Attempts to get around the filter: 1" in text
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["report", "weekly", "--config", str(cfg), "--send"])
    assert code == 2 and "no e-mail server" in err.getvalue()


@pytest.mark.browser
@needs("chromium")
async def test_weekly_page_bars_show_under_the_uis_csp(harness: Harness) -> None:
    from playwright.async_api import async_playwright

    from tests.webui.conftest import PASSWORD
    from tests.webui.test_browser import serve
    from webui.app import create_app

    a_week(harness.store, harness.now())
    async with serve(create_app(harness.services)) as port, async_playwright() as pw:
        base = f"http://127.0.0.1:{port}"
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless=new", "--no-sandbox"])
        try:
            ctx = await browser.new_context(viewport={"width": 360, "height": 780})
            creds = {"username": "mai", "password": PASSWORD}
            assert (await ctx.request.post(f"{base}/api/v1/setup", data=creds)).ok
            assert (await ctx.request.post(f"{base}/api/v1/login", data=creds)).ok
            page = await ctx.new_page()
            await page.goto(f"{base}/reports/weekly")
            bars = page.locator(".bar-allowed")
            assert await bars.count() == 7
            widths = [(await bars.nth(i).bounding_box() or {"width": 0})["width"]
                      for i in range(7)]
            assert all(w > 20 for w in widths), widths  # styled by style.css, not inline
            await page.screenshot(path=str(ARTIFACTS / "weekly-page-360.png"), full_page=True)
        finally:
            await browser.close()
