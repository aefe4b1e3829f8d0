"""A full disk under data_dir (a small tmpfs): DNS keeps answering, lost activity rows are
counted and degraded is set, parents see a note on Home, writes answer 503 without internals,
the web UI starts even on a full disk, and everything recovers once space is free."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from policy.store import Store
from resolver.assembly import open_resolver
from resolver.metrics import METRICS
from resolver.root import DB_NAME, Household, open_household
from tests.conftest import build_config
from tests.resolver.dnsclient import ask
from tests.support.upstream import FakeUpstream

PASSWORD = "correct horse battery"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs (needs root and mount rights; skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                       capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Write until the file system says ENOSPC; returns the filler (delete it to recover)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    with open(filler, "ab", buffering=0) as f, contextlib.suppress(OSError):
        while True:  # the last partial page
            f.write(b"\0")
    return filler


async def eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting until {what}")


@contextlib.asynccontextmanager
async def running(cfg: Any) -> AsyncIterator[tuple[Household, tuple[str, int]]]:
    async with open_household(cfg) as hh:
        services = hh.resolver_services()
        services.arp_path = None  # type: ignore[attr-defined]
        async with open_resolver(cfg, services) as r:
            yield hh, r.addresses[0]


def config(fake_upstream: FakeUpstream, data_dir: Path) -> Any:
    fake_upstream.add("*.example", "A", "192.0.2.1", ttl=300)
    return dataclasses.replace(build_config(fake_upstream), data_dir=data_dir)


async def test_a_disk_filling_up_is_seen_and_recovered(
    small_disk: Path, fake_upstream: FakeUpstream, aiohttp_client: Any
) -> None:
    cfg = config(fake_upstream, small_disk / "data")
    async with running(cfg) as (hh, addr):
        client = await aiohttp_client(hh.web_app())
        client.session.cookie_jar.update_cookies({"ng_lang": "en"})
        r = await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD})
        assert r.status == 201
        r = await client.post("/api/v1/login", json={"username": "mai", "password": PASSWORD})
        csrf = (await r.json())["csrf"]
        assert "cannot save to its disk" not in await (await client.get("/")).text()

        dropped, n = METRICS.activity_dropped, 0
        filler = fill(small_disk)
        try:

            async def lookups_are_lost() -> bool:
                nonlocal n
                n += 1
                answer = await ask(addr, f"full{n}.example")  # DNS goes on
                assert answer.answer[0][0].address == "192.0.2.1"
                return METRICS.activity_dropped > dropped and METRICS.degraded

            await eventually(lookups_are_lost, "lost activity rows are counted")
            assert "activity_log" in METRICS.degraded_reasons
            home = await (await client.get("/")).text()
            assert "cannot save to its disk" in home

            # a change cannot be saved: 503 that says why, without the file's path
            r = await client.post("/api/v1/children", json={"name": "Minh", "born": "2017-03-02"},
                                  headers={"X-CSRF-Token": csrf})
            body = await r.text()
            assert r.status == 503, body
            assert "disk" in body and str(small_disk) not in body and DB_NAME not in body
            r = await client.post("/api/v1/login", json={"username": "mai", "password": "x" * 12})
            assert r.status == 503 and str(small_disk) not in await r.text()
        finally:
            filler.unlink()

        # space is free again: rows are saved, degraded clears, the note goes, changes work

        async def saving_again() -> bool:
            nonlocal n
            n += 1
            await ask(addr, f"free{n}.example")
            return "activity_log" not in METRICS.degraded_reasons

        await eventually(saving_again, "the activity log saves again")
        r = await client.post("/api/v1/children", json={"name": "Minh", "born": "2017-03-02"},
                              headers={"X-CSRF-Token": csrf})
        assert r.status == 201, await r.text()
        assert "cannot save to its disk" not in await (await client.get("/")).text()


async def test_the_web_ui_starts_on_a_full_disk(
    small_disk: Path, fake_upstream: FakeUpstream, aiohttp_client: Any
) -> None:
    data = small_disk / "data"
    data.mkdir()
    Store.open(data / DB_NAME).close()  # an existing household, then the disk fills
    filler = fill(small_disk)
    cfg = config(fake_upstream, data)
    try:
        async with running(cfg) as (hh, addr):
            assert hh.store is not None  # not the metrics-only app
            client = await aiohttp_client(hh.web_app())
            client.session.cookie_jar.update_cookies({"ng_lang": "en"})
            r = await client.get("/setup")
            assert r.status == 200 and 'name="username"' in await r.text()
            r = await client.post("/api/v1/setup",
                                  json={"username": "mai", "password": PASSWORD})
            assert r.status == 503 and str(small_disk) not in await r.text()
            assert (await ask(addr, "still.example")).answer  # DNS answers meanwhile
            filler.unlink()
            r = await client.post("/api/v1/setup",
                                  json={"username": "mai", "password": PASSWORD})
            assert r.status == 201, await r.text()  # space is free: it works, no restart
    finally:
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
