"""The Settings page's alert sections and the block page's ask, through the real web app, a
real SMTP server (aiosmtpd) and a real Store."""

from __future__ import annotations

import html as html_lib
from typing import Any

import pytest
from aiohttp import web

from tests.support.smtp import Mailbox
from tests.webui.conftest import CSRF_RE, Harness
from tests.webui.test_alerts import parts
from tests.webui.test_blockpage import CASINO, family, token_of
from webui.alerts import Alerts, AlertSettings
from webui.app import create_app
from webui.i18n import load_catalogues


@pytest.fixture
def app(harness: Harness) -> web.Application:
    harness.services.alerts = Alerts(
        harness.store, AlertSettings(allow_loopback=True), harness.now, load_catalogues(),
        default_ui_url="http://nestguard.home.arpa:8080",
    )
    return create_app(harness.services)


async def csrf_of(client: Any) -> str:
    m = CSRF_RE.search(await (await client.get("/settings")).text())
    assert m
    return m.group(1)


async def test_admin_sets_up_email_tests_it_and_a_childs_ask_arrives(
    client: Any, harness: Harness, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    await family(client, harness)  # the first account is an admin
    page = html_lib.unescape(await (await client.get("/settings")).text())
    assert "Chưa có kênh thông báo nào." in page
    csrf = await csrf_of(client)
    r = await client.post("/settings/alerts/email", allow_redirects=False, data={
        "csrf": csrf, "host": "127.0.0.1", "port": str(port), "security": "none",
        "sender": "nestguard@home.example", "to": "mai@home.example",
        "events": ["security", "request"],
    })
    assert r.status == 303, await r.text()
    assert harness.store.get_setting("alerts")["email"]["host"] == "127.0.0.1"  # type: ignore[index]
    alerts = harness.services.alerts
    assert alerts is not None and alerts.settings.email is not None
    assert alerts.settings.email.events == {"security", "request"}

    r = await client.post("/settings/alerts/test", data={"csrf": csrf, "channel": "email"},
                          allow_redirects=False)
    assert r.status == 303
    assert len(box.messages) == 1 and "thông báo thử" in str(parts(box.messages[0])["plain"])
    page = html_lib.unescape(await (await client.get("/settings")).text())
    assert "đang hoạt động" in page

    # the child asks from the block page: the parent gets an e-mail with the message
    html = await (await client.get("/games", headers=CASINO)).text()
    r = await client.post("/__nestguard/ask", headers=CASINO, allow_redirects=False,
                          data={"token": token_of(html), "message": "con làm xong bài rồi",
                                "back": "/games"})
    assert r.status == 303
    await alerts.step()
    assert len(box.messages) == 2
    text = parts(box.messages[1])["plain"]
    assert "Minh xin mở casino.example" in text and "con làm xong bài rồi" in text
    assert "http://nestguard.home.arpa:8080/requests" in text


async def test_smtp_error_is_shown_after_the_test_button(
    client: Any, harness: Harness, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    box.reject = "554 5.7.1 no thanks"
    await family(client, harness)
    csrf = await csrf_of(client)
    await client.post("/settings/alerts/email", data={
        "csrf": csrf, "host": "127.0.0.1", "port": str(port), "security": "none",
        "sender": "nestguard@home.example", "to": "mai@home.example", "events": ["security"]})
    r = await client.post("/settings/alerts/test", data={"csrf": csrf, "channel": "email"})
    page = html_lib.unescape(await r.text())
    assert r.status == 400 and "554" in page and "no thanks" in page
    page = html_lib.unescape(await (await client.get("/settings")).text())
    assert "đang lỗi" in page and "no thanks" in page


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://192.168.1.5/hook", "Không được dùng địa chỉ trong mạng gia đình."),
        ("http://ntfy.sh/our-topic", "Địa chỉ phải bắt đầu bằng https://."),
    ],
)
async def test_webhook_into_the_lan_or_without_https_is_refused(
    client: Any, harness: Harness, url: str, message: str
) -> None:
    await family(client, harness)
    csrf = await csrf_of(client)
    r = await client.post("/settings/alerts/webhooks", data={
        "csrf": csrf, "name": "phone", "preset": "ntfy", "url": url, "events": ["security"]})
    assert r.status == 400
    page = html_lib.unescape(await r.text())
    assert message.lower() in page.lower()
    assert harness.store.get_setting("alerts") is None


async def test_a_parent_sets_own_address_and_quiet_hours(client: Any, harness: Harness) -> None:
    await family(client, harness)
    csrf = await csrf_of(client)
    r = await client.post("/settings/alerts/mine", allow_redirects=False, data={
        "csrf": csrf, "email": "mai@home.example", "lang": "en",
        "quiet_start": "21:30", "quiet_end": "06:30"})
    assert r.status == 303
    [prefs] = harness.store.alert_prefs().values()
    assert (prefs.email, prefs.lang, prefs.quiet_start) == ("mai@home.example", "en", "21:30")
    r = await client.post("/settings/alerts/mine", data={"csrf": csrf, "email": "nope"})
    assert r.status == 400


async def test_a_parent_sees_own_alerts_but_cannot_change_channels(
    client: Any, harness: Harness
) -> None:
    from tests.webui.conftest import PASSWORD, other_session

    await family(client, harness)
    csrf = await csrf_of(client)
    r = await client.post("/settings/accounts", allow_redirects=False, data={
        "csrf": csrf, "username": "ba", "password": PASSWORD, "role": "parent"})
    assert r.status == 303
    async with other_session(client) as parent:
        r = await parent.post("/api/v1/login", json={"username": "ba", "password": PASSWORD})
        assert r.status == 200
        page = html_lib.unescape(await (await parent.get("/settings")).text())
        assert "Thông báo của tôi" in page and "Máy chủ e-mail" not in page
        m = CSRF_RE.search(page)
        assert m
        r = await parent.post("/settings/alerts/webhooks", allow_redirects=False, data={
            "csrf": m.group(1), "name": "x", "url": "https://ntfy.sh/x", "preset": "ntfy"})
        assert r.status == 403
        assert harness.store.get_setting("alerts") is None
