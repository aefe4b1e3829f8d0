"""Parse throughput on the biggest real lists (run on demand, not collected by pytest).

    .venv/bin/python tests/bench/bench_parse.py [--repeat 5]

Prints lines/s per file and format: best of N by CPU time of this process (fair on a shared
machine; the parse is single-threaded), and by wall time. Data: env NESTGUARD_SHARED_DATA,
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
    total_cpu = total_wall = 0.0
    for rel, fmt in FILES:
        cpu = wall = float("inf")
        for _ in range(args.repeat):
            c0, w0 = time.process_time(), time.perf_counter()
            r = parse_file(DATA / rel, fmt)
            cpu = min(cpu, time.process_time() - c0)
            wall = min(wall, time.perf_counter() - w0)
        total_lines += r.lines
        total_cpu += cpu
        total_wall += wall
        print(
            f"{rel:52} {fmt:8} {r.lines:>7} lines {len(r.entries):>7} entries "
            f"cpu {r.lines / cpu:>9,.0f} lines/s  wall {r.lines / wall:>9,.0f} lines/s"
        )
    print(
        f"{'all':52} {'':8} {total_lines:>7} lines {'':15} "
        f"cpu {total_lines / total_cpu:>9,.0f} lines/s  "
        f"wall {total_lines / total_wall:>9,.0f} lines/s"
    )


if __name__ == "__main__":
    main()
