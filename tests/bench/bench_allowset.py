"""How many UT1 `games` names the education allow set lets through for a 9-year-old (issue 17).

    .venv/bin/python tests/bench/bench_allowset.py           # the figures and the review check
    .venv/bin/python tests/bench/bench_allowset.py --list    # also every name let through

A real CategoryIndex over UT1 games, chat and social_networks (../shared/data, CC BY-SA 4.0),
the security lists blocklistproject phishing and scam, and the shipped
blocklists/data/education.txt; the real decide() for a 9-year-old with the catalogue's ages
(as policy/reload.py builds it), with the "learning games stay open" switch on (the default)
and off. Every UT1 games name is asked once.

Prints: how many games names are let through (and by which education.txt section), how many
the switch-off profile lets through (0 is right), and checks a hand-reviewed sample of up to
100 of the let-through names (a fixed seed, so the sample is stable while the list is) against
tests/bench/allowset_games_review.txt: one line per name, `name verdict  # why`, verdict `ok`
(a learning site), `portal` (a game portal, a parent would call it a games site), `casino`
(casino-like), `chat` (a chat or social site) or `unsure`. Exit status 1 when a sampled name is
unreviewed or reviewed as portal/casino/chat: the bar is 0 of those.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from blocklists.catalogue import load_catalogue  # noqa: E402
from blocklists.index import SourceInfo, build_index  # noqa: E402
from blocklists.parse import parse_file  # noqa: E402
from policy.decide import decide  # noqa: E402
from policy.model import Action, Child  # noqa: E402
from policy.reload import child_profile  # noqa: E402
from policy.store import ChildSettings  # noqa: E402
from tests.support.shared_data import DATA  # noqa: E402

EDUCATION = REPO / "blocklists" / "data" / "education.txt"
REVIEW = Path(__file__).with_name("allowset_games_review.txt")
VERDICTS = ("ok", "portal", "casino", "chat", "unsure")
BAD = ("portal", "casino", "chat")
SAMPLE = 100
SEED = 17
LISTS = [  # (source name, category, path under DATA, format)
    ("ut1-games", "games", "ut1/blacklists/games/domains", "domains"),
    ("ut1-chat", "chat", "ut1/blacklists/chat/domains", "domains"),
    ("ut1-social", "social", "ut1/blacklists/social_networks/domains", "domains"),
    ("blp-phishing", "phishing", "blocklistproject/alt-version/phishing-nl.txt", "domains"),
    ("blp-scam", "scam", "blocklistproject/scam.txt", "hosts"),
]
NOW = datetime(2026, 12, 1, 16, 0, tzinfo=timezone(timedelta(hours=7)))


def sections(path: Path) -> dict[int, str]:
    """line number -> the title of the education.txt group it is in (its '# ----' header)."""
    out: dict[int, str] = {}
    title = "(top)"
    previous_header = False
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("# ----"):
            if not previous_header:
                title = line[6:].strip()[:60]
            previous_header = True
            continue
        previous_header = False
        out[no] = title
    return out


def read_review(path: Path = REVIEW) -> dict[str, str]:
    review: dict[str, str] = {}
    if not path.exists():
        return review
    for no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in VERDICTS:
            raise SystemExit(f"{path.name}:{no}: want 'name verdict' with verdict in {VERDICTS}")
        review[parts[0]] = parts[1]
    return review


def main() -> int:  # noqa: C901 - one linear report
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--list", action="store_true", help="print every name let through")
    args = ap.parse_args()
    missing = [p for _, _, p, _ in LISTS if not (DATA / p).exists()]
    if missing:
        print(f"shared data missing under {DATA}: {', '.join(missing)}")
        return 2
    catalogue = {slug: c.min_age for slug, c in load_catalogue().items()}

    t0 = time.perf_counter()
    sources = [(SourceInfo("education", "education", 0, exception=True),
                parse_file(EDUCATION, "domains").entries)]
    games: list[str] = []
    for name, category, rel, fmt in LISTS:
        result = parse_file(DATA / rel, fmt)
        sources.append((SourceInfo(name, category), result.entries))
        if category == "games":
            games = sorted({e.name for e in result.entries})
    index = build_index(sources, category_ages=catalogue)
    built = time.perf_counter() - t0

    child = Child(1, "Minh", date(NOW.year - 9, 6, 1))
    on = child_profile(child, ChildSettings(), [], schedules=(), exceptions=(), grants=(),
                       catalogue=catalogue, now=NOW, bypass_defence=True)
    off = replace(on, learning_games=False)
    assert on.learning_games and child.age_on(NOW.date()) == 9

    t0 = time.perf_counter()
    let_through: dict[str, str] = {}  # name -> verdict source
    other_allowed: list[str] = []
    security = 0
    off_allowed: list[str] = []
    for name in games:
        v = decide(on, name, NOW, index)
        if v.action == Action.ALLOW:
            if v.reason.startswith("learning:"):
                let_through[name] = v.source
            else:
                other_allowed.append(f"{name} ({v.reason or 'no reason'})")
        elif v.reason.startswith("security:"):
            security += 1
        w = decide(off, name, NOW, index)
        if w.action == Action.ALLOW:
            off_allowed.append(f"{name} ({w.reason or 'no reason'})")
    asked = time.perf_counter() - t0

    by_section: dict[str, int] = {}
    titles = sections(EDUCATION)
    for source in let_through.values():
        line = int(source.split(" ", 1)[0].rpartition(":")[2] or 0)
        title = titles.get(line, "?")
        by_section[title] = by_section.get(title, 0) + 1

    print(f"UT1 games names: {len(games)} (index built in {built:.1f} s, "
          f"{2 * len(games)} decisions in {asked:.1f} s)")
    print(f"let through as learning sites for a 9-year-old, switch on: {len(let_through)}"
          f" ({100 * len(let_through) / max(len(games), 1):.2f}% of the list)")
    for title, n in sorted(by_section.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  education.txt: {title}")
    print(f"allowed for another reason (goal 0): {len(other_allowed)}")
    for line in other_allowed[:20]:
        print(f"  {line}")
    print(f"blocked by a security list although games-listed: {security}")
    print(f"let through with the switch off (goal 0): {len(off_allowed)}")
    for line in off_allowed[:20]:
        print(f"  {line}")
    if args.list:
        for name in sorted(let_through):
            print(f"  {name}  <- {let_through[name]}")

    review = read_review()
    names = sorted(let_through)
    sample = sorted(random.Random(SEED).sample(names, min(SAMPLE, len(names))))
    counts = dict.fromkeys(VERDICTS, 0)
    unreviewed: list[str] = []
    bad: list[str] = []
    for name in sample:
        verdict = review.get(name)
        if verdict is None:
            unreviewed.append(name)
            continue
        counts[verdict] += 1
        if verdict in BAD:
            bad.append(f"{name} ({verdict})")
    print(f"hand-reviewed sample ({REVIEW.name}, seed {SEED}): {len(sample)} names: "
          + ", ".join(f"{counts[v]} {v}" for v in VERDICTS))
    print(f"  game portal, casino-like or chat (goal 0): {len(bad)}"
          + (f": {', '.join(bad)}" if bad else ""))
    if unreviewed:
        print(f"  not reviewed yet: {len(unreviewed)}: {', '.join(unreviewed[:30])}")
    stale = sorted(set(review) - set(names))
    if stale:
        print(f"  reviewed names no longer let through: {len(stale)}: {', '.join(stale[:30])}")
    return 1 if bad or unreviewed or off_allowed else 0


if __name__ == "__main__":
    raise SystemExit(main())
