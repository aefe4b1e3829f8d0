"""Fixtures for the web UI: a real Store in tmp_path, the real category catalogue, the app
under aiohttp's test client (a real HTTP server on 127.0.0.1:0)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from blocklists.catalogue import load_catalogue
from policy.live import Live
from policy.model import ADULTS, Action, Device, Policy, Profile, Verdict
from policy.store import Store
from tests.support.smtp import Mailbox, smtp_server
from webui.app import Services, create_app

HOUSEHOLD_TZ = timezone(timedelta(hours=7))  # Asia/Ho_Chi_Minh, no DST
PASSWORD = "correct horse battery"
FAST_SCRYPT_N = 2**14  # the weak-board setting: keeps the suite quick


@dataclass
class Harness:
    store: Store
    services: Services
    nudges: list[int] = field(default_factory=list)
    explained: list[tuple[str, str]] = field(default_factory=list)
    verdict: Verdict = Verdict(Action.BLOCK, "category:gambling:18+")
    offset: timedelta = timedelta(0)  # moves the app's clock (session expiry tests)

    def now(self) -> datetime:
        return datetime.now(HOUSEHOLD_TZ) + self.offset

    def rebuild_policy(self) -> None:
        """A small stand-in for policy/reload.py: devices by address, one profile each."""
        devices = tuple(self.store.devices())
        children = {c.id: c for c in self.store.children()}
        profiles = {cid: Profile(child=c) for cid, c in children.items()}
        by_address: dict[str, Device] = {}
        for d in devices:
            for ident in d.identifiers:
                if ":" not in ident or ident.count(":") != 5:
                    by_address[ident] = d
        self.services.live_policy.value = Policy(
            revision=self.store.revision(),
            devices=devices,
            profiles=profiles,
            adults_profile=Profile(child=None, mode="adults"),
            default_profile=Profile(child=None),
            by_address=by_address,
        )


def empty_policy() -> Policy:
    return Policy(
        revision=0, devices=(), profiles={}, adults_profile=Profile(child=None, mode="adults"),
        default_profile=Profile(child=None),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "nestguard.db")
    yield s
    s.close()


@pytest.fixture
def harness(store: Store) -> Harness:
    h: Harness

    def nudge() -> None:
        h.nudges.append(1)
        h.rebuild_policy()

    def explain(ip: str, name: str) -> Verdict:
        h.explained.append((ip, name))
        return h.verdict

    services = Services(
        store=store,
        live_policy=Live(empty_policy()),
        categories=load_catalogue(),
        nudge=nudge,
        clock=lambda: h.now(),
        explain=explain,
        allowed_hosts=("127.0.0.1", "localhost", "nestguard.home.arpa"),
        scrypt_n=FAST_SCRYPT_N,
        block_answer="blockpage",
        upstreams=("9.9.9.9", "1.1.1.1"),
        services_catalogue=_services_catalogue(),
    )
    h = Harness(store=store, services=services)
    return h


def _services_catalogue() -> dict[str, object] | None:
    try:
        from policy.services import load_services

        return dict(load_services())
    except Exception:  # the catalogue is another helper's work in progress
        return None


@pytest.fixture
def app(harness: Harness) -> web.Application:
    return create_app(harness.services)


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Any], app: web.Application
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    yield await aiohttp_client(app)


def other_session(client: TestClient[web.Request, web.Application], *,
                  local_ip: str | None = None) -> aiohttp.ClientSession:
    """A second browser (own cookie jar), optionally from another loopback address."""
    connector = aiohttp.TCPConnector(local_addr=(local_ip, 0)) if local_ip else None
    return aiohttp.ClientSession(
        base_url=str(client.make_url("/")).rstrip("/"),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=connector,
    )


CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


async def setup_and_login(
    client: TestClient[web.Request, web.Application], username: str = "mai",
    password: str = PASSWORD,
) -> str:
    """Create the first account through the API, log in; returns the CSRF token."""
    r = await client.post("/api/v1/setup", json={"username": username, "password": password})
    assert r.status == 201, await r.text()
    return await login(client, username, password)


async def login(
    client: TestClient[web.Request, web.Application], username: str = "mai",
    password: str = PASSWORD,
) -> str:
    r = await client.post("/api/v1/login", json={"username": username, "password": password})
    assert r.status == 200, await r.text()
    data = await r.json()
    return str(data["csrf"])


def years_ago(n: int, today: date | None = None) -> date:
    today = today or datetime.now(HOUSEHOLD_TZ).date()
    try:
        return today.replace(year=today.year - n) - timedelta(days=30)
    except ValueError:  # 29 February
        return today.replace(year=today.year - n, day=28) - timedelta(days=30)


__all__ = ["ADULTS", "Harness", "PASSWORD", "login", "setup_and_login", "years_ago"]


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on loopback: (what it received, its port)."""
    with smtp_server() as served:
        yield served
