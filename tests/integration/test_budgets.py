"""Daily time budgets through a running resolver: real clients from several loopback
addresses, the real SQLite store, a real loopback upstream, and a household clock the test
moves by hand (no sleeping through minutes).

127.0.0.2 and 127.0.0.5 are Minh's tablet and phone, 127.0.0.3 his sister Lan's phone,
127.0.0.4 a parent's laptop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dns.edns
import dns.rcode
import dns.rdatatype
import pytest

from policy.model import ADULTS
from resolver.assembly import open_resolver
from resolver.root import Household, open_household
from tests.conftest import build_config
from tests.resolver.dnsclient import ask
from tests.support.upstream import FakeUpstream

TABLET, PHONE, SISTER, PARENT = "127.0.0.2", "127.0.0.5", "127.0.0.3", "127.0.0.4"
STRANGER = "127.0.0.9"
REAL = "192.0.2.1"
Addr = tuple[str, int]


class HouseClock:
    """The household's wall clock, moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t = self.t + timedelta(**kw)


def zone(up: FakeUpstream) -> None:
    for name, ttl in (("www.youtube.com", 300), ("i.ytimg.com", 300), ("rr1.googlevideo.com", 60),
                      ("s.youtube.com", 300), ("accounts.youtube.com", 300),
                      ("www.roblox.com", 60), ("school.example", 300),
                      ("restrictmoderate.youtube.com", 300)):
        up.add(name, "A", REAL, ttl=ttl)


Start = Callable[..., Awaitable[tuple[Household, Addr]]]


@pytest.fixture
async def budget_house(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> AsyncIterator[tuple[Start, AsyncExitStack]]:
    zone(fake_upstream)
    async with AsyncExitStack() as outer:

        async def start(clock: HouseClock, *, tz: str = "UTC",
                        stack: AsyncExitStack | None = None) -> tuple[Household, Addr]:
            st = stack or outer
            cfg = build_config(fake_upstream)
            cfg = dataclasses.replace(
                cfg, data_dir=tmp_path / "data",
                policy=dataclasses.replace(cfg.policy, timezone=tz),
            )
            hh = await st.enter_async_context(open_household(cfg, clock=clock))
            services = hh.resolver_services()
            services.arp_path = None  # type: ignore[attr-defined]
            running = await st.enter_async_context(open_resolver(cfg, services))
            return hh, running.addresses[0]

        yield start, outer


async def family(hh: Household, **budgets: tuple[int, int]) -> dict[str, int]:
    store = hh.store
    assert store is not None
    minh = await asyncio.to_thread(store.add_child, "Minh", date(2015, 3, 1))
    lan = await asyncio.to_thread(store.add_child, "Lan", date(2012, 5, 1))
    for ip, owner in ((TABLET, minh.id), (PHONE, minh.id), (SISTER, lan.id), (PARENT, ADULTS)):
        await asyncio.to_thread(store.upsert_device, ip, owner=owner)
    for slug, (school, weekend) in budgets.items():
        await asyncio.to_thread(store.set_budget, minh.id, slug, school_days=school,
                                weekends=weekend)
    await settle(hh)
    return {"minh": minh.id, "lan": lan.id}


async def settle(hh: Household) -> None:
    hh.nudge.set()
    rev = await asyncio.to_thread(hh.store.revision)  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    while hh.live_policy.value.revision < rev:
        assert time.monotonic() < deadline, "policy did not reload"
        await asyncio.sleep(0.01)


def ede_text(r: dns.message.Message) -> str:
    return " ".join(o.text or "" for o in r.options if isinstance(o, dns.edns.EDEOption))


async def answer(addr: Addr, name: str, source: str) -> str:
    r = await ask(addr, name, source=source)
    if r.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(r.rcode())
    text = ede_text(r)
    # the address (after safe search's CNAME to restrictmoderate.youtube.com, if any)
    addrs = [str(rr) for rrset in r.answer for rr in rrset if rrset.rdtype == dns.rdatatype.A]
    return text if text else (addrs[0] if addrs else "NODATA")


async def until(check: Callable[[], Awaitable[bool]], seconds: float) -> float:
    """Poll `check` until true; the real seconds it took (fails after `seconds`)."""
    t0 = time.monotonic()
    while not await check():
        assert time.monotonic() - t0 < seconds, f"not within {seconds} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


async def used(hh: Household, child_id: int, day: date) -> dict[str, int]:
    assert hh.budgets is not None
    await hh.budgets.flush()
    rows = await asyncio.to_thread(hh.store.budget_usage, day, child_id)  # type: ignore[union-attr]
    return {u.key: u.minutes for u in rows}


MONDAY = datetime(2026, 11, 30, 16, 0, 5, tzinfo=ZoneInfo("UTC"))


async def test_two_minute_budget_runs_out_blocks_and_more_time_unblocks(budget_house) -> None:
    start, _ = budget_house
    clock = HouseClock(MONDAY)
    hh, addr = await start(clock)
    ids = await family(hh, youtube=(2, 120))
    assert await answer(addr, "www.youtube.com", TABLET) == REAL  # minute 1
    clock.advance(minutes=1)
    assert await answer(addr, "i.ytimg.com", PHONE) == REAL  # minute 2, the other device

    async def blocked() -> bool:
        return await answer(addr, "www.youtube.com", TABLET) == "budget:youtube"

    # spent at 16:01: blocked within a minute of the household clock (here: of real time)
    await until(blocked, 5)
    assert await answer(addr, "rr1.googlevideo.com", PHONE) == "budget:youtube"
    verdict = hh.explain(PHONE, "www.youtube.com")
    assert verdict.reason == "budget:youtube"

    async def logged() -> bool:  # the activity log says why, as the EDE text does
        rows = await asyncio.to_thread(hh.store.activity)  # type: ignore[union-attr]
        return any(r.event.reason == "budget:youtube" and r.event.action == "block"
                   for r in rows)

    await until(logged, 10)
    # the sister, the parent and a device nobody claimed are untouched and never counted
    # (unknown devices get the youngest child's profile, without his budgets)
    for _ in range(3):
        assert await answer(addr, "www.youtube.com", SISTER) == REAL
        assert await answer(addr, "www.youtube.com", PARENT) == REAL
        assert await answer(addr, "www.youtube.com", STRANGER) == REAL
        clock.advance(minutes=1)
    assert await used(hh, ids["lan"], MONDAY.date()) == {}
    assert await used(hh, ids["minh"], MONDAY.date()) == {"youtube": 2}
    # other names still work for Minh
    assert await answer(addr, "school.example", TABLET) == REAL

    # "more time": the child asks, the parent approves 15 minutes; unblocked within 1 s
    store = hh.store
    assert store is not None
    req = await asyncio.to_thread(
        store.add_request, child_id=ids["minh"], device_id=None, client=TABLET,
        domain="www.youtube.com", reason="budget:youtube", message="homework video",
    )
    t0 = time.monotonic()
    await asyncio.to_thread(store.answer_request, req.id, approve=True, minutes=15, by="mum",
                            now=clock())
    hh.nudge.set()  # as the web UI does after every write

    async def allowed() -> bool:
        return await answer(addr, "www.youtube.com", TABLET) == REAL

    await until(allowed, 1.0)
    assert time.monotonic() - t0 < 1.0


async def test_same_minute_on_two_devices_counts_once_and_background_never(budget_house) -> None:
    start, _ = budget_house
    clock = HouseClock(MONDAY)
    hh, addr = await start(clock)
    ids = await family(hh, video=(60, 60))
    for _ in range(3):
        await answer(addr, "www.youtube.com", TABLET)
        await answer(addr, "i.ytimg.com", PHONE)
    assert await used(hh, ids["minh"], MONDAY.date()) == {"video": 1}
    # an hour of an app polling its background names: nothing counted but the first
    # stretch's unseen end (half the 300 s its answers allowed: 2 minutes)
    for _ in range(60):
        clock.advance(minutes=1)
        await answer(addr, "s.youtube.com", TABLET)
        await answer(addr, "accounts.youtube.com", PHONE)
    assert await used(hh, ids["minh"], MONDAY.date()) == {"video": 1 + 2}


async def test_ttl_bridges_a_silence_no_longer_than_it(budget_house) -> None:
    start, _ = budget_house
    clock = HouseClock(MONDAY)
    hh, addr = await start(clock)
    ids = await family(hh, youtube=(60, 60), roblox=(60, 60))
    # TTL 300: a device silent for 4 minutes was still watching: 16:00..16:04 = 5 minutes
    await answer(addr, "www.youtube.com", TABLET)
    clock.advance(minutes=4)
    await answer(addr, "www.youtube.com", TABLET)
    # TTL 60: 4 silent minutes are not explained: 2 separate minutes
    await answer(addr, "www.roblox.com", PHONE)
    clock.advance(minutes=4)
    await answer(addr, "www.roblox.com", PHONE)
    assert await used(hh, ids["minh"], MONDAY.date()) == {"youtube": 5, "roblox": 2}


async def test_counts_survive_a_restart_and_reset_at_local_midnight(budget_house) -> None:
    start, _ = budget_house
    # Europe/Berlin, the night DST ends (25 October 2026): the day is the household's
    tz = ZoneInfo("Europe/Berlin")
    clock = HouseClock(datetime(2026, 10, 24, 23, 57, 30, tzinfo=tz))  # a Saturday
    async with AsyncExitStack() as first:
        hh, addr = await start(clock, tz="Europe/Berlin", stack=first)
        ids = await family(hh, youtube=(2, 3))
        await answer(addr, "www.youtube.com", TABLET)
        clock.advance(minutes=1)
        await answer(addr, "www.youtube.com", PHONE)
    # restarted: the 2 minutes are still there, and a third spends the weekend's 3
    hh, addr = await start(clock, tz="Europe/Berlin")
    clock.advance(minutes=1)  # 23:59:30
    assert await answer(addr, "www.youtube.com", TABLET) == REAL

    async def blocked() -> bool:
        return await answer(addr, "www.youtube.com", TABLET) == "budget:youtube"

    await until(blocked, 5)
    assert await used(hh, ids["minh"], date(2026, 10, 24)) == {"youtube": 3}
    # local midnight (22:00 UTC): a new day, nothing spent
    clock.advance(minutes=1)
    assert clock().date() == date(2026, 10, 25)

    async def allowed() -> bool:
        return await answer(addr, "www.youtube.com", TABLET) == REAL

    await until(allowed, 5)
    assert await used(hh, ids["minh"], date(2026, 10, 25)) == {"youtube": 1}
    assert await used(hh, ids["minh"], date(2026, 10, 24)) == {"youtube": 3}


async def test_precedence_pause_and_parent_allow(budget_house) -> None:
    start, _ = budget_house
    clock = HouseClock(MONDAY)
    hh, addr = await start(clock)
    ids = await family(hh, youtube=(0, 0))  # 0 minutes: spent from the start
    assert await answer(addr, "www.youtube.com", TABLET) == "budget:youtube"
    store: Any = hh.store
    await asyncio.to_thread(store.set_pause, ids["minh"], clock() + timedelta(hours=1))
    await settle(hh)
    assert await answer(addr, "www.youtube.com", TABLET) == "paused"
    await asyncio.to_thread(store.set_pause, ids["minh"], None)
    await asyncio.to_thread(store.add_rule, ids["minh"], "youtube.com", "allow")
    await settle(hh)
    assert await answer(addr, "www.youtube.com", TABLET) == REAL


async def _cli(*args: str) -> tuple[int, str, str]:
    nestguard = str(Path(sys.executable).parent / "nestguard")
    proc = await asyncio.create_subprocess_exec(
        nestguard, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_set_status_and_more_time_reach_the_running_server(
    budget_house, tmp_path
) -> None:
    start, _ = budget_house
    clock = HouseClock(datetime.now(ZoneInfo("UTC")))  # the CLI reads the real clock
    hh, addr = await start(clock)
    await family(hh)
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(f"data_dir: {hh.config.data_dir}\npolicy: {{timezone: UTC}}\n"
                   f"dns: {{upstreams: ['{addr[0]}:{addr[1] + 1}']}}\n")
    c = ("--config", str(cfg))
    rc, out, err = await _cli("budget", "set", "Minh", "youtube", "--school-days", "1",
                              "--weekends", "1", *c)
    assert rc == 0, err
    assert "Minh: youtube 1 minutes on school days" in out
    rc, _, err = await _cli("budget", "set", "Minh", "tetris", "--school-days", "1",
                            "--weekends", "x", *c)
    assert rc == 2 and err.count("\n") == 1 and "slug: 'tetris'" in err
    rc, _, err = await _cli("budget", "set", "Minh", "video", "--school-days", "30",
                            "--weekends", "lots", *c)
    assert rc == 2 and "weekends: 'lots' is not a number of minutes" in err

    async def blocked() -> bool:
        return await answer(addr, "www.youtube.com", TABLET) == "budget:youtube"

    await until(blocked, 5)  # in force within a second; the first answer spent the minute
    assert hh.budgets is not None
    await hh.budgets.flush()
    rc, out, err = await _cli("budget", "status", "Minh", *c)
    assert rc == 0, err
    assert "youtube: 1 of 1 minutes, 0 left  SPENT" in out
    rc, out, err = await _cli("budget", "add", "Minh", "youtube", "15", *c)
    assert rc == 0, err

    async def allowed() -> bool:
        return await answer(addr, "www.youtube.com", TABLET) == REAL

    await until(allowed, 5)
    rc, out, _ = await _cli("budget", "status", *c)
    assert "youtube: 1 of 16 minutes (+15 extra), 15 left" in out and "Lan: no budgets" in out
