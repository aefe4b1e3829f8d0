"""The child page's "learning games stay open" switch and the activity page's learning-site
line (issue 17), through real HTTP against a real store."""

from __future__ import annotations

import html as html_lib
from datetime import timedelta
from typing import Any

from policy.model import QueryEvent
from tests.webui.conftest import Harness, setup_and_login, years_ago
from tests.webui.test_api import Api
from tests.webui.test_pages import Page, add_child, page  # noqa: F401  (the page fixture)


async def test_the_switch_on_the_child_page(page: Page, harness: Harness) -> None:  # noqa: F811
    cid = await add_child(page)
    html = html_lib.unescape(await page.get(f"/children/{cid}"))
    assert "Vẫn mở trò chơi học tập khi trò chơi bị chặn" in html
    assert 'name="learning_games" value="1" checked' in html  # on by default
    assert "Bách khoa toàn thư và công cụ học tập của trường" in html

    loc = await page.post(f"/children/{cid}/learning-games", {})  # unticked: off
    assert loc == f"/children/{cid}?open=sec-learning&done=saved#sec-learning"
    assert harness.store.settings(cid).learning_games is False
    html = await page.get(f"/children/{cid}")
    assert 'name="learning_games" value="1">' in html
    audit = harness.store.audit_log()
    assert audit[0].action == "child.settings" and "learning_games=False" in audit[0].detail

    await page.post(f"/children/{cid}/learning-games", {"learning_games": "1"})
    assert harness.store.settings(cid).learning_games is True
    # the main settings form leaves the switch alone
    await page.post(f"/children/{cid}/settings", {"youtube": "strict", "mode": "auto"})
    assert harness.store.settings(cid).learning_games is True

    r = await page.client.get(f"/lang/en?next=/children/{cid}", allow_redirects=True)
    assert "Learning games stay open when games are blocked" in html_lib.unescape(await r.text())


async def test_activity_says_which_entry_let_it_through(page: Page, harness: Harness  # noqa: F811
                                                       ) -> None:
    cid = await add_child(page)
    now = harness.now()
    harness.store.log_queries([
        QueryEvent(now - timedelta(seconds=1), "127.0.0.2", None, cid, "www.abcya.com",
                   "A", "allow", "learning:education", source="education:17 abcya.com"),
        QueryEvent(now - timedelta(seconds=2), "127.0.0.2", None, cid, "en.wikipedia.org",
                   "A", "allow", "exception:education", source="education:40"),
    ])
    html = html_lib.unescape(await page.get(f"/activity?child={cid}"))
    assert ("Được mở vì là trang học tập: abcya.com (danh sách education, dòng 17)"
            in html)
    assert html.count("trang học tập") == 1  # wikipedia is not a learning game

    r: Any = await page.client.get(f"/api/v1/activity?child={cid}")
    assert r.status == 200
    why = {row["name"]: row["why"] for row in await r.json()}
    assert why["www.abcya.com"].startswith("Được mở vì là trang học tập: abcya")


async def test_the_switch_through_the_api(client: Any, harness: Harness) -> None:
    api = Api(client, await setup_and_login(client))
    status, child = await api.call("POST", "/api/v1/children",
                                   {"name": "Minh", "born": years_ago(9).isoformat()})
    cid = child["id"]
    status, detail = await api.call("GET", f"/api/v1/children/{cid}")
    assert detail["settings"]["learning_games"] is True
    status, body = await api.call("PUT", f"/api/v1/children/{cid}/settings",
                                  {"learning_games": "off"})
    assert status == 400 and body["field"] == "learning_games"
    assert harness.store.settings(cid).learning_games is True
    status, _ = await api.call("PUT", f"/api/v1/children/{cid}/settings",
                               {"learning_games": False})
    assert status == 200 and harness.store.settings(cid).learning_games is False
    status, _ = await api.call("PUT", f"/api/v1/children/{cid}/settings", {"youtube": "strict"})
    assert harness.store.settings(cid).learning_games is False  # left out: kept
