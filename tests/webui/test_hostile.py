"""Smaller defects a determined child (or a leaked password) could use: retention of requests
and grants, API tokens after a password change, /metrics on the LAN, requests without Host."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from datetime import date, timedelta
from typing import Any

import pytest
from aiohttp import web

from policy.model import Grant
from tests.webui.conftest import PASSWORD, Harness, other_session, setup_and_login


async def test_retention_purges_answered_requests_and_ended_grants(
    aiohttp_client: Any, harness: Harness
) -> None:
    from webui.app import create_app

    store = harness.store
    child = store.add_child("Minh", date(2017, 3, 2))
    now = harness.now()
    declined = store.add_request(child_id=child.id, device_id=None, client="127.0.0.2",
                                 domain="old-game.example", reason="category:games:16+",
                                 message="please")
    store.answer_request(declined.id, approve=False, minutes=0, by="mai", now=now)
    pending = store.add_request(child_id=child.id, device_id=None, client="127.0.0.2",
                                domain="new-game.example", reason="category:games:16+",
                                message="please")
    store.add_grant(Grant(child.id, now + timedelta(hours=1), domain="ended.example"))
    store.add_grant(Grant(child.id, now + timedelta(days=10), domain="running.example"))
    store.set_setting("retention_days", 2)
    harness.offset = timedelta(days=3)  # three days later the hourly housekeeping runs
    await aiohttp_client(create_app(harness.services))
    for _ in range(200):
        left = ({r.id for r in store.requests()}, {g.domain for g in store.grants()})
        if left == ({pending.id}, {"running.example"}):
            break
        await asyncio.sleep(0.02)
    assert left == ({pending.id}, {"running.example"})


async def test_a_password_change_ends_the_accounts_api_tokens(client, harness: Harness) -> None:
    csrf = await setup_and_login(client)
    r = await client.post("/api/v1/tokens", json={"name": "script"},
                          headers={"X-CSRF-Token": csrf})
    token = (await r.json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with other_session(client) as script:
        assert (await script.get("/api/v1/children", headers=headers)).status == 200
        new = PASSWORD + " staple"
        r = await client.put("/api/v1/password",
                             json={"old": PASSWORD, "new": new, "confirm": new},
                             headers={"X-CSRF-Token": csrf})
        assert r.status == 200, await r.text()
        assert (await script.get("/api/v1/children", headers=headers)).status == 401
    assert harness.store.tokens() == []


def test_metrics_are_for_this_machine_unless_the_operator_opens_them(tmp_path) -> None:
    from resolver.config import WebConfig, load_config

    assert all(n.is_loopback for n in WebConfig().metrics_networks)
    cfg = tmp_path / "nestguard.yaml"
    cfg.write_text("dns: {upstreams: ['192.0.2.53']}\n"
                   "web: {metrics_networks: ['192.168.1.0/24']}\n")
    nets = load_config(cfg).web.metrics_networks
    assert ipaddress.ip_network("192.168.1.0/24") in nets


async def test_a_request_without_host_is_one_debug_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    from resolver.assembly import web_runner
    from webui.app import create_app

    runner = web_runner(create_app(harness.services))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /login HTTP/1.1\r\nConnection: close\r\n\r\n")
        reply = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    finally:
        await runner.cleanup()
    assert reply.startswith(b"HTTP/1.1 400") or reply.startswith(b"HTTP/1.0 400")
    server_lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.levelno for r in server_lines] == [logging.DEBUG], server_lines
    assert server_lines[0].exc_info is None and "Host" in server_lines[0].getMessage()
