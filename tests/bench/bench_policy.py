"""Micro-benchmark of policy.decide(): p50/p99 per call, on a realistic child profile.

    .venv/bin/python tests/bench/bench_policy.py            # dict index (the tests' one)
    .venv/bin/python tests/bench/bench_policy.py --real 1000000   # blocklists' CategoryIndex

Prints p50/p99 wall time per call and the mean thread CPU time per call, for:
  lookup  index.lookup(qname) alone
  decide  decide() with that index (what Enforce pays)
  policy  decide() with a pre-looked-up index (decide's own cost, the "added" part)
Names: the ordered top-65535 list from the shared data set when present (mix of allowed,
blocked and safe-search names), else synthetic names.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from policy.decide import decide  # noqa: E402
from policy.model import Child, Grant, Index, Match, Profile, Schedule  # noqa: E402
from tests.policy.conftest import DictIndex  # noqa: E402

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")  # as the resolver passes it
NOW = datetime(2026, 12, 1, 19, 30, tzinfo=HANOI)  # Tuesday evening: windows exist, none active


def shared_names(limit: int) -> list[str]:
    data = Path(os.environ.get("NESTGUARD_SHARED_DATA", ROOT.parent / "shared" / "data"))
    path = data / "popular" / "faf-dns-bench" / "data" / "top-65535.csv"
    if not path.exists():
        return [f"www.site{i}.example" for i in range(limit)]
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            _, _, name = line.strip().partition(",")
            if name:
                out.append(name.lower())
            if len(out) >= limit:
                break
    return out


def profile() -> Profile:
    weekdays = frozenset(range(5))
    return Profile(
        child=Child(1, "An", date(2014, 6, 1)),
        category_ages={"adult": 18, "gambling": 18, "games": 13, "social": 13, "dating": 18},
        catalogue_ages={"adult": 18, "gambling": 18, "games": 13, "social": 13, "dating": 18},
        blocked=frozenset({"ads"}),
        allow=frozenset(f"allowed{i}.example" for i in range(50)),
        deny=frozenset(f"denied{i}.example" for i in range(50)),
        always_allowed=frozenset({"school.example", "connectivitycheck.gstatic.com"}),
        services=frozenset({"tiktok", "roblox", "free_fire"}),
        schedules=(
            Schedule("bedtime", "bedtime", weekdays, dtime(21), dtime(6, 30)),
            Schedule("school", "school", weekdays, dtime(7, 30), dtime(16, 30),
                     categories=frozenset({"games", "social"})),
        ),
        grants=(
            Grant(1, NOW + timedelta(minutes=20), domain="granted.example"),
            Grant(1, NOW - timedelta(minutes=20), category="games"),
        ),
    )


def dict_index(names: Sequence[str]) -> DictIndex:
    rnd = random.Random(7)
    idx = DictIndex()
    cats = [("adult", 18), ("gambling", 18), ("games", 13), ("social", 13), ("ads", 99),
            ("malware", 99)]
    for i, name in enumerate(names):
        if rnd.random() < 0.3:  # a third of popular names are in some list
            c, a = rnd.choice(cats)
            idx.add(name, Match(c, a, "list", line=i))
    return idx


class Precomputed:
    """An index answering from a dict of ready results: isolates decide's own cost."""

    def __init__(self, inner: Index, names: Sequence[str]) -> None:
        self._r = {n: tuple(inner.lookup(n)) for n in names}

    def lookup(self, qname: str) -> Sequence[Match]:
        return self._r.get(qname, ())


def measure(fn: Callable[[str], object], names: Sequence[str], rounds: int) -> list[float]:
    per: list[float] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(rounds):
            for n in names:
                t0 = clock()
                fn(n)
                per.append(clock() - t0)
    finally:
        gc.enable()
    # subtract the timer's own cost
    base = []
    for _ in range(2000):
        t0 = clock()
        base.append(clock() - t0)
    overhead = statistics.median(base)
    return [max(0.0, x - overhead) for x in per]


def cpu_mean(fn: Callable[[str], object], names: Sequence[str], rounds: int) -> float:
    """Mean thread CPU time per call in us: unlike wall-clock p50, it does not grow when
    other processes take the CPU (this machine is shared)."""
    gc.disable()
    try:
        t0 = time.thread_time_ns()
        for _ in range(rounds):
            for n in names:
                fn(n)
        spent = time.thread_time_ns() - t0
    finally:
        gc.enable()
    return spent / (rounds * len(names)) / 1000


def report(label: str, samples: list[float], cpu: float) -> None:
    samples.sort()
    p50 = samples[len(samples) // 2] / 1000
    p99 = samples[int(len(samples) * 0.99)] / 1000
    print(f"  {label:<7} p50 {p50:6.2f} us   p99 {p99:6.2f} us   cpu mean {cpu:6.2f} us"
          f"   ({len(samples)} calls)")


def real_index(n: int, names: Sequence[str]) -> Index:
    from blocklists.index import SourceInfo, build_index
    from blocklists.parse import Entry

    rnd = random.Random(11)
    cats = ["adult", "gambling", "games", "social", "malware"]

    entries = [Entry(name, line=i) for i, name in enumerate(names) if rnd.random() < 0.3]
    entries += [Entry(f"x{i}.filler{i % 997}.example", line=i) for i in range(n - len(entries))]

    t0 = time.perf_counter()
    idx = build_index(
        [(SourceInfo(f"list-{c}", category=c), entries[i::5]) for i, c in enumerate(cats)],
        category_ages={"adult": 18, "gambling": 18, "games": 13, "social": 13, "malware": 99},
    )
    print(f"built a {len(idx)}-entry CategoryIndex in {time.perf_counter() - t0:.1f} s")
    return idx


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--real", type=int, default=0, help="entries for a real CategoryIndex")
    args = ap.parse_args()
    names = shared_names(args.names)
    names += ["www.google.com", "www.youtube.com", "v16.tiktokcdn.com", "allowed7.example",
              "denied3.example", "a.b.c.d.e.granted.example"]
    prof = profile()
    index: Index = real_index(args.real, names) if args.real else dict_index(names)
    pre = Precomputed(index, names)
    print(f"decide() on {len(names)} names x {args.rounds} rounds, profile with 2 windows, "
          f"100 allow/deny rules, 2 grants, 3 services, Tue 19:30")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    runs: list[tuple[str, Callable[[str], object]]] = [
        ("lookup", index.lookup),
        ("decide", lambda n: decide(prof, n, NOW, index)),
        ("policy", lambda n: decide(prof, n, NOW, pre)),
    ]
    for label, fn in runs:
        report(label, measure(fn, names, args.rounds), cpu_mean(fn, names, args.rounds))


if __name__ == "__main__":
    main()
