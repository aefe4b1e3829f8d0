"""Parse throughput on the biggest real lists (run on demand, not collected by pytest).

    .venv/bin/python tests/bench/bench_parse.py [--repeat 5]

Prints lines/s (best of N, one core) per file and format. Data: env NESTGUARD_SHARED_DATA,
default ../shared/data beside the repo.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from blocklists.parse import parse_file  # noqa: E402

DATA = Path(os.environ.get("NESTGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))
FILES = [
    ("blocklistproject/alt-version/phishing-nl.txt", "domains"),
    ("ut1/blacklists/redirector/domains", "domains"),
    ("ut1/blacklists/games/domains", "domains"),
    ("trustpositif-mirror/gambling-porn-only.txt", "hosts"),
    ("sinfonietta/pornography-hosts", "hosts"),
    ("trustpositif-mirror/rpz/blacklist-fg.txt", "rpz"),
    ("blocklistproject/adguard/drugs-ags.txt", "adblock"),
    ("blocklistproject/dnsmasq-version/drugs-dnsmasq.txt", "dnsmasq"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no data at {DATA}")
    total_lines = 0
    total_time = 0.0
    for rel, fmt in FILES:
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            r = parse_file(DATA / rel, fmt)
            best = min(best, time.perf_counter() - t0)
        total_lines += r.lines
        total_time += best
        print(
            f"{rel:55} {fmt:8} {r.lines:>7} lines {len(r.entries):>7} entries "
            f"{best * 1000:7.1f} ms {r.lines / best:>10,.0f} lines/s"
        )
    print(f"{'all':55} {'':8} {total_lines:>7} lines {total_lines / total_time:>29,.0f} lines/s")


if __name__ == "__main__":
    main()
