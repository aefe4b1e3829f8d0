"""Where the public lists are (../shared/data, or NESTGUARD_SHARED_DATA), and each one's format.

Tests skip cleanly and benchmarks stop with a message when the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("NESTGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))

# path glob under DATA -> list format; the first matching glob wins. Regex `expressions` files,
# JSON, IP lists, UT1 `usage` files and URL-prefix lists are not domain lists.
DOMAIN_LIST_FORMATS: list[tuple[str, str]] = [
    ("blocklistproject/adguard/*-ags.txt", "adblock"),
    ("blocklistproject/alt-version/*-nl.txt", "domains"),
    ("blocklistproject/dnsmasq-version/*-dnsmasq.txt", "dnsmasq"),
    ("blocklistproject/*.txt", "hosts"),
    ("dibdot-doh/doh-domains*.txt", "domains"),
    ("hagezi-fork-gaby/adblock/*", "adblock"),
    ("hagezi-fork-gaby/dnsmasq/*", "dnsmasq"),
    ("hagezi-fork-gaby/domains/*", "domains"),
    ("hagezi-fork-gaby/hosts/*", "hosts"),
    ("hagezi-fork-gaby/rpz/*", "rpz"),
    ("hagezi-fork-gaby/unbound/*", "unbound"),
    ("hagezi-fork-gaby/wildcard/*", "wildcard"),
    ("sinfonietta/*-hosts", "hosts"),
    ("trustpositif-mirror/rpz/*", "rpz"),
    ("trustpositif-mirror/*-only.txt", "hosts"),
    ("trustpositif-mirror/gambling-au.txt", "domains"),
    ("trustpositif-mirror/whitelist.txt", "domains"),
    ("ut1/blacklists/*/domains", "domains"),
]
