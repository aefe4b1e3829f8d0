"""dnsmasq leases: parsed totally, bad lines counted, new devices named."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.leases import Lease, apply_leases, leases_loop, parse_leases, read_leases
from policy.model import ADULTS
from policy.store import Store

T0 = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)

LEASES = """\
1764345600 AA:BB:CC:DD:EE:01 192.168.1.20 iPad-cua-An 01:aa:bb:cc:dd:ee:01
1764345600 aa:bb:cc:dd:ee:02 192.168.1.21 * *
garbage line
1764345600 aa:bb:cc:dd:ee:03 not-an-ip host3 *
1764345600 zz:bb:cc:dd:ee:04 192.168.1.23 host4 *
1764345600 aa:bb:cc:dd:ee:05 192.168.1.25 <script>x</script> *

1764345600 aa:bb:cc:dd:ee:06
duid 00:01:00:01:2c:5f:5e:5f:aa:bb:cc:dd:ee:ff
1764345600 1234567 2001:db8::20 phone6 00:01:00:01:aa
"""


def test_parse_leases() -> None:
    leases, bad = parse_leases(LEASES)
    assert leases == [
        Lease("aa:bb:cc:dd:ee:01", "192.168.1.20", "iPad-cua-An"),
        Lease("aa:bb:cc:dd:ee:02", "192.168.1.21", None),
        Lease("aa:bb:cc:dd:ee:05", "192.168.1.25", None),  # hostile hostname dropped
    ]
    assert bad == 4  # garbage, bad IP, bad MAC, short line; the DHCPv6 lease is ignored


def test_read_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_leases(tmp_path / "nope.leases") == ([], 0)
    f = tmp_path / "dnsmasq.leases"
    f.write_bytes(LEASES.encode() + b"\xff\xfe broken utf-8\n")
    leases, bad = read_leases(f)
    assert len(leases) == 3 and bad == 5


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parse_never_raises(text: str) -> None:
    leases, bad = parse_leases(text)
    assert bad >= 0 and all(isinstance(x, Lease) for x in leases)


def test_apply_leases_names_new_devices_only(tmp_path: Path) -> None:
    with Store.open(tmp_path / "db.sqlite") as store:
        named = store.upsert_device("aa:bb:cc:dd:ee:02", name="Máy bố", owner=ADULTS)
        leases, _ = parse_leases(
            LEASES.replace("aa:bb:cc:dd:ee:02 192.168.1.21 *", "aa:bb:cc:dd:ee:02 192.168.1.21 dad")
        )
        assert apply_leases(store, leases, T0) == 1
        ipad = store.device_by_identifier("192.168.1.20")
        assert ipad is not None and ipad.name == "iPad-cua-An" and ipad.new
        assert "aa:bb:cc:dd:ee:01" in ipad.identifiers
        assert store.device(named.id).name == "Máy bố"  # the parent's name stays
        unnamed = store.device_by_identifier("aa:bb:cc:dd:ee:05")
        assert unnamed is not None and unnamed.name == "aa:bb:cc:dd:ee:05"
        assert store.device_stats(T0.date())[ipad.id][0] == T0


async def test_leases_loop_applies_changes_and_nudges(tmp_path: Path) -> None:
    import asyncio

    f = tmp_path / "dnsmasq.leases"
    with Store.open(tmp_path / "db.sqlite") as store:
        stop, nudge = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            leases_loop(store, f, stop=stop, clock=lambda: T0, interval=0.02, nudge=nudge)
        )
        try:
            await asyncio.sleep(0.05)  # no file yet: nothing happens, no error
            assert store.devices() == []
            f.write_text("1764345600 aa:bb:cc:dd:ee:01 192.168.1.20 tablet *\n")
            await asyncio.wait_for(nudge.wait(), 2)
            dev = store.device_by_identifier("aa:bb:cc:dd:ee:01")
            assert dev is not None and dev.name == "tablet"
        finally:
            stop.set()
            await asyncio.wait_for(task, 2)
