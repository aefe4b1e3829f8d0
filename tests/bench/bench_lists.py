"""Benchmark the compiled category index: build time, file size, lookups/s, process RSS.

    .venv/bin/python tests/bench/bench_lists.py                 # all shared lists + 2M synthetic
    .venv/bin/python tests/bench/bench_lists.py --synthetic 0   # shared lists only
    .venv/bin/python tests/bench/bench_lists.py --no-dnsmasq

1. Every domain list in shared/data (env NESTGUARD_SHARED_DATA) is parsed and compiled in a
   worker process (`blocklists.index.rebuild`, as the server does).
2. A fresh Python process mmaps the index file the way the server does and reports VmRSS:
   after loading, after touching every page of the index (the worst case of a long-running
   server) and after importing the server's libraries; then it times lookups on one core
   (pinned) for hits (random subdomains of listed names), misses (random subdomains of
   popular names) and a mix.
3. dnsmasq is started on 127.0.0.1:<free port> with the same unique names as `addn-hosts`
   and its VmRSS read once it answers for the last name of the file.
4. The same for a synthetic list of N names (default 2,000,000).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import gzip
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.shared_data import DATA, DOMAIN_LIST_FORMATS  # noqa: E402

FORMATS = DOMAIN_LIST_FORMATS  # URL lists are left out
SKIP = ("LICENSE", "README")


def shared_lists() -> list[tuple[str, Path, str]]:
    out = []
    for path in sorted(DATA.rglob("*")):
        rel = path.relative_to(DATA).as_posix()
        if not path.is_file() or any(s in rel for s in SKIP):
            continue
        for glob, fmt in FORMATS:
            if fnmatch.fnmatch(rel, glob):
                out.append((rel.replace("/", "_"), path, fmt))
                break
    return out


def rss_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- the fresh "server-like" process -----------------------------------------------------------
def measure(index_path: str, hits_file: str, misses_file: str, n: int) -> None:
    """Run in a fresh process: print JSON with RSS figures and lookups/s."""
    out: dict[str, float] = {"rss_python_kb": rss_kb()}
    from blocklists.index import CategoryIndex

    out["rss_import_kb"] = rss_kb()
    t = time.perf_counter()
    idx = CategoryIndex.load(Path(index_path))
    out["load_ms"] = (time.perf_counter() - t) * 1000
    out["rss_loaded_kb"] = rss_kb()
    buf = idx._buf  # touch every page: a long-running server ends up with all of them
    total = 0
    for off in range(0, len(buf), 4096):
        total += buf[off]
    out["rss_all_pages_kb"] = rss_kb()
    import aiohttp  # noqa: F401  the server's own libraries, for a realistic base
    import dnslib  # noqa: F401
    import prometheus_client  # noqa: F401
    import yaml  # noqa: F401

    out["rss_with_server_libs_kb"] = rss_kb()
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    rnd = random.Random(5)
    listed = Path(hits_file).read_text().split()
    popular = Path(misses_file).read_text().split()
    hits = [f"w{rnd.getrandbits(24):x}.{rnd.choice(listed)}" for _ in range(n)]
    misses = [f"w{rnd.getrandbits(24):x}.{rnd.choice(popular)}" for _ in range(n)]
    mix = [hits[i] if i % 10 == 0 else misses[i] for i in range(n)]  # 10% blocked
    # repeated names as real clients send them: Zipf over the popular names + 10% blocked
    weights = [1 / (r + 1) for r in range(len(popular))]
    zipf = rnd.choices(popular, weights=weights, k=n)
    zipf = [rnd.choice(listed) if i % 10 == 0 else q for i, q in enumerate(zipf)]
    half = [hits[i] if i % 2 else misses[i] for i in range(n)]
    lookup = idx.lookup
    for label, qs in (("hits", hits), ("misses", misses), ("mix10", mix), ("mix50", half),
                      ("zipf10", zipf)):
        best = best_cpu = 0.0
        found = 0
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            found = 0
            for q in qs:
                if lookup(q):
                    found += 1
            best = max(best, len(qs) / (time.perf_counter() - t))
            best_cpu = max(best_cpu, len(qs) / (time.process_time() - c))
        out[f"lookups_per_s_{label}"] = best
        out[f"lookups_per_cpu_s_{label}"] = best_cpu
        out[f"matched_{label}"] = found / len(qs)
    print(json.dumps(out))


def fresh_process(index_path: Path, hits: Path, misses: Path, n: int) -> dict[str, float]:
    r = subprocess.run(
        [sys.executable, __file__, "--measure", str(index_path), str(hits), str(misses), str(n)],
        check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


# -- dnsmasq ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dnsmasq_rss(hosts: Path, last_name: str) -> tuple[int, float] | None:
    exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(exe).exists():
        return None
    port = free_port()
    t = time.perf_counter()
    proc = subprocess.Popen(
        [exe, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
         f"--addn-hosts={hosts}", "--listen-address=127.0.0.1", "--bind-interfaces",
         f"--port={port}", "--user=root", "--group=root", "--pid-file=", "--cache-size=150"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r = subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(port),
                                "@127.0.0.1", last_name, "A"], capture_output=True, text=True)
            if r.stdout.strip() == "0.0.0.0":
                return rss_kb(proc.pid), time.perf_counter() - t
            time.sleep(0.2)
        return None
    finally:
        proc.terminate()
        proc.wait(10)


# -- driver -------------------------------------------------------------------------------------
def build(sources: list[tuple[object, Path, str]], ages: dict[str, int], out: Path) -> float:
    from blocklists.index import rebuild

    t = time.perf_counter()
    asyncio.run(rebuild(sources, category_ages=ages, path=out))  # type: ignore[arg-type]
    return time.perf_counter() - t


def report(title: str, build_s: float, index_path: Path, entries: int, unique: list[str],
           popular: Path, tmp: Path, n_lookups: int, with_dnsmasq: bool) -> None:
    hits = tmp / f"{index_path.stem}-hits.txt"
    rnd = random.Random(3)
    hits.write_text("\n".join(rnd.sample(unique, min(50_000, len(unique)))))
    m = fresh_process(index_path, hits, popular, n_lookups)
    mb = 1024
    print(f"\n== {title}   (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"entries in index        {entries:>12,}   unique names {len(unique):,}")
    print(f"parse+build (worker)    {build_s:>12.1f} s   peak RSS of build workers "
          f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / mb:.0f} MB (max so far)")
    print(f"index file              {index_path.stat().st_size / 1e6:>12.1f} MB")
    print(f"fresh process: load     {m['load_ms']:>12.2f} ms")
    print(f"  VmRSS python+index.py {m['rss_import_kb'] / mb:>12.1f} MB")
    print(f"  VmRSS after load      {m['rss_loaded_kb'] / mb:>12.1f} MB")
    print(f"  VmRSS all pages in    {m['rss_all_pages_kb'] / mb:>12.1f} MB  (worst case)")
    print(f"  + aiohttp/dnslib/...  {m['rss_with_server_libs_kb'] / mb:>12.1f} MB")
    for k in ("hits", "misses", "mix10", "mix50", "zipf10"):
        print(f"  lookups/s {k:<12} {m[f'lookups_per_s_{k}']:>12,.0f} wall, "
              f"{m[f'lookups_per_cpu_s_{k}']:>9,.0f} per CPU-second "
              f"(matched {m[f'matched_{k}']:.0%})")
    if with_dnsmasq:
        hosts = tmp / f"{index_path.stem}.hosts"
        with open(hosts, "w") as f:
            for name in unique:
                f.write(f"0.0.0.0 {name}\n")
        d = dnsmasq_rss(hosts, unique[-1])
        if d is None:
            print("dnsmasq                 not measured (missing or did not answer)")
        else:
            print(f"dnsmasq addn-hosts      {d[0] / mb:>12.1f} MB VmRSS (loaded in {d[1]:.1f} s)")
        hosts.unlink()


def synthetic_names(n: int, seed: int = 11) -> list[str]:
    rnd = random.Random(seed)
    syll = ["ka", "lo", "mi", "ne", "po", "ru", "sa", "ti", "vu", "xe", "bet", "cam", "win",
            "shop", "play", "club", "star", "game", "news", "hot", "top", "max", "go", "my"]
    tlds = ["com", "net", "org", "info", "xyz", "top", "ru", "de", "vn", "io", "co.uk",
            "com.br", "online", "site", "club"]
    out: set[str] = set()
    while len(out) < n:
        base = "".join(rnd.choice(syll) for _ in range(rnd.randint(2, 4)))
        label = base + (str(rnd.randint(0, 9999)) if rnd.random() < 0.6 else "")
        name = f"{label}.{rnd.choice(tlds)}"
        if rnd.random() < 0.3:
            name = f"{rnd.choice(['www', 'm', 'cdn', 'api', 'ads'])}{rnd.randint(0, 99)}.{name}"
        out.add(name)
    return sorted(out, key=lambda _: rnd.random())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic", type=int, default=2_000_000)
    ap.add_argument("--lookups", type=int, default=200_000)
    ap.add_argument("--no-dnsmasq", action="store_true")
    ap.add_argument("--synthetic-only", action="store_true")
    ap.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure[0], args.measure[1], args.measure[2], int(args.measure[3]))
        return
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA} (set NESTGUARD_SHARED_DATA)")
    from blocklists.index import CategoryIndex, SourceInfo

    tmp = Path(tempfile.mkdtemp(prefix="nestguard-bench-"))
    try:
        with gzip.open(DATA / "popular/cloudflare-radar/data/2026-05-03/top-100000.csv.gz",
                       "rt") as f:
            popular_names = [ln.strip() for ln in f if "." in ln][1:]
        popular = tmp / "popular.txt"
        popular.write_text("\n".join(popular_names))

        lists = shared_lists() if not args.synthetic_only else []
        ages = {"listed": 18}
        if lists:
            bench_shared(lists, ages, popular, tmp, args)
        if args.synthetic:
            names = synthetic_names(args.synthetic)
            syn = tmp / "synthetic.txt"
            syn.write_text("\n".join(names) + "\n")
            bt = build([(SourceInfo("synthetic", "listed"), syn, "domains")], ages,
                       tmp / "synthetic.idx")
            n = len(CategoryIndex.load(tmp / "synthetic.idx"))
            split_timing(syn, ages, tmp)
            report(f"synthetic {args.synthetic:,} names", bt, tmp / "synthetic.idx", n, names,
                   popular, tmp, args.lookups, not args.no_dnsmasq)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def split_timing(path: Path, ages: dict[str, int], tmp: Path) -> None:
    """Parse (the parsers' code) and index build (ours) timed apart, wall and CPU."""
    from blocklists.index import SourceInfo, build_index_file
    from blocklists.parse import parse_file

    t, c = time.perf_counter(), time.process_time()
    entries = parse_file(path, "domains").entries
    t1, c1 = time.perf_counter(), time.process_time()
    build_index_file([(SourceInfo("synthetic", "listed"), entries)], tmp / "split.idx",
                     category_ages=ages)
    t2, c2 = time.perf_counter(), time.process_time()
    print(f"\nin-process: parse {len(entries):,} lines {t1 - t:.1f} s wall / {c1 - c:.1f} s CPU;"
          f" index build {t2 - t1:.1f} s wall / {c2 - c1:.1f} s CPU")
    (tmp / "split.idx").unlink()


def bench_shared(lists: list[tuple[str, Path, str]], ages: dict[str, int], popular: Path,
                 tmp: Path, args: argparse.Namespace) -> None:
    from blocklists.index import CategoryIndex, SourceInfo
    from blocklists.parse import parse_file

    sources = [(SourceInfo(name, "listed"), path, fmt) for name, path, fmt in lists]
    bt = build(sources, ages, tmp / "shared.idx")  # type: ignore[arg-type]
    n = len(CategoryIndex.load(tmp / "shared.idx"))
    unique: set[str] = set()
    for _, path, fmt in lists:
        unique.update(e.name for e in parse_file(path, fmt).entries)
    print(f"{len(lists)} domain lists from {DATA}")
    report("all shared lists", bt, tmp / "shared.idx", n, sorted(unique), popular,
           tmp, args.lookups, not args.no_dnsmasq)


if __name__ == "__main__":
    main()
