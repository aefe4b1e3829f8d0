"""A feed: one list an admin syncs (operator YAML, or added in the web UI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

FeedFormat = Literal[
    "hosts", "domains", "adblock", "rpz", "rating", "wildcard", "dnsmasq", "unbound"
]
FORMATS: tuple[str, ...] = (
    "hosts", "domains", "adblock", "rpz", "rating", "wildcard", "dnsmasq", "unbound"
)


class FeedError(Exception):
    """A feed could not be fetched, verified or parsed; the last good copy stays in force."""


@dataclass(frozen=True, slots=True)
class Feed:
    name: str  # [a-z0-9_-]+, unique; also the file name under data_dir/lists/
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
