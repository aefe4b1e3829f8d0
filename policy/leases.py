"""Read a dnsmasq leases file to name new devices.

dnsmasq writes one lease per line: `expiry mac ip hostname client-id` (hostname `*` when the
client sent none). DHCPv6 leases follow a `duid <server-duid>` line and carry an IAID
instead of a MAC; they are ignored (not bad). Anything else is a bad line: skipped and
counted, never raised. Hostnames come from the clients: control characters or over-long
names are dropped (None), and the UI escapes what is left.

    leases, bad = parse_leases(text)       # [Lease(mac, ip, hostname)], bad line count
    leases, bad = read_leases(path)         # a missing/unreadable file -> ([], 0), logged
    apply_leases(store, leases, now)        # sightings + names for still-unnamed new devices
    await leases_loop(store, path, stop=stop, clock=clock, nudge=reload_nudge)
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from policy.names import BadName, device_identifier
from policy.store import Store, StoreError

log = logging.getLogger(__name__)

_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _is_mac(ident: str) -> bool:
    return len(ident) == 17 and ident.count(":") == 5 and "." not in ident and all(
        len(part) == 2 for part in ident.split(":")
    )


class Lease(NamedTuple):
    mac: str  # lower-case colon form
    ip: str  # canonical text
    hostname: str | None


def parse_leases(text: str) -> tuple[list[Lease], int]:
    leases: list[Lease] = []
    bad = 0
    v6 = False
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "duid":
            v6 = True
            continue
        if len(fields) < 4 or not fields[0].isdigit():
            bad += 1
            continue
        if v6 and ":" not in fields[1]:
            continue  # DHCPv6: IAID, no MAC
        try:
            mac = device_identifier(fields[1])
            ip = device_identifier(fields[2])
        except BadName:
            bad += 1
            continue
        if not _is_mac(mac) or _is_mac(ip) or "/" in ip:
            bad += 1
            continue
        name = fields[3]
        hostname = name if name != "*" and _HOSTNAME.fullmatch(name) else None
        leases.append(Lease(mac, ip, hostname))
    return leases, bad


def read_leases(path: Path) -> tuple[list[Lease], int]:
    try:
        text = Path(path).read_text("utf-8", errors="replace")
    except OSError as e:
        log.warning("cannot read leases file %s: %s", path, e.strerror or e)
        return [], 0
    leases, bad = parse_leases(text)
    if bad:
        log.debug("%s: %d bad lease lines skipped", path, bad)
    return leases, bad


def apply_leases(store: Store, leases: Sequence[Lease], now: datetime) -> int:
    """Record the leases as sightings, then name new devices still called by an address
    after the lease's hostname. Returns the devices renamed."""
    if not leases:
        return 0
    store.seen([(lease.ip, lease.mac, now) for lease in leases])
    renamed = 0
    for lease in leases:
        if lease.hostname is None:
            continue
        device = store.device_by_identifier(lease.mac)
        if device is not None and device.new and device.name in device.identifiers:
            store.rename_device(device.id, lease.hostname)
            renamed += 1
    return renamed


async def leases_loop(
    store: Store,
    path: Path,
    *,
    stop: asyncio.Event,
    clock: Callable[[], datetime],
    interval: float = 60.0,
    nudge: asyncio.Event | None = None,
) -> None:
    """Re-read the leases file when its mtime changes (checked every `interval` s) and apply
    it; set `nudge` (the reload Event) when devices were renamed or added. Errors are
    logged, never raised: naming devices is a convenience."""
    last: tuple[float, int] | None = None
    while not stop.is_set():
        try:
            st = Path(path).stat()
            key = (st.st_mtime, st.st_size)
            if key != last:
                last = key
                leases, _ = await asyncio.to_thread(read_leases, path)
                before = await asyncio.to_thread(store.revision)
                await asyncio.to_thread(apply_leases, store, leases, clock())
                if nudge is not None and await asyncio.to_thread(store.revision) != before:
                    nudge.set()
        except FileNotFoundError:
            last = None
        except (OSError, StoreError) as e:
            log.warning("leases %s: %s", path, e)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
