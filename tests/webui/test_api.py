"""Every /api/v1 route, through a real HTTP server, against a real Store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from blocklists.feed import Feed
from policy.model import ADULTS, QueryEvent
from tests.webui.conftest import PASSWORD, Harness, login, setup_and_login, years_ago
from webui.app import create_app


class Api:
    def __init__(self, client: Any, csrf: str) -> None:
        self.client, self.csrf = client, csrf

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf}
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        r = await self.client.request(method, path, **kwargs)
        return r.status, await r.json()


@pytest.fixture
async def api(client: Any) -> Api:
    return Api(client, await setup_and_login(client))


async def test_children_crud_and_validation(api: Api, harness: Harness) -> None:
    born = years_ago(9).isoformat()
    status, child = await api.call("POST", "/api/v1/children", {"name": "Minh", "born": born})
    assert status == 201 and child["name"] == "Minh" and child["lang"] == "vi"
    assert harness.nudges  # the resolver was told
    status, body = await api.call("POST", "/api/v1/children", {"name": "minh", "born": born})
    assert status == 400 and body["field"] == "name"
    status, body = await api.call("POST", "/api/v1/children", {"name": "An", "born": "31/12/2017"})
    assert status == 400 and body["field"] == "born" and "2016-05-31" in body["error"]
    status, body = await api.call("POST", "/api/v1/children", {"name": "An", "born": "2999-01-01"})
    assert status == 400 and body["field"] == "born"
    status, body = await api.call("POST", "/api/v1/children", {"born": born})
    assert status == 400 and body["field"] == "name"
    status, body = await api.call("POST", "/api/v1/children", ["not", "an", "object"])
    assert status == 400
    status, children = await api.call("GET", "/api/v1/children")
    assert [c["name"] for c in children] == ["Minh"]
    cid = child["id"]
    status, detail = await api.call("GET", f"/api/v1/children/{cid}")
    assert status == 200 and detail["age"] == 9
    assert detail["profile"].startswith("Với Minh, 9 tuổi: chặn —")
    assert "Cờ bạc" in detail["profile"] and "đến 13 tuổi" in detail["profile"]
    status, body = await api.call("PUT", f"/api/v1/children/{cid}",
                                  {"name": "Minh Anh", "born": born, "lang": "en"})
    assert status == 200 and body["lang"] == "en"
    assert (await api.call("GET", "/api/v1/children/999"))[0] == 404
    status, body = await api.call("PUT", f"/api/v1/children/{cid}/settings", {
        "categories": {"games": "block", "social": "allow"}, "safe_search": True,
        "youtube": "strict", "mode": "normal"})
    assert status == 200, body
    s = harness.store.settings(cid)
    assert s.blocked == {"games"} and s.allowed == {"social"} and s.youtube == "strict"
    status, body = await api.call("PUT", f"/api/v1/children/{cid}/settings",
                                  {"youtube": "sometimes"})
    assert status == 400 and body["field"] == "youtube"
    assert harness.store.settings(cid).youtube == "strict"  # nothing half-saved
    status, _ = await api.call("PUT", f"/api/v1/children/{cid}/settings",
                               {"categories": {"games": "age"}})
    s = harness.store.settings(cid)  # only games changed
    assert s.blocked == frozenset() and s.allowed == {"social"} and s.youtube == "strict"
    status, body = await api.call("PUT", f"/api/v1/children/{cid}/settings",
                                  {"categories": {"nope": "block"}})
    assert status == 400 and body["field"] == "categories"
    status, body = await api.call("POST", f"/api/v1/children/{cid}/pause", {"minutes": 60})
    assert status == 200 and body["paused_until"]
    assert harness.store.settings(cid).paused_until is not None
    status, body = await api.call("POST", f"/api/v1/children/{cid}/resume", {})
    assert status == 200 and harness.store.settings(cid).paused_until is None
    status, _ = await api.call("DELETE", f"/api/v1/children/{cid}")
    assert status == 200 and harness.store.children() == []


async def test_rules_schedules_exceptions(api: Api, harness: Harness) -> None:
    _, child = await api.call("POST", "/api/v1/children",
                              {"name": "Lan", "born": years_ago(12).isoformat()})
    cid = child["id"]
    status, rule = await api.call("POST", f"/api/v1/children/{cid}/rules",
                                  {"domain": "https://www.Khan-Academy.org/math", "kind": "allow"})
    assert status == 201 and rule["domain"] == "www.khan-academy.org"
    status, body = await api.call("POST", f"/api/v1/children/{cid}/rules",
                                  {"domain": "evil.example;rm -rf /", "kind": "deny"})
    assert status == 400 and body["field"] == "domain"
    status, body = await api.call("POST", f"/api/v1/children/{cid}/rules",
                                  {"domain": "bücher.example", "kind": "deny"})
    assert status == 201 and body["domain"] == "xn--bcher-kva.example"
    status, body = await api.call("POST", f"/api/v1/children/{cid}/rules",
                                  {"domain": "192.168.1.1", "kind": "deny"})
    assert status == 400
    assert (await api.call("DELETE", f"/api/v1/rules/{rule['id']}"))[0] == 200
    assert (await api.call("DELETE", f"/api/v1/rules/{rule['id']}"))[0] == 404
    status, body = await api.call("POST", f"/api/v1/children/{cid}/allow",
                                  {"domain": "roblox.com", "minutes": 30})
    assert status == 201
    grants = harness.store.grants(active_at=harness.now())
    assert [(g.child_id, g.domain) for g in grants] == [(cid, "roblox.com")]
    status, detail = await api.call("GET", f"/api/v1/children/{cid}")
    assert [g["domain"] for g in detail["grants"]] == ["roblox.com"]
    status, _ = await api.call("DELETE", f"/api/v1/children/{cid}/grants/{grants[0].id}")
    assert status == 200 and harness.store.grants(active_at=harness.now()) == []
    status, _ = await api.call("DELETE", f"/api/v1/children/{cid}/grants/{grants[0].id}")
    assert status == 404
    status, sched = await api.call("POST", f"/api/v1/children/{cid}/schedules", {
        "name": "Giờ ngủ", "kind": "bedtime", "weekdays": [0, 1, 2, 3, 6],
        "start": "21:30", "end": "06:30"})
    assert status == 201, sched
    s = harness.store.schedules(cid)[0]
    assert s.weekdays == {0, 1, 2, 3, 6} and s.start.hour == 21 and s.end.minute == 30
    status, body = await api.call("POST", f"/api/v1/children/{cid}/schedules", {
        "name": "Học", "kind": "school", "weekdays": [], "start": "7:00", "end": "7:00"})
    assert status == 400 and body["field"] in ("weekdays", "end", "categories")
    status, _ = await api.call("DELETE", f"/api/v1/children/{cid}/schedules/{sched['id']}")
    assert status == 200 and harness.store.schedules(cid) == []
    status, exc = await api.call("POST", "/api/v1/exceptions", {
        "name": "Tết", "first_day": "2027-02-05", "last_day": "2027-02-12",
        "children": [cid]})
    assert status == 201
    status, body = await api.call("POST", "/api/v1/exceptions", {
        "name": "Backwards", "first_day": "2027-02-12", "last_day": "2027-02-05"})
    assert status == 400 and body["field"] == "last_day"
    status, exceptions = await api.call("GET", "/api/v1/exceptions")
    assert [e["name"] for e in exceptions] == ["Tết"] and exceptions[0]["children"] == [cid]
    assert (await api.call("DELETE", f"/api/v1/exceptions/{exc['id']}"))[0] == 200


async def test_devices_assign_rename_merge(api: Api, harness: Harness) -> None:
    _, child = await api.call("POST", "/api/v1/children",
                              {"name": "Minh", "born": years_ago(9).isoformat()})
    harness.store.seen([("127.0.0.2", None, harness.now()), ("127.0.0.3", None, harness.now())])
    status, devices = await api.call("GET", "/api/v1/devices")
    assert status == 200 and len(devices) == 2 and all(d["new"] for d in devices)
    status, dev = await api.call("PUT", "/api/v1/devices/127.0.0.2", {"child": child["id"]})
    assert status == 200 and dev["owner"] == child["id"]
    # the resolver's policy follows within the nudge
    device, profile = harness.services.live_policy.value.profile_for("127.0.0.2")
    assert profile.child is not None and profile.child.name == "Minh"
    status, dev = await api.call("PUT", "/api/v1/devices/127.0.0.3",
                                 {"adults": True, "name": "Bố's laptop"})
    assert status == 200 and dev["owner"] == ADULTS and dev["name"] == "Bố's laptop"
    status, body = await api.call("PUT", "/api/v1/devices/127.0.0.2", {"child": 999})
    assert status == 400 and body["field"] == "child"
    assert (await api.call("PUT", "/api/v1/devices/10.9.9.9", {"adults": True}))[0] == 404
    assert (await api.call("PUT", "/api/v1/devices/not-an-ip", {"adults": True}))[0] == 400
    ids = {d["identifiers"][0]: d["id"] for d in (await api.call("GET", "/api/v1/devices"))[1]}
    status, merged = await api.call("POST", "/api/v1/devices/merge",
                                    {"keep": ids["127.0.0.2"], "other": ids["127.0.0.3"]})
    assert status == 200 and set(merged["identifiers"]) == {"127.0.0.2", "127.0.0.3"}
    status, body = await api.call("POST", "/api/v1/devices/merge", {"keep": 1, "other": 1})
    assert status == 400
    status, _ = await api.call("DELETE", "/api/v1/devices/127.0.0.3")
    assert status == 200 and harness.store.devices() == []
    assert (await api.call("DELETE", "/api/v1/devices/127.0.0.3"))[0] == 404


async def test_activity_filters(api: Api, harness: Harness) -> None:
    # the summary counts since the household's midnight: rows logged "3 minutes ago" just
    # after midnight would belong to yesterday, so move the app's clock past that
    real = harness.now()
    harness.offset = max(
        timedelta(0), real.replace(hour=0, minute=10, second=0, microsecond=0) - real
    )
    _, child = await api.call("POST", "/api/v1/children",
                              {"name": "Minh", "born": years_ago(9).isoformat()})
    harness.store.seen([("127.0.0.2", None, harness.now())])
    dev = harness.store.device_by_identifier("127.0.0.2")
    assert dev is not None
    now = harness.now()
    harness.store.log_queries([
        QueryEvent(now - timedelta(minutes=3), "127.0.0.2", dev.id, child["id"],
                   "cards.casino.example", "A", "block", "category:gambling:18+"),
        QueryEvent(now - timedelta(minutes=2), "127.0.0.2", dev.id, child["id"],
                   "www.wikipedia.org", "A", "allow", ""),
        QueryEvent(now - timedelta(minutes=1), "127.0.0.9", None, None,
                   "news.example", "AAAA", "allow", ""),
    ])
    status, rows = await api.call("GET", "/api/v1/activity?device=127.0.0.2&blocked=1")
    assert status == 200
    assert [(r["name"], r["site"]) for r in rows] == [("cards.casino.example", "casino.example")]
    assert rows[0]["why"] == "Cờ bạc (từ 18 tuổi)"
    status, rows = await api.call("GET", f"/api/v1/activity?device={dev.id}")
    assert {r["name"] for r in rows} == {"cards.casino.example", "www.wikipedia.org"}
    status, rows = await api.call("GET", "/api/v1/activity?q=wiki")
    assert [r["site"] for r in rows] == ["wikipedia.org"]
    status, rows = await api.call("GET", f"/api/v1/activity?child={child['id']}")
    assert len(rows) == 2
    assert (await api.call("GET", "/api/v1/activity?limit=0"))[0] == 400
    status, summary = await api.call("GET", "/api/v1/summary")
    assert summary[str(child["id"])]["blocked"] == 1


async def test_requests_approve_and_decline(api: Api, harness: Harness) -> None:
    _, child = await api.call("POST", "/api/v1/children",
                              {"name": "Minh", "born": years_ago(9).isoformat()})
    r1 = harness.store.add_request(child_id=child["id"], device_id=None, client="127.0.0.2",
                                   domain="roblox.com", reason="category:games:12+",
                                   message="cho con chơi với bạn")
    r2 = harness.store.add_request(child_id=child["id"], device_id=None, client="127.0.0.2",
                                   domain="tiktok.com", reason="category:social:13+", message="")
    status, reqs = await api.call("GET", "/api/v1/requests?status=pending")
    assert status == 200 and {r["domain"] for r in reqs} == {"roblox.com", "tiktok.com"}
    assert (await api.call("GET", "/api/v1/requests?status=bogus"))[0] == 400
    status, body = await api.call("POST", f"/api/v1/requests/{r1.id}/approve", {"minutes": 30})
    assert status == 200 and body["status"] == "approved" and body["minutes"] == 30
    grants = harness.store.grants(active_at=harness.now())
    assert [g.domain for g in grants] == ["roblox.com"]
    until = grants[0].until - harness.now()
    assert timedelta(minutes=29) < until <= timedelta(minutes=30)
    status, body = await api.call("POST", f"/api/v1/requests/{r1.id}/approve", {"minutes": 0})
    assert status == 409
    status, body = await api.call("POST", f"/api/v1/requests/{r2.id}/approve", {"minutes": -5})
    assert status == 400 and body["field"] == "minutes"
    status, body = await api.call("POST", f"/api/v1/requests/{r2.id}/decline", {})
    assert status == 200 and body["status"] == "declined"
    assert (await api.call("POST", "/api/v1/requests/999/decline", {}))[0] == 404
    who = [(e.who, e.action) for e in harness.store.audit_log()]
    assert ("mai", "request.answer") in who


async def test_accounts_tokens_settings_audit(api: Api, harness: Harness) -> None:
    status, me = await api.call("GET", "/api/v1/me")
    assert me["role"] == "admin"
    status, acc = await api.call("POST", "/api/v1/accounts",
                                 {"username": "ba", "password": PASSWORD, "role": "parent"})
    assert status == 201
    status, body = await api.call("POST", "/api/v1/accounts",
                                  {"username": "ba", "password": PASSWORD, "role": "parent"})
    assert status == 400 and body["field"] == "username"
    status, body = await api.call("POST", "/api/v1/accounts",
                                  {"username": "co", "password": PASSWORD, "role": "god"})
    assert status == 400 and body["field"] == "role"
    status, accounts = await api.call("GET", "/api/v1/accounts")
    assert [a["username"] for a in accounts] == ["mai", "ba"]
    my_id = accounts[0]["id"]
    assert (await api.call("DELETE", f"/api/v1/accounts/{my_id}"))[0] == 400
    assert (await api.call("DELETE", f"/api/v1/accounts/{acc['id']}"))[0] == 200
    status, tok = await api.call("POST", "/api/v1/tokens", {"name": "script"})
    assert status == 201
    status, toks = await api.call("GET", "/api/v1/tokens")
    assert [t["name"] for t in toks] == ["script"] and "token" not in toks[0]
    status, s = await api.call("GET", "/api/v1/settings")
    assert s["block_answer"] == "blockpage" and s["upstreams"] == ["9.9.9.9", "1.1.1.1"]
    status, s = await api.call("PUT", "/api/v1/settings",
                               {"block_answer": "nxdomain", "retention_days": 14, "lang": "en"})
    assert status == 200 and s["block_answer"] == "nxdomain" and s["lang"] == "en"
    assert harness.store.get_setting("block_answer") == "nxdomain"
    status, body = await api.call("PUT", "/api/v1/settings",
                                  {"block_answer": "nxdomain", "retention_days": 0, "lang": "en"})
    assert status == 400 and body["field"] == "retention_days"
    status, body = await api.call("PUT", "/api/v1/settings", {
        "block_answer": "null", "retention_days": 30, "lang": "vi", "unknown_devices": "Minh"})
    assert status == 400 and body["field"] == "unknown_devices"  # no such child
    assert harness.store.get_setting("block_answer") == "nxdomain"  # nothing half-saved
    await api.call("POST", "/api/v1/children", {"name": "Minh", "born": years_ago(9).isoformat()})
    status, s = await api.call("PUT", "/api/v1/settings", {
        "block_answer": "null", "retention_days": 30, "lang": "vi", "unknown_devices": "Minh"})
    assert status == 200 and s["unknown_devices"] == "Minh"
    assert harness.store.get_setting("unknown_devices") == "Minh"
    status, audit = await api.call("GET", "/api/v1/audit")
    actions = [a["action"] for a in audit]
    assert {"setup", "login", "account.add", "account.delete", "token.add", "settings"} <= set(
        actions)
    assert (await api.call("POST", "/api/v1/logout", {}))[0] == 200
    assert (await api.call("GET", "/api/v1/me"))[0] == 401


async def test_feeds(aiohttp_client: Any, harness: Harness) -> None:
    added: list[Feed] = []
    synced: list[int] = []

    async def add_feed(feed: Feed) -> None:
        added.append(feed)

    async def feed_sync() -> None:
        synced.append(1)

    harness.services.feeds = [Feed("ut1-gambling", "https://lists.example/gambling",
                                   "domains", "gambling")]
    harness.services.add_feed = add_feed
    harness.services.feed_sync = feed_sync
    client = await aiohttp_client(create_app(harness.services))
    api = Api(client, await setup_and_login(client))
    status, feeds = await api.call("GET", "/api/v1/feeds")
    assert [f["name"] for f in feeds] == ["ut1-gambling"] and feeds[0]["status"] is None
    bad = [
        ({"name": "x", "url": "file:///etc/passwd", "format": "domains", "category": "adult"},
         "url"),
        ({"name": "x", "url": "http://lists.example/x", "format": "domains",
          "category": "adult"}, "url"),
        ({"name": "x", "url": "https://127.0.0.1/x", "format": "domains", "category": "adult"},
         "url"),
        ({"name": "x", "url": "https://192.168.1.1/x", "format": "domains",
          "category": "adult"}, "url"),
        ({"name": "x", "url": "https://lists.example/x", "format": "exe", "category": "adult"},
         "format"),
        ({"name": "x", "url": "https://lists.example/x", "format": "domains",
          "category": "nope"}, "category"),
        ({"name": "X Y", "url": "https://lists.example/x", "format": "domains",
          "category": "adult"}, "name"),
        ({"name": "ut1-gambling", "url": "https://lists.example/x", "format": "domains",
          "category": "adult"}, "name"),
        ({"name": "x", "url": "https://lists.example/x", "format": "domains",
          "category": "adult", "sha256": "abc"}, "sha256"),
    ]
    for body, field in bad:
        status, answer = await api.call("POST", "/api/v1/feeds", body)
        assert status == 400 and answer["field"] == field, (body, answer)
    assert added == []
    status, feed = await api.call("POST", "/api/v1/feeds", {
        "name": "hagezi-gambling", "url": "https://lists.example/gambling.txt",
        "format": "adblock", "category": "gambling", "sha256": "ab" * 32})
    assert status == 201 and feed["pinned"]
    assert [f.name for f in added] == ["hagezi-gambling"]
    status, feeds = await api.call("GET", "/api/v1/feeds")
    assert [f["name"] for f in feeds] == ["ut1-gambling", "hagezi-gambling"]
    status, body = await api.call("POST", "/api/v1/feeds/sync", {})
    assert status == 202 and body["started"]
    import asyncio

    for _ in range(50):
        if synced:
            break
        await asyncio.sleep(0.01)
    assert synced == [1]


async def test_errors_are_json(api: Api) -> None:
    r = await api.client.get("/api/v1/nothing-here")
    assert r.status == 404 and (await r.json())["error"]
    r = await api.client.post("/api/v1/children", data="not json",
                              headers={"X-CSRF-Token": api.csrf, "Content-Type": "text/plain"})
    assert r.status == 400 and (await r.json())["field"] == "body"
    r = await api.client.post("/api/v1/children", data=b"{bad",
                              headers={"X-CSRF-Token": api.csrf,
                                       "Content-Type": "application/json"})
    assert r.status == 400


async def test_login_api_validation(client: Any) -> None:
    await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD})
    r = await client.post("/api/v1/login", json={"username": "mai"})
    assert r.status == 400 and (await r.json())["field"] == "password"
    await login(client)
