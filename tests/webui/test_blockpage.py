"""The block page a child sees on a plain-HTTP visit to a blocked name (block-page mode)."""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

from policy.model import Action, Verdict
from tests.webui.conftest import Harness, setup_and_login, years_ago

CASINO = {"Host": "casino.example"}


async def family(client: Any, harness: Harness, *, lang: str = "vi") -> tuple[str, int]:
    """A parent, a child aged 9 and this test client's address (127.0.0.1) as her tablet."""
    csrf = await setup_and_login(client)
    r = await client.post("/api/v1/children", headers={"X-CSRF-Token": csrf},
                          json={"name": "Minh", "born": years_ago(9).isoformat(), "lang": lang})
    child = await r.json()
    harness.store.seen([("127.0.0.1", None, harness.now())])
    r = await client.put("/api/v1/devices/127.0.0.1", json={"child": child["id"]},
                         headers={"X-CSRF-Token": csrf})
    assert r.status == 200
    return csrf, int(child["id"])


def token_of(html: str) -> str:
    m = re.search(r'name="token" value="([0-9a-f]+)"', html)
    assert m
    return m.group(1)


async def test_block_page_in_the_childs_language(client: Any, harness: Harness) -> None:
    await family(client, harness)
    r = await client.get("/some/page?x=1", headers=CASINO)
    html = html_lib.unescape(await r.text())
    assert r.status == 200
    assert "Trang này đã bị chặn" in html and "casino.example" in html
    assert "Chào Minh!" in html
    assert "Lý do: Cờ bạc (từ 18 tuổi)" in " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "Xin phép bố mẹ" in html and 'href="tel:111"' in html
    assert harness.explained[-1] == ("127.0.0.1", "casino.example")
    assert 'lang="vi"' in html


async def test_english_child_gets_english(client: Any, harness: Harness) -> None:
    await family(client, harness, lang="en")
    html = html_lib.unescape(await (await client.get("/", headers=CASINO)).text())
    assert "This site is blocked" in html and "Ask a parent" in html and "111" in html
    assert "Gambling (from age 18)" in html


async def test_ask_approve_and_see_the_answer(client: Any, harness: Harness) -> None:
    csrf, child_id = await family(client, harness)
    html = await (await client.get("/games", headers=CASINO)).text()
    r = await client.post("/__nestguard/ask", headers=CASINO, allow_redirects=False,
                          data={"token": token_of(html), "message": "<b>con xin 30 phút</b>",
                                "back": "/games"})
    assert r.status == 303 and r.headers["Location"] == "/games"
    [req] = harness.store.requests()
    assert (req.child_id, req.domain, req.status) == (child_id, "casino.example", "pending")
    assert req.message == "<b>con xin 30 phút</b>" and req.reason == "category:gambling:18+"
    device = harness.store.device_by_identifier("127.0.0.1")
    assert device is not None and req.device_id == device.id
    html = html_lib.unescape(await (await client.get("/games", headers=CASINO)).text())
    assert "Đã gửi lời xin phép đến bố mẹ" in html and 'name="token"' not in html
    r = await client.get("/__nestguard/status", headers=CASINO)
    assert (await r.json())["status"] == "pending"
    # the parent sees it (escaped) and approves for 30 minutes
    page = await (await client.get("/requests")).text()
    assert "&lt;b&gt;con xin 30 phút&lt;/b&gt;" in page and "<b>con" not in page
    r = await client.post(f"/api/v1/requests/{req.id}/approve", json={"minutes": 30},
                          headers={"X-CSRF-Token": csrf})
    assert r.status == 200
    harness.verdict = Verdict(Action.ALLOW, "grant")
    html = html_lib.unescape(await (await client.get("/games", headers=CASINO)).text())
    assert "Bố mẹ đã đồng ý" in html and "Con được dùng đến" in html
    # open now: the heading says yes, "open it again" once, nothing left to ask
    assert "<h1>Bố mẹ đã đồng ý</h1>" in html
    assert html.count("mở lại trang sau một phút") == 1
    assert "Trang này đã bị chặn" not in html and "<textarea" not in html
    r = await client.get("/__nestguard/status", headers=CASINO)
    assert (await r.json())["status"] == "approved"


async def test_declined_answer_shows(client: Any, harness: Harness) -> None:
    csrf, _ = await family(client, harness)
    html = await (await client.get("/", headers=CASINO)).text()
    await client.post("/__nestguard/ask", headers=CASINO, data={"token": token_of(html)})
    [req] = harness.store.requests()
    await client.post(f"/api/v1/requests/{req.id}/decline", json={},
                      headers={"X-CSRF-Token": csrf})
    html = html_lib.unescape(await (await client.get("/", headers=CASINO)).text())
    assert "Lần này bố mẹ chưa đồng ý" in html
    assert 'name="token"' in html  # may ask again


async def test_ask_needs_the_pages_token(client: Any, harness: Harness) -> None:
    await family(client, harness)
    html = await (await client.get("/", headers=CASINO)).text()
    r = await client.post("/__nestguard/ask", headers=CASINO, data={"token": "0" * 32})
    assert r.status == 403
    assert "Trang này đã cũ. Con hãy thử lại nhé." in await r.text()
    assert token_of(await r.text()) == token_of(html)  # a fresh form to try again
    # a token for one site does not work for another
    r = await client.post("/__nestguard/ask", headers={"Host": "other.example"},
                          data={"token": token_of(html)})
    assert r.status == 403
    assert harness.store.requests() == []


async def test_asks_are_deduplicated_and_rate_limited(client: Any, harness: Harness) -> None:
    await family(client, harness)
    html = await (await client.get("/", headers=CASINO)).text()
    for _ in range(3):
        await client.post("/__nestguard/ask", headers=CASINO, data={"token": token_of(html)})
    assert len(harness.store.requests()) == 1
    statuses = []
    for i in range(6):
        host = {"Host": f"site{i}.example"}
        html = await (await client.get("/", headers=host)).text()
        r = await client.post("/__nestguard/ask", headers=host, allow_redirects=False,
                              data={"token": token_of(html)})
        statuses.append(r.status)
    assert statuses == [303, 303, 303, 303, 429, 429]
    assert len(harness.store.requests()) == 5


async def test_long_message_is_refused_with_a_message(client: Any, harness: Harness) -> None:
    await family(client, harness)
    html = await (await client.get("/", headers=CASINO)).text()
    r = await client.post("/__nestguard/ask", headers=CASINO,
                          data={"token": token_of(html), "message": "x" * 301})
    assert r.status == 400 and "Tối đa 300 ký tự." in await r.text()
    assert harness.store.requests() == []


async def test_unknown_device_and_odd_hosts(client: Any, harness: Harness) -> None:
    await setup_and_login(client)
    html = await (await client.get("/", headers={"Host": "ads.tracker.example:80"})).text()
    assert "ads.tracker.example" in html and "Chào" not in html  # nobody to greet
    r = await client.get("/", headers={"Host": "<script>x</script>"})
    html = await r.text()
    assert "<script>x" not in html and 'name="token"' not in html
    r = await client.get("/static/style.css", headers=CASINO)
    assert r.status == 200 and r.content_type == "text/css"
    assert (await client.get("/static/nope.txt", headers=CASINO)).status == 404
    assert "Content-Security-Policy" in (await client.get("/", headers=CASINO)).headers


async def test_asking_from_a_subdomain_asks_for_the_site(client: Any, harness: Harness) -> None:
    await family(client, harness)
    host = {"Host": "www.casino.co.uk"}
    html = await (await client.get("/", headers=host)).text()
    await client.post("/__nestguard/ask", headers=host, data={"token": token_of(html)})
    [req] = harness.store.requests()
    assert req.domain == "casino.co.uk"
    html = await (await client.get("/", headers={"Host": "img.casino.co.uk"})).text()
    assert "answer pending" in html  # the same site's request, seen from another host
    host = {"Host": "mine.github.io"}  # a private suffix: that blog only
    html = await (await client.get("/", headers=host)).text()
    await client.post("/__nestguard/ask", headers=host, data={"token": token_of(html)})
    assert {r.domain for r in harness.store.requests()} == {"casino.co.uk", "mine.github.io"}
