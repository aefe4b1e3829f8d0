"""Devices, their identifiers, and sightings (who was seen where, when)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from datetime import date, datetime

from policy.model import ADULTS, Device
from policy.store.database import Database
from policy.store.records import Conflict, NotFound, StoreError
from policy.store.rows import _check_name, _dt, _identifier, _lastrowid, _now, _ts, _ts_req, _where

log = logging.getLogger("policy.store")  # the name the logs had before the split


class DevicesPart(Database):
    """Devices, their identifiers and owners, merging, sightings."""

    # devices -------------------------------------------------------------------------

    def devices(self) -> list[Device]:
        with self._read() as c:
            return self._devices(c)

    @staticmethod
    def _devices(c: sqlite3.Connection, device_id: int | None = None) -> list[Device]:
        sql, params = _where(
            "SELECT id, name, child_id, adults, new FROM devices", "id = ?", device_id
        )
        rows = c.execute(sql + " ORDER BY id", params).fetchall()
        idents: dict[int, list[str]] = {}
        if device_id is None:
            q = c.execute("SELECT device_id, identifier FROM identifiers ORDER BY identifier")
        else:
            q = c.execute(
                "SELECT device_id, identifier FROM identifiers WHERE device_id = ?"
                " ORDER BY identifier",
                (device_id,),
            )
        for dev, ident in q:
            idents.setdefault(int(dev), []).append(str(ident))
        out = []
        for r in rows:
            owner: int | str | None = None
            if r[2] is not None:
                owner = int(r[2])
            elif r[3]:
                owner = ADULTS
            out.append(
                Device(int(r[0]), str(r[1]), tuple(idents.get(int(r[0]), ())), owner, bool(r[4]))
            )
        return out

    def _device(self, c: sqlite3.Connection, device_id: int) -> Device:
        found = self._devices(c, device_id)
        if not found:
            raise NotFound(f"no device with id {device_id}")
        return found[0]

    def device(self, device_id: int) -> Device:
        with self._read() as c:
            return self._device(c, device_id)

    def device_by_identifier(self, identifier: str) -> Device | None:
        ident = _identifier(identifier)
        with self._read() as c:
            row = c.execute(
                "SELECT device_id FROM identifiers WHERE identifier = ?", (ident,)
            ).fetchone()
            return None if row is None else self._device(c, int(row[0]))

    def upsert_device(
        self, identifier: str, *, name: str | None = None, owner: int | str | None = None
    ) -> Device:
        """The device holding `identifier`, created when unknown.

        On an existing device, a given name/owner replaces the old one (None leaves it).
        A created device is `new` (waiting for the parent) unless an owner is given.
        """
        ident = _identifier(identifier)
        if name is not None:
            name = _check_name(name, "device name")
        with self._write(bump=True) as c:
            row = c.execute(
                "SELECT device_id FROM identifiers WHERE identifier = ?", (ident,)
            ).fetchone()
            child_id, adults = self._owner_columns(c, owner)
            if row is None:
                cur = c.execute(
                    "INSERT INTO devices (name, child_id, adults, new, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name or ident, child_id, adults, int(owner is None), _ts(_now())),
                )
                device_id = _lastrowid(cur)
                c.execute(
                    "INSERT INTO identifiers (identifier, device_id) VALUES (?, ?)",
                    (ident, device_id),
                )
            else:
                device_id = int(row[0])
                if name is not None:
                    c.execute("UPDATE devices SET name = ? WHERE id = ?", (name, device_id))
                if owner is not None:
                    c.execute(
                        "UPDATE devices SET child_id = ?, adults = ?, new = 0 WHERE id = ?",
                        (child_id, adults, device_id),
                    )
            return self._device(c, device_id)

    def _owner_columns(
        self, c: sqlite3.Connection, owner: int | str | None
    ) -> tuple[int | None, int]:
        if owner is None:
            return None, 0
        if owner == ADULTS:
            return None, 1
        if isinstance(owner, int) and not isinstance(owner, bool):
            self._need_child(c, owner)
            return owner, 0
        raise StoreError(f"device owner {owner!r} is not a child id, {ADULTS!r} or None")

    def set_owner(self, device_id: int, owner: int | str | None) -> Device:
        """Assign the device (None: unassigned, gets the default profile). Clears `new`."""
        with self._write(bump=True) as c:
            child_id, adults = self._owner_columns(c, owner)
            cur = c.execute(
                "UPDATE devices SET child_id = ?, adults = ?, new = 0 WHERE id = ?",
                (child_id, adults, device_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no device with id {device_id}")
            return self._device(c, device_id)

    def rename_device(self, device_id: int, name: str) -> Device:
        name = _check_name(name, "device name")
        with self._write(bump=True) as c:
            cur = c.execute("UPDATE devices SET name = ? WHERE id = ?", (name, device_id))
            if cur.rowcount == 0:
                raise NotFound(f"no device with id {device_id}")
            return self._device(c, device_id)

    def delete_device(self, device_id: int) -> None:
        self._delete("devices", device_id, "device", bump=True)

    def add_identifier(self, device_id: int, identifier: str) -> Device:
        """Attach an address to the device; Conflict if another device holds it."""
        ident = _identifier(identifier)
        with self._write(bump=True) as c:
            self._device(c, device_id)
            row = c.execute(
                "SELECT device_id FROM identifiers WHERE identifier = ?", (ident,)
            ).fetchone()
            if row is not None and int(row[0]) != device_id:
                raise Conflict(f"{ident} already belongs to device {int(row[0])}")
            if row is None:
                c.execute(
                    "INSERT INTO identifiers (identifier, device_id) VALUES (?, ?)",
                    (ident, device_id),
                )
            return self._device(c, device_id)

    def remove_identifier(self, identifier: str) -> None:
        ident = _identifier(identifier)
        with self._write(bump=True) as c:
            cur = c.execute("DELETE FROM identifiers WHERE identifier = ?", (ident,))
            if cur.rowcount == 0:
                raise NotFound(f"no device has identifier {ident}")

    def merge_devices(self, keep_id: int, other_id: int) -> Device:
        """Fold `other` into `keep`: identifiers, per-day counts, last seen, activity rows
        and requests move; keep's name stays; keep's owner stays unless it has none."""
        if keep_id == other_id:
            raise StoreError(f"cannot merge device {keep_id} with itself")
        with self._write(bump=True) as c:
            keep, other = self._device(c, keep_id), self._device(c, other_id)
            c.execute(
                "UPDATE identifiers SET device_id = ? WHERE device_id = ?", (keep_id, other_id)
            )
            c.execute(
                "INSERT INTO device_days (device_id, day, queries)"
                " SELECT ?, day, queries FROM device_days WHERE device_id = ? AND true"
                " ON CONFLICT (device_id, day) DO UPDATE SET queries = queries + excluded.queries",
                (keep_id, other_id),
            )
            c.execute("DELETE FROM device_days WHERE device_id = ?", (other_id,))
            c.execute(
                "UPDATE devices SET last_seen = max(coalesce(last_seen, 0),"
                " coalesce((SELECT last_seen FROM devices WHERE id = ?), 0)) WHERE id = ?",
                (other_id, keep_id),
            )
            c.execute(
                "UPDATE devices SET last_seen = NULL WHERE id = ? AND last_seen = 0", (keep_id,)
            )
            c.execute("UPDATE activity SET device_id = ? WHERE device_id = ?", (keep_id, other_id))
            c.execute("UPDATE requests SET device_id = ? WHERE device_id = ?", (keep_id, other_id))
            if keep.owner is None and other.owner is not None:
                child_id, adults = self._owner_columns(c, other.owner)
                c.execute(
                    "UPDATE devices SET child_id = ?, adults = ? WHERE id = ?",
                    (child_id, adults, keep_id),
                )
            c.execute(
                "UPDATE devices SET new = ? WHERE id = ?", (int(keep.new and other.new), keep_id)
            )
            c.execute("DELETE FROM devices WHERE id = ?", (other_id,))
            return self._device(c, keep_id)

    def seen(self, sightings: Iterable[tuple[str, str | None, datetime]]) -> None:
        """Record (ip, mac, at) sightings (DNS clients, DHCP leases, neighbour table).

        Updates last_seen. An unknown MAC or IPv4 address becomes a new device (IPv6
        addresses are never learnt, see _seen_one). With a MAC, the IP follows the MAC: if
        another device held that IP through a lease (it has a MAC itself), the IP moves to
        this MAC's device; an IP the parent pinned to a device without any MAC stays put.
        Bad addresses are skipped (logged at debug). Bumps the revision only when
        identifiers or devices changed.
        """
        items = list(sightings)
        if not items:
            return
        changed = False
        with self._write() as c:
            for ip, mac, at in items:
                try:
                    ip_n = _identifier(ip) if ip else None
                    mac_n = _identifier(mac) if mac else None
                except StoreError as e:
                    log.debug("sighting skipped: %s", e)
                    continue
                changed |= self._seen_one(c, ip_n, mac_n, _ts_req(at))
            if changed:
                c.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")

    def _seen_one(
        self, c: sqlite3.Connection, ip: str | None, mac: str | None, at: int
    ) -> bool:
        def holder(ident: str | None) -> int | None:
            if ident is None:
                return None
            row = c.execute(
                "SELECT device_id FROM identifiers WHERE identifier = ?", (ident,)
            ).fetchone()
            return None if row is None else int(row[0])

        changed = False
        by_mac, by_ip = holder(mac), holder(ip)
        device_id = by_mac if by_mac is not None else by_ip
        if ip is not None and ":" in ip:
            # IPv6 addresses are not learnt: privacy addresses rotate daily and would pile
            # up as identifiers and "new devices". IPv6 clients are known by MAC (from the
            # neighbour table) or by an address/prefix the parent added; others get the
            # default profile.
            if device_id is None and mac is None:
                return False
            ip = None if by_ip is None else ip
            if ip is None:
                by_ip = None
        if mac is not None and by_mac is None and by_ip is not None and self._has_mac(c, by_ip):
            # a new MAC got an address another device had by lease: a new device
            c.execute("DELETE FROM identifiers WHERE identifier = ?", (ip,))
            device_id = None
        if device_id is None:
            first = mac or ip
            if first is None:
                return False
            cur = c.execute(
                "INSERT INTO devices (name, new, created) VALUES (?, 1, ?)", (first, at)
            )
            device_id = _lastrowid(cur)
            for ident in (mac, ip):
                if ident is not None:
                    c.execute(
                        "INSERT INTO identifiers (identifier, device_id) VALUES (?, ?)",
                        (ident, device_id),
                    )
            changed = True
        elif mac is not None and ip is not None and by_mac is not None and by_ip != by_mac:
            if by_ip is None:
                c.execute(
                    "INSERT INTO identifiers (identifier, device_id) VALUES (?, ?)",
                    (ip, by_mac),
                )
                changed = True
            elif self._has_mac(c, by_ip):
                c.execute(
                    "UPDATE identifiers SET device_id = ? WHERE identifier = ?", (by_mac, ip)
                )
                changed = True
        elif mac is not None and by_mac is None and by_ip is not None:
            # a device known by IP only shows its MAC: remember it.
            if not self._has_mac(c, by_ip):
                c.execute(
                    "INSERT INTO identifiers (identifier, device_id) VALUES (?, ?)",
                    (mac, by_ip),
                )
                changed = True
        c.execute(
            "UPDATE devices SET last_seen = max(coalesce(last_seen, 0), ?) WHERE id = ?",
            (at, device_id),
        )
        return changed

    @staticmethod
    def _has_mac(c: sqlite3.Connection, device_id: int) -> bool:
        row = c.execute(
            "SELECT 1 FROM identifiers WHERE device_id = ? AND identifier LIKE '__:__:__:__:__:__'",
            (device_id,),
        ).fetchone()
        return row is not None

    def device_stats(self, day: date) -> dict[int, tuple[datetime | None, int]]:
        """device id -> (last seen, queries that day). `day` is the event's own date
        (events carry the household zone). Every device appears, with 0 when idle."""
        with self._read() as c:
            rows = c.execute(
                "SELECT d.id, d.last_seen, coalesce(dd.queries, 0) FROM devices d"
                " LEFT JOIN device_days dd ON dd.device_id = d.id AND dd.day = ?",
                (day.isoformat(),),
            ).fetchall()
        return {int(r[0]): (_dt(r[1]), int(r[2])) for r in rows}
