"""A feed: one list an admin syncs (operator YAML, or added in the web UI)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
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
