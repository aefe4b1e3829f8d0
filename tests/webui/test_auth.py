"""Authentication: first-run setup, scrypt, lockout, sessions, tokens."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import pytest

from tests.webui.conftest import (
    CSRF_RE,
    PASSWORD,
    Harness,
    login,
    other_session,
    setup_and_login,
)
from webui import auth

PAGES = ["/", "/children", "/devices", "/activity", "/requests", "/lists", "/settings", "/audit"]


async def test_fresh_install_shows_only_setup(client) -> None:
    for path in PAGES + ["/login"]:
        r = await client.get(path, allow_redirects=False)
        assert r.status == 303, path
        assert r.headers["Location"] == "/setup", path
    r = await client.get("/api/v1/children")
    assert r.status == 401
    assert (await r.json())["error"] == "setup required"
    r = await client.get("/setup")
    assert r.status == 200
    assert 'name="username"' in await r.text()


async def test_setup_page_creates_admin_then_is_gone(client, harness: Harness) -> None:
    r = await client.post(
        "/setup",
        data={"username": "mai", "password": PASSWORD, "confirm": PASSWORD},
        allow_redirects=False,
    )
    # signed in at once: the session cookie opens Home
    assert r.status == 303 and r.headers["Location"] == "/?done=welcome"
    account = harness.store.account("mai")
    assert account is not None and account.role == "admin"
    home = await client.get("/", allow_redirects=False)
    assert home.status == 200 and 'action="/logout"' in await home.text()
    assert (await client.get("/setup")).status == 404
    r = await client.post("/api/v1/setup", json={"username": "kid", "password": PASSWORD * 2})
    assert r.status == 404
    r = await client.post(
        "/setup", data={"username": "kid", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert r.status == 404
    assert harness.store.account("kid") is None


async def test_setup_validates_with_messages_next_to_fields(client, harness: Harness) -> None:
    r = await client.post(
        "/setup", data={"username": "bad name!", "password": "short", "confirm": "short"}
    )
    assert r.status == 400
    html = await r.text()
    assert 'id="setup-username-err"' in html
    assert 'id="setup-password-err"' in html
    assert "12" in html  # "Ít nhất 12 ký tự"
    assert 'value="bad name!"' in html  # the typed name stays
    assert harness.store.account_count() == 0  # nothing half-saved


async def test_password_hash_is_scrypt_with_parameters(client, harness: Harness) -> None:
    await setup_and_login(client)
    account = harness.store.account("mai")
    assert account is not None
    scheme, n, r, p, salt, digest = account.password_hash.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**14, 8, 1)
    assert len(base64.b64decode(salt)) == 16
    assert PASSWORD not in account.password_hash
    # the parameters travel with the hash: a hash made with other parameters still verifies
    other = auth.hash_password_sync(PASSWORD, n=2**12, r=8, p=1)
    assert other.split("$")[1] == str(2**12)
    assert auth.verify_password_sync(PASSWORD, other)
    assert not auth.verify_password_sync(PASSWORD + "x", other)
    assert not auth.verify_password_sync(PASSWORD, "garbage")


def test_production_parameters_need_maxmem() -> None:
    """n=2**17 needs 128 MiB: it works only because maxmem is passed."""
    encoded = auth.hash_password_sync("a long enough password", n=auth.DEFAULT_N)
    assert encoded.startswith(f"scrypt${2**17}$8$1$")
    assert auth.verify_password_sync("a long enough password", encoded)


async def test_login_sets_strict_httponly_cookie_and_new_id(client, harness: Harness) -> None:
    r = await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD})
    assert r.status == 201
    r = await client.post("/api/v1/login", json={"username": "mai", "password": PASSWORD})
    assert r.status == 200
    cookie = r.headers["Set-Cookie"]
    assert "ng_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here; secure_cookies turns it on
    first = r.cookies["ng_session"].value
    assert len(base64.urlsafe_b64decode(first + "==")) == 32  # 256 bits
    assert harness.store.session(auth.sha256_hex(first)) is not None
    r = await client.post("/api/v1/login", json={"username": "mai", "password": PASSWORD})
    second = r.cookies["ng_session"].value
    assert second != first
    assert harness.store.session(auth.sha256_hex(first)) is None  # old id dropped
    assert harness.store.session(auth.sha256_hex(second)) is not None


async def test_secure_cookie_when_configured(aiohttp_client, harness: Harness) -> None:
    from webui.app import create_app

    harness.services.secure_cookies = True
    client = await aiohttp_client(create_app(harness.services))
    await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD})
    r = await client.post("/api/v1/login", json={"username": "mai", "password": PASSWORD})
    assert "Secure" in r.headers["Set-Cookie"]
    assert "Strict-Transport-Security" in r.headers


async def test_html_login_and_logout(client) -> None:
    await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD})
    client.session.cookie_jar.clear()
    r = await client.post(
        "/login", data={"username": "mai", "password": "wrong password!!", "next": "/devices"}
    )
    assert r.status == 400
    assert 'id="login-password-err"' in await r.text()
    r = await client.post(
        "/login",
        data={"username": "mai", "password": PASSWORD, "next": "//evil.example/x"},
        allow_redirects=False,
    )
    assert r.status == 303 and r.headers["Location"] == "/"  # no open redirect
    r = await client.get("/devices")
    assert r.status == 200
    csrf = CSRF_RE.search(await r.text())
    assert csrf
    r = await client.post("/logout", data={"csrf": csrf.group(1)}, allow_redirects=False)
    assert r.status == 303
    r = await client.get("/devices", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/login?next=/devices")


async def test_six_bad_logins_lock_even_the_right_password(client, harness: Harness) -> None:
    await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD})
    for _ in range(5):
        r = await client.post("/api/v1/login", json={"username": "mai", "password": "nope" * 4})
        assert r.status == 400
        assert (await r.json())["field"] == "password"
    r = await client.post("/api/v1/login", json={"username": "mai", "password": PASSWORD})
    assert r.status == 429
    assert "until" in await r.json()
    # the HTML form says so too, and a parent can see the lockout
    r = await client.post("/login", data={"username": "mai", "password": PASSWORD})
    assert r.status == 429
    assert 'role="alert"' in await r.text()
    keys = {k for k, n, _ in harness.store.lockouts(harness.now() - timedelta(minutes=15))}
    assert {"ip:127.0.0.1", "pair:127.0.0.1|mai"} <= keys
    # the wait ends by itself
    harness.offset = timedelta(minutes=1)
    await login(client)


async def test_each_further_failure_waits_longer(client, harness: Harness) -> None:
    """Back off instead of a hard lock: 30 s after the 5th failure, 60 s after the 6th ..."""
    await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD})
    waits = []
    for _ in range(5):
        await client.post("/api/v1/login", json={"username": "mai", "password": "nope" * 4})
    for _ in range(3):
        r = await client.post("/api/v1/login", json={"username": "mai", "password": "nope" * 4})
        assert r.status == 429
        until = datetime.fromisoformat((await r.json())["until"])
        waits.append(round((until - harness.now()).total_seconds()))
        harness.offset = until - datetime.now(until.tzinfo) + timedelta(seconds=1)
        r = await client.post("/api/v1/login", json={"username": "mai", "password": "nope" * 4})
        assert r.status == 400  # the wait is over: one more try
    assert waits[0] <= 30 and waits[1] > waits[0] + 20 and waits[2] > waits[1] + 50
    assert waits[2] <= 15 * 60


async def test_a_childs_guesses_do_not_lock_the_parent_out(client, harness: Harness) -> None:
    """Failures for the parent's name from a child's address hold back that address only: the
    parent logs in from another address, sees which address failed and when, and unlocks it."""
    await setup_and_login(client)
    harness.store.upsert_device("127.0.0.2", name="Minh's tablet")
    harness.rebuild_policy()
    async with other_session(client, local_ip="127.0.0.2") as child:
        for _ in range(7):
            r = await child.post("/api/v1/login", json={"username": "mai", "password": "x" * 12})
            assert r.status in (400, 429)
        r = await child.post("/api/v1/login", json={"username": "mai", "password": PASSWORD})
        assert r.status == 429  # the child's tablet waits ...
        async with other_session(client, local_ip="127.0.0.3") as phone:
            r = await phone.post("/api/v1/login", json={"username": "mai", "password": PASSWORD})
            assert r.status == 200  # ... the parent's phone does not
            html = await (await phone.get("/settings")).text()
            assert "127.0.0.2 (Minh&#39;s tablet)" in html
            assert "nhập sai mật khẩu 5 lần (tài khoản mai)" in html  # the household speaks vi
            assert "pair:" not in html and "ip:127" not in html
            assert 'action="/settings/logins/unlock"' in html
            # unlocking needs the session's CSRF token
            r = await phone.post("/settings/logins/unlock", data={"address": "127.0.0.2"},
                                 allow_redirects=False)
            assert r.status == 403
            csrf = CSRF_RE.search(html).group(1)  # type: ignore[union-attr]
            r = await phone.post("/settings/logins/unlock",
                                 data={"address": "127.0.0.2", "csrf": csrf},
                                 allow_redirects=False)
            assert r.status == 303
            html = await (await phone.get(r.headers["Location"])).text()
            assert "127.0.0.2" not in html
        r = await child.post("/api/v1/login", json={"username": "mai", "password": PASSWORD})
        assert r.status == 200  # the parent unlocked it (e.g. the parent was on the tablet)
    assert any(e.action == "login.unlock" for e in harness.store.audit_log(limit=5))


async def test_one_address_guessing_many_accounts_is_held_back(client, harness) -> None:
    await setup_and_login(client)
    async with other_session(client, local_ip="127.0.0.2") as child:
        for i in range(20):
            r = await child.post(
                "/api/v1/login", json={"username": f"user{i}", "password": "x" * 12}
            )
            assert r.status == 400
        r = await child.post("/api/v1/login", json={"username": "new", "password": "x" * 12})
        assert r.status == 429


async def test_unknown_user_fails_like_a_wrong_password(client) -> None:
    await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD})
    r = await client.post("/api/v1/login", json={"username": "nobody", "password": PASSWORD})
    assert r.status == 400
    body = await r.json()
    r2 = await client.post("/api/v1/login", json={"username": "mai", "password": "x" * 12})
    assert (await r2.json())["error"] == body["error"]


async def test_password_change_ends_every_session(client, harness: Harness) -> None:
    csrf = await setup_and_login(client)
    async with other_session(client) as phone:
        r = await phone.post("/api/v1/login", json={"username": "mai", "password": PASSWORD})
        assert r.status == 200
        assert (await phone.get("/api/v1/children")).status == 200
        new = "another long passphrase"
        r = await client.put(
            "/api/v1/password",
            json={"old": PASSWORD, "new": new},
            headers={"X-CSRF-Token": csrf},
        )
        assert r.status == 200, await r.text()
        assert (await phone.get("/api/v1/children")).status == 401  # the old cookie is dead
        # this browser got a fresh session
        assert (await client.get("/api/v1/children")).status == 200
        r = await phone.post("/api/v1/login", json={"username": "mai", "password": PASSWORD})
        assert r.status == 400
        r = await phone.post("/api/v1/login", json={"username": "mai", "password": new})
        assert r.status == 200


async def test_password_change_checks_the_old_one(client) -> None:
    csrf = await setup_and_login(client)
    r = await client.put(
        "/api/v1/password",
        json={"old": "not my password", "new": "another long passphrase"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status == 400 and (await r.json())["field"] == "old"


@pytest.mark.parametrize(("offset", "alive"), [
    (timedelta(hours=11), True),
    (timedelta(hours=13), False),  # idle expiry (12 h)
])
async def test_idle_expiry(client, harness: Harness, offset: timedelta, alive: bool) -> None:
    await setup_and_login(client)
    harness.offset = offset
    r = await client.get("/api/v1/children")
    assert (r.status == 200) is alive


async def test_absolute_expiry(client, harness: Harness) -> None:
    await setup_and_login(client)
    for hours in range(10, 24 * 7, 10):  # used every 10 hours: never idle
        harness.offset = timedelta(hours=hours)
        assert (await client.get("/api/v1/children")).status == 200
    harness.offset = timedelta(days=7, hours=1)
    assert (await client.get("/api/v1/children")).status == 401


async def test_api_token(client, harness: Harness) -> None:
    csrf = await setup_and_login(client)
    r = await client.post("/api/v1/tokens", json={"name": "home assistant"},
                          headers={"X-CSRF-Token": csrf})
    assert r.status == 201
    token = (await r.json())["token"]
    assert token.startswith("ng_")
    assert all(token not in t.token_hash for t in harness.store.tokens())
    async with other_session(client) as script:
        headers = {"Authorization": f"Bearer {token}"}
        assert (await script.get("/api/v1/children", headers=headers)).status == 200
        # a token needs no CSRF header (no cookie is involved)
        r = await script.post("/api/v1/children", json={"name": "Minh", "born": "2017-03-02"},
                              headers=headers)
        assert r.status == 201
        r = await script.get("/api/v1/children", headers={"Authorization": "Bearer ng_wrong"})
        assert r.status == 401
        token_id = (await r.json()) and harness.store.tokens()[0].id
        r = await client.delete(f"/api/v1/tokens/{token_id}", headers={"X-CSRF-Token": csrf})
        assert r.status == 200
        assert (await script.get("/api/v1/children", headers=headers)).status == 401
    audit = [e.action for e in harness.store.audit_log()]
    assert "token.add" in audit and "child.add" in audit


def test_ipv6_clients_are_throttled_per_64() -> None:
    a = auth.throttle_keys("2001:db8:1:2::aaaa", "Mai")
    b = auth.throttle_keys("2001:db8:1:2:ffff::1", "mai")
    assert a == b == ("ip:2001:db8:1:2::/64", "pair:2001:db8:1:2::/64|mai")
    assert auth.throttle_keys("192.0.2.7", "x")[0] == "ip:192.0.2.7"


async def test_login_outcomes_are_counted(aiohttp_client, harness: Harness) -> None:
    import ipaddress

    from webui.app import create_app

    harness.services.metrics_networks = [ipaddress.ip_network("127.0.0.0/8")]
    client = await aiohttp_client(create_app(harness.services))
    await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD})
    await client.post("/api/v1/login", json={"username": "mai", "password": "x" * 12})
    text = await (await client.get("/metrics")).text()
    assert 'nestguard_web_logins_total{outcome="failed"}' in text


async def test_parallel_guesses_count_as_tries(client, harness: Harness) -> None:
    """A burst of simultaneous logins cannot slip past the limit before failures land."""
    import asyncio

    await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD})
    statuses = await asyncio.gather(*[
        client.post("/api/v1/login", json={"username": "mai", "password": f"guess number {i}"})
        for i in range(12)
    ])
    codes = sorted(r.status for r in statuses)
    assert codes.count(400) <= 5 and codes.count(429) >= 7
    since = harness.now() - timedelta(minutes=15)
    assert harness.store.login_failures("pair:127.0.0.1|mai", since) <= 5


async def test_setup_code_when_the_operator_sets_one(aiohttp_client, harness: Harness) -> None:
    from webui.app import create_app

    harness.services.setup_code = "7Kq-29xz"
    client = await aiohttp_client(create_app(harness.services))
    html = await (await client.get("/setup")).text()
    assert 'name="code"' in html
    r = await client.post("/api/v1/setup", json={"username": "kid", "password": PASSWORD})
    assert r.status == 400 and (await r.json())["field"] == "code"
    r = await client.post("/setup", data={"username": "kid", "password": PASSWORD,
                                          "confirm": PASSWORD, "code": "guess"})
    assert r.status == 400 and 'id="setup-code-err"' in await r.text()
    assert harness.store.account_count() == 0
    r = await client.post("/api/v1/setup", json={"username": "mai", "password": PASSWORD,
                                                 "code": "7Kq-29xz"})
    assert r.status == 201


async def test_setup_code_guessing_is_throttled(aiohttp_client, harness: Harness) -> None:
    from webui.app import create_app

    harness.services.setup_code = "7Kq-29xz"
    client = await aiohttp_client(create_app(harness.services))
    for i in range(5):
        r = await client.post("/api/v1/setup", json={"username": "kid", "password": PASSWORD,
                                                     "code": f"guess-{i}"})
        assert r.status == 400
    r = await client.post("/api/v1/setup", json={"username": "kid", "password": PASSWORD,
                                                 "code": "7Kq-29xz"})
    assert r.status == 429
    r = await client.post("/setup", data={"username": "kid", "password": PASSWORD,
                                          "confirm": PASSWORD, "code": "7Kq-29xz"})
    assert r.status == 429
    assert harness.store.account_count() == 0
