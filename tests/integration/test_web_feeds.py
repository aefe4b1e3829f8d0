"""Feeds added in the web UI can be turned off, on again and removed (page and API); the
config file's feeds cannot. Their entries leave the index in force at once."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

from blocklists.feed import Feed
from policy.model import ADULTS
from policy.store import Store
from resolver.root import ADDED_FEEDS_KEY, DB_NAME, feed_to_dict
from tests.integration.test_household import a_record, settle
from tests.support.upstream import FakeUpstream
from tests.webui.conftest import CSRF_RE

PASSWORD = "correct horse battery"
KID = "127.0.0.2"


async def test_a_web_feed_is_turned_off_on_and_removed(
    household_server: Any, fake_upstream: FakeUpstream, tmp_path: Path, aiohttp_client: Any
) -> None:
    fake_upstream.add("casino-one.example", "A", "192.0.2.1")
    data = tmp_path / "data"
    (data / "lists").mkdir(parents=True)
    (data / "lists" / "extra.txt").write_text("casino-one.example\n")  # its last good copy
    web_feed = Feed("extra", "https://lists.invalid/extra.txt", "domains", category="gambling")
    with Store.open(data / DB_NAME) as store:
        store.set_setting(ADDED_FEEDS_KEY, [feed_to_dict(web_feed)])
        kid = store.add_child("Minh", date(date.today().year - 8, 1, 1))
        store.upsert_device(KID, owner=kid.id)
        store.upsert_device("127.0.0.4", owner=ADULTS)
    yaml_feed = tmp_path / "yaml.txt"
    yaml_feed.write_text("adult-one.example\n")
    hh, addr = await household_server(
        feeds=(Feed("yaml", str(yaml_feed), "domains", category="adult"),)
    )
    await settle(hh)
    assert await a_record(addr, "casino-one.example", KID) == "0.0.0.0"

    client = await aiohttp_client(hh.web_app())
    r = await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD})
    assert r.status == 201
    r = await client.post("/api/v1/login", json={"username": "mai", "password": PASSWORD})
    headers = {"X-CSRF-Token": (await r.json())["csrf"]}
    html = await (await client.get("/lists")).text()
    assert 'action="/lists/feeds/extra/remove"' in html
    assert 'action="/lists/feeds/extra/enabled"' in html
    assert "/lists/feeds/yaml/" not in html  # the config file's feed: not from the UI

    # off (API): the name is no longer blocked, the copy stays; on again: blocked again
    r = await client.put("/api/v1/feeds/extra/enabled", json={"enabled": False}, headers=headers)
    assert r.status == 200, await r.text()
    assert await a_record(addr, "casino-one.example", KID) == "192.0.2.1"
    feeds = {f["name"]: f for f in await (await client.get("/api/v1/feeds")).json()}
    assert feeds["extra"]["enabled"] is False
    assert (data / "lists" / "extra.txt").exists()
    r = await client.put("/api/v1/feeds/extra/enabled", json={"enabled": True}, headers=headers)
    assert r.status == 200
    assert await a_record(addr, "casino-one.example", KID) == "0.0.0.0"

    # the YAML feed cannot be changed from the UI
    r = await client.delete("/api/v1/feeds/yaml", headers=headers)
    assert r.status == 404
    assert await a_record(addr, "adult-one.example", KID) == "0.0.0.0"

    # removed with the page's button (CSRF): its entries and its copy are gone, and it stays
    # gone after the stored setting is read again
    csrf = CSRF_RE.search(html).group(1)  # type: ignore[union-attr]
    r = await client.post("/lists/feeds/extra/remove", data={"csrf": csrf},
                          allow_redirects=False)
    assert r.status == 303
    assert await a_record(addr, "casino-one.example", KID) == "192.0.2.1"
    assert not (data / "lists" / "extra.txt").exists()
    assert hh.store is not None
    stored = await asyncio.to_thread(hh.store.get_setting, ADDED_FEEDS_KEY, [])
    assert stored == []
    assert "/lists/feeds/extra/" not in await (await client.get("/lists")).text()
