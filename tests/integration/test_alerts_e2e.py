"""A security block on a parent's laptop (whose queries are not logged) reaches the parents
by e-mail through the running resolver: real DNS client, real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import dataclasses
import email.header

from tests.conftest import build_config
from tests.integration.test_household import PARENT, a_record, family, write_lists, zone
from tests.support.smtp import smtp_server
from tests.webui.test_alerts import parts
from webui.alerts import parse_alerts


async def test_security_block_on_an_adults_device_is_mailed_not_logged(
    household_server, fake_upstream, tmp_path
) -> None:
    with smtp_server() as (box, port):
        zone(fake_upstream)
        cfg = dataclasses.replace(build_config(fake_upstream), alerts=parse_alerts({
            "email": {"host": "127.0.0.1", "port": port, "security": "none",
                      "from": "nestguard@home.example", "to": ["mai@home.example"],
                      "events": ["security"]}}))
        hh, addr = await household_server(feeds=write_lists(tmp_path / "lists"), config=cfg)
        await family(hh)
        assert await a_record(addr, "evil-malware.example", PARENT) == "0.0.0.0"
        deadline = asyncio.get_running_loop().time() + 20
        while not box.messages and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        [msg] = box.messages
        subject = str(email.header.make_header(email.header.decode_header(msg["Subject"])))
        assert subject.startswith("Đã chặn trang nguy hiểm")
        assert "evil-malware.example" in parts(msg)["plain"]
        assert hh.store is not None
        rows = await asyncio.to_thread(hh.store.activity, search="evil-malware")
        assert rows == []  # the adults' browsing stays out of the log
