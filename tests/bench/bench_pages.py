"""Page latency with 20,000 activity rows, and the scrypt cost (run by hand; not collected).

    .venv/bin/python tests/bench/bench_pages.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from blocklists.catalogue import load_catalogue
from policy.live import Live
from policy.model import Policy, Profile, QueryEvent
from policy.store import Store
from webui import auth
from webui.app import Services, create_app

TZ = timezone(timedelta(hours=7))
PASSWORD = "correct horse battery"
ROWS = 20_000


def scrypt_cost() -> None:
    for n in (2**14, 2**17):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            auth.hash_password_sync(PASSWORD, n=n)
            times.append(time.perf_counter() - t)
        ms = statistics.median(times) * 1000
        print(f"scrypt n=2^{n.bit_length() - 1} r=8 p=1: median {ms:.0f} ms")


async def pages() -> None:
    store = Store.open(Path(tempfile.mkdtemp()) / "nestguard.db")
    services = Services(
        store=store,
        live_policy=Live(Policy(0, (), {}, Profile(None), Profile(None))),
        categories=load_catalogue(),
        nudge=lambda: None,
        clock=lambda: datetime.now(TZ),
        scrypt_n=2**14,
    )
    child = store.add_child("Minh", date(2017, 1, 1))
    now = datetime.now(TZ)
    store.log_queries([
        QueryEvent(now - timedelta(seconds=i), "127.0.0.2", None, child.id,
                   f"h{i % 40}.site{i % 120}.example", "A",
                   "block" if i % 3 == 0 else "allow",
                   "category:games:12+" if i % 3 == 0 else "")
        for i in range(ROWS)
    ])
    async with TestServer(create_app(services), host="127.0.0.1") as server:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as s:
            base = str(server.make_url("/")).rstrip("/")
            creds = {"username": "mai", "password": PASSWORD}
            await s.post(base + "/api/v1/setup", json=creds)
            await s.post(base + "/api/v1/login", json=creds)
            for path in ("/", "/activity", f"/children/{child.id}", "/api/v1/activity?limit=500"):
                times = []
                for _ in range(10):
                    t = time.perf_counter()
                    r = await s.get(base + path)
                    await r.read()
                    times.append(time.perf_counter() - t)
                ms = statistics.median(times) * 1000
                print(f"{path}: median {ms:.1f} ms over 10 (status {r.status}, {ROWS} rows)")
    store.close()


if __name__ == "__main__":
    scrypt_cost()
    asyncio.run(pages())
