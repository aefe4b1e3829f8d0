"""The whole filter through a running resolver, with real clients from several addresses.

127.0.0.2 is a 7-year-old's tablet, 127.0.0.3 a 15-year-old's phone, 127.0.0.4 a parent's
laptop, 127.0.0.9 a device nobody has claimed. Lists are real files synced by FeedSync; the
store is a real SQLite file; answers come from a real loopback upstream.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from aiohttp import web

from blocklists.feed import Feed
from policy.model import ADULTS, Action, Grant
from resolver.metrics import METRICS
from resolver.root import Household
from tests.resolver.dnsclient import ask, dig
from tests.support.upstream import FakeUpstream

KID, TEEN, PARENT, STRANGER = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"
REAL = "192.0.2.1"


def years_ago(years: int, *, days: int = 0) -> date:
    today = date.today()
    try:
        d = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        d = today.replace(year=today.year - years, day=28)
    return d + timedelta(days=days)


def write_lists(folder: Path) -> tuple[Feed, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adult.txt").write_text("# test list\nadult-site.example\n")
    (folder / "social.hosts").write_text("0.0.0.0 chatty.example\n")
    (folder / "malware.txt").write_text("||evil-malware.example^\n")
    (folder / "national.csv").write_text(
        "domain,category,min_age,note\nrated-game.example,games,16,national rating\n"
    )
    return (
        Feed("adult", str(folder / "adult.txt"), "domains", category="adult"),
        Feed("social", str(folder / "social.hosts"), "hosts", category="social"),
        Feed("malware", str(folder / "malware.txt"), "adblock", category="malware"),
        Feed("national", str(folder / "national.csv"), "rating"),
    )


def zone(up: FakeUpstream) -> None:
    for name in ("adult-site.example", "chatty.example", "evil-malware.example",
                 "rated-game.example", "school.example", "www.google.com",
                 "news.example", "dns.google"):
        up.add(name, "A", REAL, ttl=300)
    up.add("forcesafesearch.google.com", "A", "216.239.38.120")
    up.add("tracker.news.example", "CNAME", "adult-site.example.")


async def family(hh: Household) -> dict[str, int]:
    store = hh.store
    assert store is not None
    minh = await asyncio.to_thread(store.add_child, "Minh", years_ago(7))
    lan = await asyncio.to_thread(store.add_child, "Lan", years_ago(15))
    for ip, owner in ((KID, minh.id), (TEEN, lan.id), (PARENT, ADULTS)):
        await asyncio.to_thread(store.upsert_device, ip, owner=owner)
    await settle(hh)
    return {"minh": minh.id, "lan": lan.id}


async def settle(hh: Household) -> None:
    """Nudge as the web UI does after a write, and give the reload loop its moment."""
    hh.nudge.set()
    rev = await asyncio.to_thread(hh.store.revision)  # type: ignore[union-attr]
    for _ in range(100):
        if hh.live_policy.value.revision >= rev:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("policy did not reload")


async def a_record(addr: tuple[str, int], name: str, source: str, rdtype: str = "A") -> str:
    """'NXDOMAIN', 'NODATA' or the first address/target in the answer."""
    r = await ask(addr, name, rdtype, source=source)
    if r.rcode() == dns.rcode.NXDOMAIN:
        return "NXDOMAIN"
    if r.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(r.rcode())
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.from_text(rdtype):
            return str(rrset[0])
    return "NODATA"


def ede_text(r: dns.message.Message) -> str:
    return " ".join(o.text or "" for o in r.options if isinstance(o, dns.edns.EDEOption))


@pytest.fixture
async def household(household_server, fake_upstream, tmp_path):
    zone(fake_upstream)
    hh, addr = await household_server(feeds=write_lists(tmp_path / "lists"))
    ids = await family(hh)
    return hh, addr, ids


async def test_same_names_get_each_childs_verdict(household) -> None:
    hh, addr, _ = household
    expected = {
        # name:                 7-year-old, 15-year-old, parent, unknown (strictest = Minh)
        "adult-site.example": ("0.0.0.0", "0.0.0.0", REAL, "0.0.0.0"),
        "chatty.example": ("0.0.0.0", REAL, REAL, "0.0.0.0"),  # social, 13+
        "evil-malware.example": ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0"),  # every age
        "school.example": (REAL, REAL, REAL, REAL),
    }
    # the national feed rates rated-game.example 16+ (games default to 12+)
    expected["rated-game.example"] = ("0.0.0.0", "0.0.0.0", REAL, "0.0.0.0")
    for name, answers in expected.items():
        got = tuple([await a_record(addr, name, ip) for ip in (KID, TEEN, PARENT, STRANGER)])
        assert got == answers, name


async def test_block_answer_says_why(household, fake_upstream) -> None:
    _, addr, _ = household
    fake_upstream.clear_log()
    r = await ask(addr, "adult-site.example", "A", source=KID)
    assert str(r.answer[0][0]) == "0.0.0.0"
    assert r.answer[0].ttl <= 10
    assert "category:adult:18+" in ede_text(r)
    r6 = await ask(addr, "adult-site.example", "AAAA", source=KID)
    assert str(r6.answer[0][0]) == "::"
    rh = await ask(addr, "adult-site.example", "HTTPS", source=KID)
    assert rh.rcode() == dns.rcode.NOERROR and not rh.answer  # NODATA, no ECH keys leak
    assert fake_upstream.count("adult-site.example") == 0  # blocked names never go upstream


async def test_bypass_defences(household, fake_upstream) -> None:
    _, addr, _ = household
    fake_upstream.clear_log()
    assert await a_record(addr, "use-application-dns.net", KID) == "NXDOMAIN"
    for rdtype in ("A", "AAAA", "HTTPS"):
        assert await a_record(addr, "mask.icloud.com", KID, rdtype) == "NXDOMAIN"
        assert await a_record(addr, "mask-h2.icloud.com", KID, rdtype) == "NXDOMAIN"
    assert await a_record(addr, "_dns.resolver.arpa", KID, "SVCB") == "NODATA"
    assert await a_record(addr, "dns.google", KID) == "0.0.0.0"  # built-in DoH list
    assert fake_upstream.count() == 0


async def test_safe_search_answers_cname_and_address(household) -> None:
    _, addr, _ = household
    r = await ask(addr, "www.google.com", "A", source=KID)
    cname = [rr for rr in r.answer if rr.rdtype == dns.rdatatype.CNAME]
    a = [rr for rr in r.answer if rr.rdtype == dns.rdatatype.A]
    assert str(cname[0][0]) == "forcesafesearch.google.com."
    assert str(a[0][0]) == "216.239.38.120"
    assert await a_record(addr, "www.google.com", PARENT) == REAL  # adults: no rewrite


async def test_cname_cloaking_is_blocked(household) -> None:
    _, addr, _ = household
    assert await a_record(addr, "tracker.news.example", KID) == "0.0.0.0"
    assert await a_record(addr, "tracker.news.example", PARENT) == REAL


async def test_a_parent_change_is_in_force_within_a_second(household) -> None:
    hh, addr, ids = household
    assert await a_record(addr, "news.example", KID) == REAL
    # as `nestguard` CLI does: a write to the store, no nudge to the running server
    await asyncio.to_thread(hh.store.add_rule, ids["minh"], "news.example", "deny")
    start = time.monotonic()
    while await a_record(addr, "news.example", KID) != "0.0.0.0":
        assert time.monotonic() - start < 1.0, "deny rule not in force within 1 s"
        await asyncio.sleep(0.05)
    assert await a_record(addr, "news.example", TEEN) == REAL  # only Minh's rule


async def test_a_grant_ends_by_itself(household) -> None:
    hh, addr, ids = household
    until = hh.now() + timedelta(seconds=1.5)
    await asyncio.to_thread(hh.store.add_grant, Grant(ids["minh"], until, domain="chatty.example"))
    await settle(hh)
    assert await a_record(addr, "chatty.example", KID) == REAL
    await asyncio.sleep(2.2)
    assert await a_record(addr, "chatty.example", KID) == "0.0.0.0"


async def test_a_birthday_moves_a_child_up(household) -> None:
    hh, addr, _ = household
    store = hh.store
    birthday = await asyncio.to_thread(store.add_child, "An", years_ago(13))  # 13 today
    eve = await asyncio.to_thread(store.add_child, "Binh", years_ago(13, days=1))  # tomorrow
    await asyncio.to_thread(store.upsert_device, "127.0.0.5", owner=birthday.id)
    await asyncio.to_thread(store.upsert_device, "127.0.0.6", owner=eve.id)
    await settle(hh)
    assert await a_record(addr, "chatty.example", "127.0.0.5") == REAL  # social is 13+
    assert await a_record(addr, "chatty.example", "127.0.0.6") == "0.0.0.0"


async def test_explain_agrees_with_dig(household) -> None:
    hh, addr, _ = household
    for ip in (KID, TEEN, PARENT, STRANGER):
        for name in ("adult-site.example", "chatty.example", "school.example",
                     "evil-malware.example", "use-application-dns.net"):
            verdict = hh.explain(ip, name)
            out = await dig(addr, "-b", ip, name, "A", "+tries=1", "+time=2")
            blocked = "0.0.0.0" in out or "NXDOMAIN" in out
            assert blocked == (verdict.action == Action.BLOCK), (ip, name, verdict, out)


async def test_activity_log_keeps_childrens_queries_with_reasons(household) -> None:
    hh, addr, ids = household
    await a_record(addr, "adult-site.example", KID)
    await a_record(addr, "school.example", KID)
    await a_record(addr, "adult-site.example", PARENT)
    rows = []
    for _ in range(60):  # written in batches off the DNS path
        rows = await asyncio.to_thread(hh.store.activity, child_id=ids["minh"])
        if len(rows) >= 2:
            break
        await asyncio.sleep(0.1)
    by_name = {r.event.qname: r.event for r in rows}
    assert by_name["adult-site.example"].action == "block"
    assert by_name["adult-site.example"].reason == "category:adult:18+"
    assert by_name["school.example"].action == "allow"
    everything = await asyncio.to_thread(hh.store.activity)
    assert all(r.event.client != PARENT for r in everything)  # adults are not logged


async def test_cli_explain_matches_the_running_server(household, tmp_path) -> None:
    hh, addr, _ = household
    cfg = tmp_path / "cli.yaml"
    feeds = "\n".join(
        f"  - {{name: {f.name}, url: '{f.url}', format: {f.format}"
        + (f", category: {f.category}" if f.category else "") + "}"
        for f in hh.config.feeds
    )
    cfg.write_text(
        f"data_dir: {hh.config.data_dir}\npolicy: {{timezone: UTC}}\n"
        f"dns: {{upstreams: ['{addr[0]}:{addr[1] + 1}']}}\nfeeds:\n{feeds}\n"
    )
    nestguard = str(Path(sys.executable).parent / "nestguard")
    for client, name, word in ((KID, "chatty.example", "BLOCK"),
                               (TEEN, "chatty.example", "ALLOW"),
                               (KID, "nosuch-name.example", "ALLOW")):
        proc = await asyncio.create_subprocess_exec(
            nestguard, "explain", "--config", str(cfg), "--client", client, name,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert f"{name}: {word}" in out.decode()
        got = await a_record(addr, name, client)
        assert (got == "0.0.0.0") == (word == "BLOCK")
    bad = await asyncio.create_subprocess_exec(
        nestguard, "device", "set", "not-an-address", "--child", "Minh", "--config", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(bad.communicate(), 60)
    assert bad.returncode == 2
    assert err.decode().count("\n") == 1 and "not an IP or MAC address" in err.decode()


# -- feeds: a bad download never leaves the home unprotected ------------------------------
@pytest.fixture
async def feed_server():
    state = {"body": b"adult-site.example\nmore-adult.example\n", "status": 200}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=state["body"], status=int(state["status"]))  # type: ignore[arg-type]

    app = web.Application()
    app.router.add_get("/adult.txt", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/adult.txt", state
    await runner.cleanup()


async def test_bad_downloads_keep_the_last_good_list(
    household_server, fake_upstream, feed_server
) -> None:
    url, state = feed_server
    zone(fake_upstream)
    feed = Feed("adult-remote", url, "domains", category="adult")
    hh, addr = await household_server(feeds=(feed,))
    await family(hh)
    # the first sync happened at start; the household's own `local` feed syncs too
    [status] = [s for s in await hh.sync_feeds(force=True) if s.name == feed.name]
    assert status.error == "" and status.entries == 2
    assert await a_record(addr, "adult-site.example", KID) == "0.0.0.0"
    for body, code in ((b"", 500), (b"\x00\xff garbage \x00" * 50, 200), (b"", 404)):
        state["body"], state["status"] = body, code
        [status] = [s for s in await hh.sync_feeds(force=True) if s.name == feed.name]
        assert status.error, (code, body[:10])
        assert await a_record(addr, "adult-site.example", KID) == "0.0.0.0"


async def test_a_corrupt_database_still_filters(household_server, fake_upstream, tmp_path) -> None:
    zone(fake_upstream)
    data = tmp_path / "data"
    data.mkdir()
    (data / "nestguard.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xde\xad" * 4000)
    feeds = write_lists(tmp_path / "lists")
    hh, addr = await household_server(feeds=feeds)
    assert hh.store is None and METRICS.degraded
    assert await a_record(addr, "adult-site.example", STRANGER) == "0.0.0.0"
    assert await a_record(addr, "school.example", STRANGER) == REAL
    METRICS.set_degraded("policy", False)



async def test_the_parents_block_answer_choice_applies_at_once(household) -> None:
    hh, addr, _ = household
    assert await a_record(addr, "adult-site.example", KID) == "0.0.0.0"
    await asyncio.to_thread(hh.store.set_setting, "block_answer", "nxdomain")  # Settings page
    hh.nudge.set()
    start = time.monotonic()
    while await a_record(addr, "adult-site.example", KID) != "NXDOMAIN":
        assert time.monotonic() - start < 1.0, "block answer mode not in force within 1 s"
        await asyncio.sleep(0.05)
    # blockpage without a block-page address configured cannot be served: stays as configured
    await asyncio.to_thread(hh.store.set_setting, "block_answer", "blockpage")
    await settle(hh)
    await asyncio.sleep(0.6)
    assert await a_record(addr, "adult-site.example", KID) == "0.0.0.0"
