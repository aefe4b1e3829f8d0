"""Alerts end to end through real servers: an aiosmtpd SMTP server and an aiohttp webhook
receiver on loopback, a real Store in tmp_path. The clock is the household's, moved by hand
(flood windows, quiet hours and retry backoff are minutes to hours long)."""

from __future__ import annotations

import asyncio
import email
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from policy.model import QueryEvent
from policy.store import AlertPrefs, FeedStatus, Store
from tests.support.smtp import Mailbox, free_port
from webui.alerts import AlertConfigError, AlertEvent, Alerts, parse_alerts
from webui.i18n import load_catalogues

from .conftest import HOUSEHOLD_TZ


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 15, 0, tzinfo=HOUSEHOLD_TZ)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "nestguard.db")
    yield s
    s.close()


def hub(store: Store, raw: dict[str, object], clock: Clock, lang: str = "vi") -> Alerts:
    return Alerts(store, parse_alerts(raw), clock, load_catalogues(),
                  household_lang=lambda: lang, retry_base=60.0, watch_every=3600.0)


def email_cfg(port: int, **extra: object) -> dict[str, object]:
    return {"email": {"host": "127.0.0.1", "port": port, "security": "none",
                      "from": "nestguard@home.example", "to": ["mai@home.example"], **extra},
            "ui_url": "http://nestguard.home.arpa:8080"}


def security_hit(device_id: int, child_id: int | None, name: str, at: datetime) -> QueryEvent:
    return QueryEvent(at=at, client="192.168.1.20", device_id=device_id, child_id=child_id,
                      qname=name, qtype="A", action="block", reason="security:malware",
                      source="urlhaus:12")


def parts(msg: Message) -> dict[str, str]:
    out = {}
    for p in msg.walk():
        if p.get_content_maintype() == "text":
            payload = p.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out[p.get_content_subtype()] = payload.decode(p.get_content_charset() or "utf-8")
    return out


async def wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def setup_child(store: Store) -> tuple[int, int]:
    child = store.add_child("An", date(2015, 4, 1))
    dev = store.upsert_device("192.168.1.20", name="An's tablet", owner=child.id)
    return child.id, dev.id


async def test_security_block_mails_the_parent_once_per_hour_then_folds(
    store: Store, mailbox: tuple[Mailbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    box, port = mailbox
    clock = Clock()
    child_id, dev_id = setup_child(store)
    alerts = hub(store, email_cfg(port), clock)
    caplog.set_level(logging.DEBUG)
    alerts.observe([security_hit(dev_id, child_id, f"evil{i}.example", clock.now)
                    for i in range(15)])
    await alerts.step()
    await wait_for(lambda: len(box.messages) == 1)
    msg = box.messages[0]
    assert msg["To"] == "mai@home.example"
    subject = str(email.header.make_header(email.header.decode_header(msg["Subject"])))
    assert subject == "Đã chặn trang nguy hiểm trên An's tablet"  # the household's language
    body = parts(msg)
    assert set(body) == {"plain", "html"}
    assert "evil0.example" in body["plain"] and "An" in body["plain"]
    assert f"http://nestguard.home.arpa:8080/activity?device={dev_id}" in body["plain"]
    assert f'href="http://nestguard.home.arpa:8080/activity?device={dev_id}"' in body["html"]
    # nothing of the alert's text in the log, at any level
    ours = [r for r in caplog.records if not r.name.startswith("mail.")]
    assert not any("evil" in r.getMessage() or "An's" in r.getMessage() for r in ours)

    clock.now += timedelta(minutes=30)  # still within the hour: folded
    alerts.observe([security_hit(dev_id, child_id, "late.example", clock.now)])
    await alerts.step()
    await asyncio.sleep(0.3)
    assert len(box.messages) == 1

    clock.now += timedelta(minutes=31)
    alerts.observe([security_hit(dev_id, child_id, "next.example", clock.now)])
    await alerts.step()
    await wait_for(lambda: len(box.messages) == 2)
    assert "Và thêm 15 lần tương tự" in parts(box.messages[1])["plain"]


async def test_parent_language_address_and_quiet_hours(
    store: Store, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    clock = Clock()
    clock.now = clock.now.replace(hour=22, minute=30)
    child_id, dev_id = setup_child(store)
    acc = store.add_account("ba", "x", "parent")
    store.save_alert_prefs(AlertPrefs(acc.id, email="ba@home.example", lang="en",
                                      quiet_start="22:00", quiet_end="07:00"))
    alerts = hub(store, email_cfg(port), clock)
    alerts.emit(AlertEvent("request", dev_id, child_id, "game.example", "homework done!",
                           clock.now))
    await alerts.step()
    await asyncio.sleep(0.3)
    assert box.messages == []  # quiet until 07:00
    [row] = store.outbox()
    assert row.next_try == clock.now.replace(hour=7, minute=0) + timedelta(days=1)
    clock.now = clock.now.replace(hour=7, minute=1) + timedelta(days=1)
    await alerts.step()
    await wait_for(lambda: len(box.messages) == 1)
    msg = box.messages[0]
    assert msg["To"] == "ba@home.example"  # the parent's own address, not alerts.email.to
    assert msg["Subject"] == "An asks for access to game.example"
    assert "homework done!" in parts(msg)["plain"]


async def test_smtp_rejection_is_shown_on_the_channel(
    store: Store, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    box.reject = "550 5.7.1 relaying denied"
    clock = Clock()
    alerts = hub(store, email_cfg(port), clock)
    alerts.emit(AlertEvent("new_device", None, None, "192.168.1.77", "", clock.now))
    await alerts.step()
    status = store.channel_statuses()["email"]
    assert "550" in status.last_error and "relaying denied" in status.last_error
    [row] = store.outbox()
    assert row.status == "failed"  # a 5xx reply: retrying cannot help
    assert await alerts.test("email", "en") != ""  # the test button shows the error too


@dataclass
class Receiver:
    bodies: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def start(self, port: int) -> None:
        async def hook(request: web.Request) -> web.Response:
            self.bodies.append(await request.json())
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/{tail:.*}", hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def test_webhook_down_then_back_delivers_everything_once(store: Store) -> None:
    port = free_port()
    clock = Clock()
    child_id, dev_id = setup_child(store)
    raw = {"webhooks": [{"name": "phone", "url": f"https://127.0.0.1:{port}/x"}]}
    with pytest.raises(AlertConfigError, match="loopback"):
        parse_alerts(raw)  # refused as a feed is, without the tests' opt-in
    with pytest.raises(AlertConfigError, match="http://"):
        parse_alerts({"webhooks": [{"name": "phone", "url": "http://hooks.example/x"}]})
    # the tests' opt-in: a loopback receiver (plain HTTP: it has no trusted certificate)
    raw = {"webhooks": [{"name": "phone", "url": f"http://127.0.0.1:{port}/hook"}],
           "allow_loopback": True}
    alerts = hub(store, raw, clock)
    for i, kind in enumerate(("security", "new_device", "request")):
        alerts.emit(AlertEvent(kind, dev_id if kind != "new_device" else None, child_id,
                               f"site{i}.example", "", clock.now))
    await alerts.step()  # receiver down: three failures, retried later
    status = store.channel_statuses()["webhook:phone"]
    assert status.last_error and status.last_ok is None
    assert all(r.status == "pending" and r.attempts == 1 for r in store.outbox())

    receiver = Receiver()
    await receiver.start(port)
    try:
        await alerts.step()  # not due yet (backoff)
        assert receiver.bodies == []
        clock.now += timedelta(minutes=2)
        await alerts.step()
        await alerts.step()
        assert len(receiver.bodies) == 3
        assert len({b["id"] for b in receiver.bodies}) == 3  # no duplicates
        assert {b["kind"] for b in receiver.bodies} == {"security", "new_device", "request"}
        assert all(r.status == "sent" for r in store.outbox())
        assert store.channel_statuses()["webhook:phone"].last_ok is not None
        clock.now += timedelta(hours=2)
        await alerts.step()
        assert len(receiver.bodies) == 3
    finally:
        await receiver.stop()


async def test_presets_ntfy_and_telegram_shape(store: Store) -> None:
    port = free_port()
    receiver = Receiver()
    await receiver.start(port)
    clock = Clock()
    try:
        raw = {"allow_loopback": True, "webhooks": [
            {"name": "ntfy", "preset": "ntfy", "url": f"https://127.0.0.1:{port}/family"},
            {"name": "tg", "preset": "telegram", "url": f"https://127.0.0.1:{port}",
             "token": "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ", "chat_id": "-1001"},
        ]}
        alerts = hub(store, raw, clock, lang="en")
        from webui.alerts import webhook_request

        ev = AlertEvent("new_device", None, None, "192.168.1.5", "", clock.now)
        payload = alerts.render(ev, "en")
        url, body = webhook_request(alerts.settings.webhooks[0], payload)
        assert url == f"https://127.0.0.1:{port}/" and body["topic"] == "family"
        assert body["title"] == "New device on the network"
        url, body = webhook_request(alerts.settings.webhooks[1], payload)
        assert url.endswith("/bot123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ/sendMessage")
        assert body["chat_id"] == "-1001" and "192.168.1.5" in str(body["text"])
    finally:
        await receiver.stop()


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"webhooks": [{"name": "x", "url": "https://192.168.1.10/hook"}]}, "webhooks[0].url"),
        ({"webhooks": [{"name": "x", "url": "http://ntfy.sh/topic"}]}, "webhooks[0].url"),
        ({"webhooks": [{"name": "x", "url": "https://[fe80::1]/hook"}]}, "webhooks[0].url"),
        ({"webhooks": [{"name": "x", "url": "https://localhost/hook"}]}, "webhooks[0].url"),
        ({"email": {"host": "smtp.example.org", "security": "none", "from": "a@b.example"}},
         "email.security"),
        ({"email": {"host": "smtp.example.org", "from": "not an address"}}, "email.from"),
        ({"webhooks": [{"name": "x", "preset": "telegram", "token": "nope", "chat_id": "1"}]},
         "webhooks[0].token"),
        ({"email": {"host": "h.example", "from": "a@b.example", "events": ["weather"]}},
         "email.events[0]"),
        ({"email": {"host": "h.example", "from": "a@b.example", "quiet_hours": "25:00-7"}},
         "email.quiet_hours"),
    ],
)
def test_bad_alert_settings_name_the_key(raw: dict[str, object], where: str) -> None:
    with pytest.raises(AlertConfigError) as e:
        parse_alerts(raw)
    assert e.value.key == f"alerts.{where}"


async def test_new_device_and_feed_signature_mismatch_are_watched(
    store: Store, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    clock = Clock()
    admin = store.add_account("admin", "x", "admin")
    parent = store.add_account("ba", "x", "parent")
    store.save_alert_prefs(AlertPrefs(admin.id, email="admin@home.example", lang="en"))
    store.save_alert_prefs(AlertPrefs(parent.id, email="ba@home.example", lang="en"))
    alerts = hub(store, email_cfg(port), clock)
    alerts.watch_every = 0.0
    store.seen([("192.168.1.99", "aa:bb:cc:dd:ee:ff", clock.now)])
    store.save_feed_status(FeedStatus("urlhaus", last_try=clock.now,
                                      error="bad signature: the list does not match"))
    await alerts.step()
    await alerts.step()
    await wait_for(lambda: len(box.messages) == 3)
    by_to: dict[str, list[str]] = {}
    for m in box.messages:
        by_to.setdefault(str(m["To"]), []).append(str(m["Subject"]))
    assert sorted(by_to["admin@home.example"]) == [
        "Blocklist urlhaus: signature or pin mismatch", "New device on the network"]
    assert by_to["ba@home.example"] == ["New device on the network"]  # admins only for feeds
    await alerts.step()
    await asyncio.sleep(0.3)
    assert len(box.messages) == 3  # each once


async def test_test_button_and_json_body(store: Store) -> None:
    port = free_port()
    receiver = Receiver()
    await receiver.start(port)
    try:
        alerts = hub(store, {"allow_loopback": True, "webhooks": [
            {"name": "phone", "url": f"http://127.0.0.1:{port}/x"}]}, Clock())
        assert await alerts.test("webhook:phone", "en") == ""
        assert receiver.bodies[0]["title"] == "nestguard test alert"
        assert json.dumps(receiver.bodies[0])  # plain JSON
        assert store.channel_statuses()["webhook:phone"].last_ok is not None
    finally:
        await receiver.stop()


def test_which_activity_rows_alert() -> None:
    from webui.alerts import events_of

    at = Clock().now
    rows = [
        QueryEvent(at, "10.0.0.2", 1, 7, "mask.icloud.com", "A", "block", "bypass:relay"),
        QueryEvent(at, "10.0.0.3", 2, None, "mask.icloud.com", "A", "block", "bypass:relay"),
        QueryEvent(at, "10.0.0.3", 2, None, "evil.example", "A", "block", "security:phishing"),
        QueryEvent(at, "10.0.0.2", 1, 7, "ok.example", "A", "allow", ""),
        QueryEvent(at, "10.0.0.2", 1, 7, "casino.example", "A", "block",
                   "category:gambling:18+"),
    ]
    got = [(e.kind, e.device_id, e.name, e.detail) for e in events_of(rows)]
    # bypass attempts count on a child's device only; security blocks on any device
    assert got == [("bypass", 1, "mask.icloud.com", "relay"),
                   ("security", 2, "evil.example", "phishing")]


async def test_a_feed_failing_for_over_a_day_alerts_the_admins_once(
    store: Store, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    clock = Clock()
    admin = store.add_account("admin", "x", "admin")
    store.save_alert_prefs(AlertPrefs(admin.id, email="admin@home.example", lang="en"))
    alerts = hub(store, email_cfg(port), clock)
    alerts.watch_every = 0.0
    ok = clock.now - timedelta(hours=2)
    store.save_feed_status(FeedStatus("ut1-adult", last_try=clock.now, last_success=ok,
                                      error="HTTP 503 Service Unavailable"))
    await alerts.step()
    assert box.messages == []  # failing for two hours: not yet
    clock.now += timedelta(hours=23)
    await alerts.step()
    await alerts.step()
    await wait_for(lambda: len(box.messages) == 1)
    msg = box.messages[0]
    assert msg["Subject"] == "Blocklist ut1-adult is failing to update"
    assert "HTTP 503" in parts(msg)["plain"]
    clock.now += timedelta(hours=5)
    await alerts.step()
    await asyncio.sleep(0.3)
    assert len(box.messages) == 1


async def test_a_spent_budget_mails_the_parent(store: Store, mailbox: tuple[Mailbox, int]
                                               ) -> None:
    """The budgets' "spent" event (resolver/budgets.py) reaches the parents as an alert."""
    from resolver.budgets import BudgetSpent
    from resolver.root import _budget_alert

    box, port = mailbox
    clock = Clock()
    child_id, _ = setup_child(store)
    alerts = hub(store, email_cfg(port), clock, lang="en")
    _budget_alert(alerts)(BudgetSpent(child_id, "youtube", clock.now.date(), 60))
    await alerts.step()
    await wait_for(lambda: len(box.messages) == 1)
    subject = str(email.header.make_header(email.header.decode_header(box.messages[0]["Subject"])))
    assert subject == "An's time for YouTube is up for today"
    assert "used today's 60 minutes of YouTube" in parts(box.messages[0])["plain"]
