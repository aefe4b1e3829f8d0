"""Learning games through a running resolver (issue 17): a 9-year-old's tablet asks real DNS
questions; a games list files abcya.com (as UT1 does), the shipped education allow set
carries it. The switch on the child's settings decides, security still wins, and the activity
log and `nestguard lists check` say which allow-set entry let it through."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from blocklists.feed import Feed
from blocklists.sync import explain_matches
from tests.integration.test_household import KID, REAL, a_record, settle, years_ago
from tests.support.upstream import FakeUpstream

EDUCATION = Path(__file__).resolve().parents[2] / "blocklists" / "data" / "education.txt"
NAMES = ("www.abcya.com", "run3-arcade.example", "mathplayground.com",
         "teams.microsoft.com", "en.wikipedia.org")


def entry_line(name: str) -> int:
    return next(i for i, text in enumerate(EDUCATION.read_text().splitlines(), 1)
                if text.split("#")[0].strip() == name)


def feeds(folder: Path) -> tuple[Feed, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "games.txt").write_text(
        "abcya.com\nrun3-arcade.example\nmathplayground.com\n")
    (folder / "chat.txt").write_text("teams.microsoft.com\n")
    (folder / "malware.txt").write_text("mathplayground.com\n")
    return (
        Feed("ut1-games", str(folder / "games.txt"), "domains", category="games"),
        Feed("ut1-chat", str(folder / "chat.txt"), "domains", category="chat"),
        Feed("malware", str(folder / "malware.txt"), "domains", category="malware"),
    )


async def test_the_switch_through_dns(household_server, fake_upstream: FakeUpstream,
                                      tmp_path: Path) -> None:
    for name in NAMES:
        fake_upstream.add(name, "A", REAL, ttl=300)
    hh, addr = await household_server(feeds=feeds(tmp_path / "lists"))
    store = hh.store
    assert store is not None
    minh = await asyncio.to_thread(store.add_child, "Minh", years_ago(9))
    await asyncio.to_thread(store.upsert_device, KID, owner=minh.id)
    await settle(hh)

    async def answers() -> dict[str, str]:
        return {n: await a_record(addr, n, KID) for n in NAMES}

    # on by default: the learning site resolves, the arcade does not, malware wins
    assert await answers() == {
        "www.abcya.com": REAL, "run3-arcade.example": "0.0.0.0",
        "mathplayground.com": "0.0.0.0", "teams.microsoft.com": REAL,
        "en.wikipedia.org": REAL,
    }
    rows = []
    for _ in range(100):  # written in batches off the DNS path
        rows = await asyncio.to_thread(store.activity, child_id=minh.id)
        if any(r.event.qname == "www.abcya.com" for r in rows):
            break
        await asyncio.sleep(0.1)
    ev = next(r.event for r in rows if r.event.qname == "www.abcya.com")
    assert (ev.action, ev.reason) == ("allow", "learning:education")
    assert ev.source == f"education:{entry_line('abcya.com')} abcya.com"

    # off: blocked as a game; school tools and encyclopaedias stay open
    settings = await asyncio.to_thread(store.settings, minh.id)
    await asyncio.to_thread(store.save_settings, minh.id, replace(settings, learning_games=False))
    await settle(hh)
    assert await answers() == {
        "www.abcya.com": "0.0.0.0", "run3-arcade.example": "0.0.0.0",
        "mathplayground.com": "0.0.0.0", "teams.microsoft.com": REAL,
        "en.wikipedia.org": REAL,
    }
    assert hh.explain(KID, "www.abcya.com").reason == "category:games:12+"

    # `nestguard lists check` names the entry, and says when a security list still blocks
    lines = explain_matches(hh.live_index.value, "www.abcya.com")
    assert lines[-1].startswith(
        f"=> let through as a learning site by education line "
        f"{entry_line('abcya.com')} (entry abcya.com)")
    assert "security" not in lines[-1]
    lines = explain_matches(hh.live_index.value, "mathplayground.com")
    assert lines[-1].startswith("=> a learning site by education line")
    assert lines[-1].endswith("but a security list matches: blocked for everyone")
    assert not any("learning site" in line
                   for line in explain_matches(hh.live_index.value, "en.wikipedia.org"))
