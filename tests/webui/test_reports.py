"""Report a site, through the real web app and a real Store: a child from the block page and
the help page, a parent from the activity page, an admin on the Reports page (local list,
exception, dismiss, CSV export, the optional forward). The local list is the real file the
`local` feed reads; the running-house path (blocked within 1 s) is in the browser e2e test."""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from blocklists.local import LocalList
from blocklists.parse import parse
from tests.webui.conftest import CSRF_RE, Harness
from tests.webui.test_alerts import Receiver, free_port
from tests.webui.test_blockpage import CASINO, family
from webui.app import create_app
from webui.reports import parse_reports


def text_of(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html_lib.unescape(page)).split())


@pytest.fixture
def local(tmp_path: Path) -> LocalList:
    lst = LocalList(tmp_path / "local-ratings.csv")
    lst.ensure()
    return lst


@pytest.fixture
def app(harness: Harness, local: LocalList) -> web.Application:
    async def list_locally(domain: str, category: str, min_age: int | None, note: str) -> None:
        local.add(domain, category, min_age, note)

    harness.services.list_locally = list_locally
    harness.services.check_name = lambda name: (
        ["gambling (18+) from feed ut1-gambling line 7: rule casino.example"]
        if name.endswith("casino.example") else [])
    return create_app(harness.services)


async def csrf_of(client: Any, path: str = "/settings") -> str:
    m = CSRF_RE.search(await (await client.get(path)).text())
    assert m
    return m.group(1)


def token_in(page: str, kind: str) -> str:
    m = re.search(r'name="token" value="([0-9a-f]+)">\s*<input type="hidden" name="kind" '
                  rf'value="{kind}"', page)
    assert m, page
    return m.group(1)


async def test_child_reports_wrongly_blocked_from_the_block_page(
    client: Any, harness: Harness
) -> None:
    _csrf, child_id = await family(client, harness)
    page = await (await client.get("/games", headers=CASINO)).text()
    assert "Trang này không có hại với con" in page
    r = await client.post("/__nestguard/report", headers=CASINO, allow_redirects=False,
                          data={"token": token_in(page, "wrong_block"), "kind": "wrong_block"})
    assert r.status == 303 and r.headers["Location"] == "/__nestguard/help?done=wrong_block"
    [rep] = harness.store.reports()
    assert (rep.kind, rep.domain, rep.source, rep.child_id) == (
        "wrong_block", "casino.example", "child", child_id)
    assert harness.store.audit_log()[0].action == "report.wrong_block"
    help_page = text_of(await (await client.get(r.headers["Location"], headers=CASINO)).text())
    assert "Cảm ơn con!" in help_page and "111" in help_page
    assert "không phải lỗi của con" in help_page  # the safety tip, in the child's language


async def test_child_reports_harmful_from_the_help_page_and_garbage_is_refused(
    client: Any, harness: Harness
) -> None:
    await family(client, harness, lang="en")
    page = await (await client.get("/__nestguard/help", headers=CASINO)).text()
    assert "I saw something harmful" in page and 'href="tel:111"' in page
    token = token_in(page, "harmful")
    r = await client.post("/__nestguard/report", headers=CASINO,
                          data={"token": token, "kind": "harmful", "domain": "no site here!!"})
    assert r.status == 400
    assert "Enter a site name like example.com." in html_lib.unescape(await r.text())
    assert harness.store.reports() == []
    r = await client.post("/__nestguard/report", headers=CASINO, allow_redirects=False,
                          data={"token": token, "kind": "harmful",
                                "domain": "https://Scary.Example/videos", "note": "scary"})
    assert r.status == 303
    [rep] = harness.store.reports()
    assert (rep.kind, rep.domain, rep.note) == ("harmful", "scary.example", "scary")
    r = await client.post("/__nestguard/report", headers=CASINO,
                          data={"token": "0" * 32, "kind": "harmful", "domain": "x.example"})
    assert r.status == 403


async def test_parent_reports_from_activity_and_admin_lists_it_and_exports(
    client: Any, harness: Harness, local: LocalList
) -> None:
    await family(client, harness)
    csrf = await csrf_of(client)
    form = await (await client.get("/reports/new?kind=harmful&domain=casino.example")).text()
    assert 'value="casino.example"' in form
    r = await client.post("/reports", data={"csrf": csrf, "kind": "harmful",
                                            "domain": "bad site", "note": ""})
    assert r.status == 400 and "Nhập tên trang web" in html_lib.unescape(await r.text())
    r = await client.post("/reports", allow_redirects=False, data={
        "csrf": csrf, "kind": "harmful", "domain": "www.casino.example",
        "category": "gambling", "note": "ads in a kids' game"})
    assert r.status == 303
    [rep] = harness.store.reports()
    assert rep.source == "parent" and rep.reporter == "mai" and rep.category == "gambling"

    page = text_of(await (await client.get("/reports/sites")).text())
    assert "www.casino.example" in page and "ads in a kids' game" in page
    assert "gambling (18+) from feed ut1-gambling line 7" in page  # what `lists check` says
    r = await client.post(f"/reports/{rep.id}/list", allow_redirects=False,
                          data={"csrf": csrf, "category": "gambling", "min_age": ""})
    assert r.status == 303, await r.text()
    assert local.entries() == [("www.casino.example", "gambling", 18,
                                "reported by parent: ads in a kids' game")]
    # the file is a valid rating list for the feed parser
    result = parse(local.path.read_text(), "rating", categories=list(harness.services.categories))
    assert not result.rejected_count
    assert harness.store.report(rep.id).status == "listed"
    assert any(a.action == "report.listed" for a in harness.store.audit_log())

    day = (harness.now() - timedelta(days=1)).date().isoformat()
    r = await client.get(f"/reports/export.csv?since={day}")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    body = await r.text()
    assert body.splitlines() == [
        "domain,category,min_age,note",
        "www.casino.example,gambling,18,ads in a kids' game",
    ]
    later = (harness.now() + timedelta(days=2)).date().isoformat()
    body = await (await client.get(f"/reports/export.csv?since={later}")).text()
    assert body.splitlines() == ["domain,category,min_age,note"]
    r = await client.post(f"/reports/{rep.id}/dismiss", data={"csrf": csrf},
                          allow_redirects=False)
    assert r.headers["Location"].endswith("done=already")


async def test_exception_allows_the_reporting_child_and_dismiss_closes(
    client: Any, harness: Harness
) -> None:
    csrf, child_id = await family(client, harness)
    page = await (await client.get("/games", headers=CASINO)).text()
    await client.post("/__nestguard/report", headers=CASINO,
                      data={"token": token_in(page, "wrong_block"), "kind": "wrong_block"})
    [rep] = harness.store.reports()
    text = text_of(await (await client.get("/reports/sites")).text())
    assert "Cho phép với Minh" in text
    r = await client.post(f"/reports/{rep.id}/except", data={"csrf": csrf},
                          allow_redirects=False)
    assert r.status == 303
    assert [(x.domain, x.kind) for x in harness.store.rules(child_id)] == [
        ("casino.example", "allow")]
    assert harness.store.report(rep.id).status == "excepted"
    other = harness.store.add_report(kind="harmful", domain="x.example", source="parent")
    await client.post(f"/reports/{other.id}/dismiss", data={"csrf": csrf})
    assert harness.store.report(other.id).status == "dismissed"


async def test_accepted_reports_are_forwarded_and_retried(
    client: Any, harness: Harness
) -> None:
    from webui.alerts import Alerts, AlertSettings
    from webui.i18n import load_catalogues

    port = free_port()
    cfg = parse_reports({"forward_url": f"http://127.0.0.1:{port}/reports",
                         "allow_loopback": True})
    alerts = harness.services.alerts = Alerts(
        harness.store, AlertSettings(), harness.now, load_catalogues(), retry_base=0.0,
        forward_url=cfg.forward_url, forward_loopback=cfg.allow_loopback)
    await family(client, harness)
    csrf = await csrf_of(client)
    rep = harness.store.add_report(kind="harmful", domain="phish.example", source="parent",
                                   note="fake bank")
    await client.post(f"/reports/{rep.id}/list",
                      data={"csrf": csrf, "category": "phishing", "min_age": ""})
    await alerts.deliver_due()  # the receiver is down: kept for a retry
    [row] = harness.store.outbox()
    assert row.status == "pending" and row.attempts == 1
    receiver = Receiver()
    await receiver.start(port)
    try:
        await alerts.deliver_due()
        assert receiver.bodies == [{"domain": "phish.example", "category": "phishing",
                                    "min_age": 99, "note": "fake bank", "kind": "harmful",
                                    "reported": rep.created.isoformat()}]
        await alerts.deliver_due()
        assert len(receiver.bodies) == 1
    finally:
        await receiver.stop()


def test_forward_url_into_the_lan_is_refused() -> None:
    from webui.alerts import AlertConfigError

    with pytest.raises(AlertConfigError) as e:
        parse_reports({"forward_url": "https://10.0.0.5/in"})
    assert e.value.key == "reports.forward_url"
    with pytest.raises(AlertConfigError):
        parse_reports({"forward_url": "http://lists.example/in"})


async def test_the_parents_help_page_says_how_children_report(
    client: Any, harness: Harness
) -> None:
    """Parents learn where their children's reports go, with the hotline."""
    await family(client, harness)  # signs the first parent (an admin) in
    html = html_lib.unescape(await (await client.get("/help")).text())
    assert "Trên mỗi trang bị chặn, con có thể nói" in html
    assert 'href="tel:111"' in html
    assert 'href="/reports/sites"' in html  # the first account is an admin
