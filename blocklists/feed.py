"""A feed: one list an admin syncs (operator YAML, or added in the web UI).

The one validator and (de)serialiser of feeds: `feed_from_dict` checks every field of a feed
written as a mapping (the operator's YAML, a web form or JSON body, the copy stored in SQLite)
and `feed_to_dict` writes one back. `check_url` says what a feed URL may point at under
`UrlRules`: the operator's feeds are TRUSTED (local paths, private addresses); feeds added in
the web UI get `UrlRules()` (https only, no loopback, private or link-local targets), checked
again on every connection and redirect when fetched (blocklists/sync.py).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlsplit

FeedFormat = Literal[
    "hosts", "domains", "adblock", "rpz", "rating", "wildcard", "dnsmasq", "unbound"
]
FORMATS: tuple[str, ...] = (
    "hosts", "domains", "adblock", "rpz", "rating", "wildcard", "dnsmasq", "unbound"
)
FEED_KEYS: tuple[str, ...] = (
    "name", "url", "format", "category", "min_age", "refresh", "sha256", "signature",
    "max_bytes", "max_entries", "enabled",
)
MIN_REFRESH = timedelta(minutes=1)
MAX_REFRESH = timedelta(days=30)


class FeedError(Exception):
    """A feed could not be fetched, verified or parsed; the last good copy stays in force."""


class BadFeed(FeedError):
    """A feed's field is not valid. `field` names it; `key` is the web UI's message key;
    str() is the reason for people ("'A!' is not a feed name ...")."""

    def __init__(self, field: str, message: str, key: str) -> None:
        super().__init__(message)
        self.field = field
        self.key = key


@dataclass(frozen=True, slots=True)
class Feed:
    name: str  # [a-z0-9_-]{1,64}, unique; also the file name under data_dir/lists/
    url: str  # https://…, http://… or (operator YAML only) a local path / file://
    format: FeedFormat
    category: str | None = None  # required unless format == "rating"
    min_age: int | None = None  # overrides the category's default age for this feed
    refresh: timedelta = timedelta(hours=6)
    sha256: str | None = None  # pin: hex digest of the exact body
    signature: str | None = None  # Ed25519 public key (base64 or hex); feed publishes URL.sig
    max_bytes: int = 50 * 1024 * 1024
    max_entries: int = 5_000_000
    enabled: bool = True


# -- files: data_dir/lists/ is the household's (0700), its files 0600 -------------------------
def private_opener(path: str, flags: int) -> int:
    """`open(..., opener=private_opener)`: a new file is created 0600 whatever the umask."""
    return os.open(path, flags, 0o600)


def make_private_dir(path: Path) -> None:
    """Create `path` 0700, and tighten it and the files in it (0600) if an older version left
    them readable by others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    for p in path.iterdir():
        with contextlib.suppress(OSError):
            if p.is_file() and p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)


# -- URL rules -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UrlRules:
    """What a feed URL may point at. `UrlRules()` is the web UI/API policy."""

    allow_http: bool = False
    allow_loopback: bool = False
    allow_private: bool = False  # RFC 1918, ULA, link-local, CGNAT, ...
    allow_files: bool = False  # local paths and file:// (operator YAML only)
    trusted_hosts: frozenset[str] = frozenset()  # "host" or "host:port" exempt from the above


TRUSTED = UrlRules(allow_http=True, allow_loopback=True, allow_private=True, allow_files=True)
_LAN_SUFFIXES = (".local", ".lan", ".home.arpa", ".internal")  # names only a home network has


def validate_feed_url(url: str, *, allow_http: bool = False, allow_loopback: bool = False) -> None:
    """Check a feed URL given in the web UI or API; BadFeed says what is wrong."""
    check_url(url, UrlRules(allow_http=allow_http, allow_loopback=allow_loopback))


def check_url(url: str, rules: UrlRules) -> None:
    """https only (http:// with allow_http, local files with allow_files); no credentials;
    loopback, private and link-local targets only as the rules allow. Host names are
    resolved and redirects checked hop by hop when the feed is fetched. BadFeed("url")."""

    def bad(message: str, key: str = "err.feed_url") -> BadFeed:
        return BadFeed("url", f"feed URL: {message}", key)

    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise bad("spaces and control characters are not allowed")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise bad(str(e)) from e
    scheme = parts.scheme.lower()
    if scheme == "file" or (not scheme and url):
        if not rules.allow_files:
            raise bad("local files (file://) are not allowed here", "err.feed_scheme")
        return
    if scheme == "http":
        if not rules.allow_http:
            raise bad("http:// is not allowed, use https://", "err.feed_scheme")
    elif scheme != "https":
        allowed = "https://" + (", http://" if rules.allow_http else "")
        allowed += ", file:// or a local path" if rules.allow_files else ""
        raise bad(f"scheme {scheme!r} is not allowed (only {allowed})", "err.feed_scheme")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise bad("no host name")
    if parts.username is not None or parts.password is not None:
        raise bad("user names and passwords in URLs are not allowed")
    if host in rules.trusted_hosts or f"{host}:{port}" in rules.trusted_hosts:
        return
    if host == "localhost" or host.endswith(".localhost"):
        if not rules.allow_loopback:
            raise bad(f"{host} is a loopback address", "err.feed_local")
        return
    if host.endswith(_LAN_SUFFIXES) and not rules.allow_private:
        raise bad(f"{host} is a name inside the home network", "err.feed_local")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return  # a host name: checked again on every connection (GuardedResolver)
    problem = address_problem(ip, rules)
    if problem:
        raise bad(f"{host} is {problem}", "err.feed_local")


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, rules: UrlRules) -> str:
    """'' when the rules allow connecting to ip, else what kind of address it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "" if rules.allow_loopback else "a loopback address"
    if ip.is_link_local:
        return "" if rules.allow_private else "a link-local address"
    if not ip.is_global or ip.is_multicast:
        return "" if rules.allow_private else "a private or reserved address"
    return ""


# -- fields ----------------------------------------------------------------------------------
_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def ed25519_key(text: str) -> str:
    """An Ed25519 public key in hex or base64 (raw 32 bytes or DER) as 64 hex digits;
    ValueError otherwise."""
    # imported here: list-building worker processes import this module and never need it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = "".join(text.split())
    raw: bytes | None = None
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raw = bytes.fromhex(text)
    else:
        try:
            decoded = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) == 32:
            raw = decoded
        elif len(decoded) == 44 and decoded.startswith(_ED25519_SPKI_PREFIX):
            raw = decoded[len(_ED25519_SPKI_PREFIX) :]
    if raw is None:
        raise ValueError(
            "is not an Ed25519 public key (32 bytes as 64 hex digits or base64, "
            "or the base64 DER form)"
        )
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise ValueError(f"is not a valid Ed25519 public key: {e}") from None
    return raw.hex()


def _whole(raw: Mapping[str, object], field: str, low: int, high: int) -> int | None:
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadFeed(field, f"{value!r} is not a whole number", "err.number")
    if not low <= value <= high:
        raise BadFeed(field, f"{value} is out of range ({low}-{high})", "err.number")
    return value


def _text(raw: Mapping[str, object], field: str) -> str | None:
    value = raw.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise BadFeed(field, f"{value!r} is not text", "err.text")
    return value.strip()


def _required(raw: Mapping[str, object], field: str) -> str:
    value = _text(raw, field)
    if value is None:
        raise BadFeed(field, "is required", "err.required")
    return value


def feed_from_dict(
    raw: Mapping[str, object],
    *,
    rules: UrlRules,
    categories: Collection[str] | None = None,
) -> Feed:
    """A Feed from its fields as a mapping (YAML, form, JSON body, the stored copy), or
    BadFeed naming the first bad field. Keys are those of `Feed` (`FEED_KEYS`); `refresh` is
    a timedelta or a number of seconds. `categories`: the known slugs (None: any slug)."""
    d = Feed(name="", url="", format="domains")
    name = _required(raw, "name")
    if not _NAME.fullmatch(name):
        raise BadFeed("name", f"{name!r} is not a feed name ([a-z0-9_-], 1-64 characters)",
                      "err.feed_name")
    url = _required(raw, "url")
    check_url(url, rules)
    fmt = _required(raw, "format")
    if fmt not in FORMATS:
        raise BadFeed("format", f"{fmt!r} is not one of {', '.join(FORMATS)}", "err.choice")
    category = _text(raw, "category")
    if category is None and fmt != "rating":
        raise BadFeed(
            "category",
            f"is required for format {fmt!r} (only 'rating' feeds carry their own categories)",
            "err.required",
        )
    if category is not None and (
        not _SLUG.fullmatch(category) or (categories is not None and category not in categories)
    ):
        raise BadFeed("category", f"{category!r} is not a known category", "err.choice")
    refresh = raw.get("refresh", d.refresh)
    if isinstance(refresh, int | float) and not isinstance(refresh, bool):
        refresh = timedelta(seconds=refresh)
    if not isinstance(refresh, timedelta):
        raise BadFeed("refresh", f"{refresh!r} is not a duration", "err.number")
    if not MIN_REFRESH <= refresh <= MAX_REFRESH:
        raise BadFeed("refresh", f"{refresh} is out of range (1 minute to 30 days)", "err.number")
    sha256 = _text(raw, "sha256")
    if sha256 is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise BadFeed("sha256", f"{sha256!r} is not a SHA-256 hex digest (64 hex digits)",
                          "err.sha256")
        sha256 = sha256.lower()
    signature = _text(raw, "signature")
    if signature is not None:
        try:
            signature = ed25519_key(signature)
        except ValueError as e:
            raise BadFeed("signature", str(e), "err.signature") from None
    enabled = raw.get("enabled", d.enabled)
    if not isinstance(enabled, bool):
        raise BadFeed("enabled", f"{enabled!r} is not true or false", "err.choice")
    max_bytes = _whole(raw, "max_bytes", 1, 10**10)
    max_entries = _whole(raw, "max_entries", 1, 10**9)
    return Feed(
        name=name,
        url=url,
        format=cast(FeedFormat, fmt),
        category=category,
        min_age=_whole(raw, "min_age", 0, 99),
        refresh=refresh,
        sha256=sha256,
        signature=signature,
        max_bytes=d.max_bytes if max_bytes is None else max_bytes,
        max_entries=d.max_entries if max_entries is None else max_entries,
        enabled=enabled,
    )


def feed_to_dict(feed: Feed) -> dict[str, object]:
    """The feed as JSON-ready fields `feed_from_dict` reads back (refresh in seconds)."""
    return {
        "name": feed.name, "url": feed.url, "format": feed.format, "category": feed.category,
        "min_age": feed.min_age, "refresh": feed.refresh.total_seconds(),
        "sha256": feed.sha256, "signature": feed.signature, "max_bytes": feed.max_bytes,
        "max_entries": feed.max_entries, "enabled": feed.enabled,
    }
