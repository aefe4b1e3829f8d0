"""Passwords (scrypt), sessions, API tokens and login throttling.

Passwords: `scrypt$n$r$p$salt_b64$hash_b64` (16-byte salt, parameters stored with the hash),
computed in a worker thread with an explicit `maxmem`, compared with `hmac.compare_digest`.
Sessions: a 256-bit random id in an HttpOnly SameSite=Strict cookie; only its sha256 is stored.
API tokens: `ng_` + 256 random bits, sent as `Authorization: Bearer …`; only the sha256 is stored.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from policy.model import prefix64
from policy.store import Account, Session, Store, StoreUnavailable

log = logging.getLogger(__name__)

SESSION_COOKIE = "ng_session"
LANG_COOKIE = "ng_lang"
ROLES = ("parent", "admin")
# Login throttling backs off per (address, account) and per address, never per account alone:
# a child's guesses from the child's tablet must not lock the parent out of the parent's phone.
# After the free tries within WINDOW, each further try waits BACKOFF_FIRST after the last
# failure, doubling with each failure, at most BACKOFF_MAX (429 until then, even if right).
MAX_FAILURES = 5  # free tries for one account from one address
MAX_ADDRESS_FAILURES = 20  # free tries from one address, whatever the accounts
WINDOW = timedelta(hours=1)
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)  # the setup code (no account yet): per address, plain window
SALT_BYTES = 16
HASH_BYTES = 32
DEFAULT_N = 2**17  # OWASP: N=2^17, r=8, p=1 (128 MiB); weak boards may use 2^14
MAXMEM = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an account through a session cookie or an API token."""

    account_id: int
    username: str
    role: str
    session: Session | None = None  # None for API tokens (no cookie, so no CSRF)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password_sync(password: str, *, n: int = DEFAULT_N, r: int = 8, p: int = 1) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=HASH_BYTES
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password_sync(password: str, encoded: str) -> bool:
    try:
        scheme, n_s, r_s, p_s, salt_s, hash_s = encoded.split("$")
        if scheme != "scrypt":
            return False
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt = base64.b64decode(salt_s, validate=True)
        expected = base64.b64decode(hash_s, validate=True)
    except ValueError:
        log.warning("unreadable password hash in the store")
        return False
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=len(expected)
    )
    return hmac.compare_digest(digest, expected)


async def hash_password(password: str, *, n: int, slots: asyncio.Semaphore) -> str:
    """Hash in a worker thread; `slots` bounds how many 128 MiB hashes run at once."""
    async with slots:
        return await asyncio.to_thread(hash_password_sync, password, n=n)


async def verify_password(
    password: str, encoded: str | None, *, n: int, slots: asyncio.Semaphore
) -> bool:
    """Check in a worker thread. encoded None (no such account) spends the same time, False."""
    async with slots:
        if encoded is None:
            await asyncio.to_thread(_verify_dummy, password, n)
            return False
        return await asyncio.to_thread(verify_password_sync, password, encoded)


def _verify_dummy(password: str, n: int) -> None:
    verify_password_sync(password, dummy_hash(n))


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_session(account: Account, now: datetime) -> tuple[str, Session]:
    """A fresh random session id (returned raw for the cookie) and its stored record."""
    raw = secrets.token_urlsafe(32)  # 256 bits
    session = Session(
        id_hash=sha256_hex(raw),
        account_id=account.id,
        csrf=secrets.token_urlsafe(32),
        created=now,
        last_seen=now,
    )
    return raw, session


def new_token() -> str:
    return "ng_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle: timedelta = timedelta(hours=12)
    absolute: timedelta = timedelta(days=7)
    touch_every: timedelta = timedelta(minutes=1)


def session_principal(
    store: Store, raw: str, now: datetime, policy: SessionPolicy
) -> Principal | None:
    """The principal behind a session cookie, or None (unknown, expired, stale). Sync."""
    if not raw or len(raw) > 100:
        return None
    id_hash = sha256_hex(raw)
    session = store.session(id_hash)
    if session is None:
        return None
    if now - session.last_seen > policy.idle or now - session.created > policy.absolute:
        store.delete_session(id_hash)
        return None
    try:
        account = store.account_by_id(session.account_id)
    except Exception:  # noqa: BLE001 - account deleted: the session goes with it
        store.delete_session(id_hash)
        return None
    if now - session.last_seen > policy.touch_every:
        with contextlib.suppress(StoreUnavailable):  # a full disk must not sign parents out
            store.touch_session(id_hash, now)
    return Principal(account.id, account.username, account.role, session)


def token_principal(store: Store, header: str) -> Principal | None:
    """The principal behind `Authorization: Bearer ng_…`, or None. Sync."""
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value.startswith("ng_") or len(value) > 100:
        return None
    token = store.token(sha256_hex(value))
    if token is None:
        return None
    try:
        account = store.account_by_id(token.account_id)
    except Exception:  # noqa: BLE001 - account deleted
        return None
    return Principal(account.id, account.username, account.role, None)


def throttle_keys(ip: str, username: str) -> tuple[str, str]:
    """The per-address key and the per-(address, account) key. An IPv6 client counts per
    /64: it owns the whole prefix."""
    address = throttle_address(ip)
    return f"ip:{address}", f"pair:{address}|{username.strip().lower()[:64]}"


def throttle_address(ip: str) -> str:
    net = prefix64(ip) if ":" in ip else ""
    return net or ip


def key_address(key: str) -> str:
    """The address a throttle key belongs to ("ip:A", "pair:A|user", "setup:A")."""
    _, _, rest = key.partition(":")
    return rest.split("|", 1)[0]


def key_account(key: str) -> str | None:
    return key.split("|", 1)[1] if key.startswith("pair:") and "|" in key else None


def retry_at(failures: int, last: datetime | None, now: datetime, free: int) -> datetime | None:
    """When the next try is allowed after `failures` recent failures (None: now)."""
    if failures < free:
        return None
    steps = min(failures - free, 16)
    wait = min(BACKOFF_FIRST * (2**steps), BACKOFF_MAX)
    until = (last or now) + wait
    return until if until > now else None


# A valid hash to check against when the account does not exist (same time either way).
_DUMMY: dict[int, str] = {}


def dummy_hash(n: int) -> str:
    """A throwaway hash with the current parameters, computed once and kept (tiny: 100 B)."""
    if n not in _DUMMY:
        _DUMMY[n] = hash_password_sync(secrets.token_urlsafe(16), n=n)
    return _DUMMY[n]
