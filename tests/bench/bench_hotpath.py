#!/usr/bin/env python3
"""The resolver's hot path alone (no household behind it): CPU per query and latency.

Run from the repo root (not collected by pytest)::

    .venv/bin/python tests/bench/bench_hotpath.py                  # both parts
    taskset -c 0 .venv/bin/python tests/bench/bench_hotpath.py --micro-only

1. micro: `DnsServer.process()` on cache hits, in-process, no sockets; CPU time per call
   (time.thread_time, so other processes on a shared machine do not count), next to a
   calibration loop (100 dict.get) to compare machines. Also one miss's `Cache.store`.
2. latency: `open_resolver` (uvloop) in front of a dnsmasq upstream answering *.example locally
   (TTL 3600); dnsperf (on core 1) asks 2000 warmed names at --rate qps for --duration s; prints
   p50/p99 from `dnsperf -v` and the server's CPU per query (--rate 0: as fast as it goes).
   Pass --stages to add a decider (allow all) and activity/sightings sinks that drop batches.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dnslib import RR, DNSRecord  # noqa: E402

from policy.model import ALLOW, Profile, Verdict  # noqa: E402
from resolver import wire  # noqa: E402
from resolver.assembly import ResolverServices, open_resolver  # noqa: E402
from resolver.cache import Cache  # noqa: E402
from resolver.pipeline import Query  # noqa: E402
from tests.conftest import build_config  # noqa: E402


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def allow_all(profile: Profile, qname: str, qtype: int, now: object) -> Verdict:
    return ALLOW


async def drop(batch: list[object]) -> None:
    return None


def services(stages: bool) -> ResolverServices:
    if stages:
        return ResolverServices(
            arp_path=None, decider=allow_all, activity_sink=drop, sightings_sink=drop
        )
    return ResolverServices(arp_path=None)


async def micro(upstream: tuple[str, int], stages: bool) -> None:
    cfg = build_config([upstream], rate_limit={"queries": 10**9, "per_seconds": 1})
    async with open_resolver(cfg, services(stages)) as running:
        server = running.server
        packets = [bytes(DNSRecord.question(f"n{i}.example", "A").pack()) for i in range(100)]
        for p in packets:
            out = server.process(p, "127.0.0.1", "udp")
            if not isinstance(out, bytes):
                await server.finish(out)  # type: ignore[arg-type]
        n = 100_000
        best = float("inf")
        for _ in range(5):
            t = time.thread_time()
            for i in range(n):
                server.process(packets[i % 100], "127.0.0.1", "udp")
            best = min(best, (time.thread_time() - t) / n)
        d = {i: i for i in range(100)}
        t = time.thread_time()
        for _ in range(20_000):
            for i in range(100):
                d.get(i)
        calib = (time.thread_time() - t) / 20_000
    # one miss's entry building
    data = bytes(DNSRecord.question("www.example", "A").pack())
    query = Query(data, wire.parse_query(data), "127.0.0.1", "udp", 0.0)
    reply = DNSRecord.parse(data).reply()
    reply.add_answer(*RR.fromZone("www.example. 300 IN A 192.0.2.1"))
    raw = bytes(reply.pack())
    records = [DNSRecord.parse(raw) for _ in range(3000)]
    cache = Cache()
    t = time.thread_time()
    for r in records:
        cache.store(query, r)
    store = (time.thread_time() - t) / len(records)
    print(
        f"micro: process() on a cache hit {best * 1e6:.2f} us CPU "
        f"({'decider + sinks' if stages else 'no decider'}); Cache.store {store * 1e6:.1f} us; "
        f"calibration 100 dict.get {calib * 1e6:.2f} us"
    )


async def latency(upstream: tuple[str, int], rate: int, duration: int, stages: bool) -> None:
    cfg = build_config([upstream], rate_limit={"queries": 10**9, "per_seconds": 1})
    with tempfile.TemporaryDirectory() as tmp:
        names = Path(tmp) / "names.txt"
        names.write_text("".join(f"n{i}.example {'A' if i % 3 else 'AAAA'}\n" for i in range(2000)))
        out_path = Path(tmp) / "dnsperf.out"
        async with open_resolver(cfg, services(stages)) as running:
            host, port = running.addresses[0]
            warm = await asyncio.create_subprocess_exec(
                "dnsperf",
                "-s",
                host,
                "-p",
                str(port),
                "-d",
                str(names),
                "-n",
                "1",
                "-q",
                "50",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await warm.wait()
            cpu0 = time.process_time()
            with out_path.open("wb") as out:
                perf = await asyncio.create_subprocess_exec(
                    "taskset",
                    "-c",
                    "1",
                    "dnsperf",
                    "-s",
                    host,
                    "-p",
                    str(port),
                    "-d",
                    str(names),
                    "-l",
                    str(duration),
                    *(("-Q", str(rate)) if rate else ()),
                    "-q",
                    "100",
                    "-t",
                    "2",
                    "-v",
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                )
                await perf.wait()
            cpu = time.process_time() - cpu0
            hits = running.cache.hits
        lat = sorted(
            float(line.split()[-1])
            for line in out_path.read_text().splitlines()
            if line.startswith("> ")
        )
    n = len(lat)
    if not n:
        print("latency: no answers")
        return
    print(
        f"{n / duration:.0f} qps answered; latency at {rate or 'max'} qps "
        f"({'decider + sinks' if stages else 'no decider'}): n={n} "
        f"p50={lat[n // 2] * 1e3:.3f} ms p99={lat[int(n * 0.99)] * 1e3:.3f} ms "
        f"max={lat[-1] * 1e3:.3f} ms; server CPU {cpu / n * 1e6:.0f} us/query; hits={hits}"
    )


async def amain(args: argparse.Namespace) -> None:
    port = _free_port()
    upstream = await asyncio.create_subprocess_exec(
        "dnsmasq",
        "-k",
        "-p",
        str(port),
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--address=/example/192.0.2.1",
        "--address=/example/2001:db8::1",
        "--local-ttl=3600",
        "--cache-size=0",
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(0.5)
        await micro(("127.0.0.1", port), args.stages)
        if not args.micro_only:
            await latency(("127.0.0.1", port), args.rate, args.duration, args.stages)
    finally:
        upstream.kill()
        await upstream.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--stages", action="store_true")
    parser.add_argument("--micro-only", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(amain(args))
        return
    uvloop.run(amain(args))


if __name__ == "__main__":
    main()
