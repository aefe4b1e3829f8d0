#!/usr/bin/env python3
"""Benchmark nestguard against dnsmasq and unbound as forwarders to one fast loopback upstream.

Run from the repo root (not collected by pytest)::

    .venv/bin/python tests/bench/bench_resolver.py                 # all servers, 10 s per run
    .venv/bin/python tests/bench/bench_resolver.py --only nestguard --duration 5
    .venv/bin/python tests/bench/bench_resolver.py --blocked       # add the 100%-blocked workload
    .venv/bin/python tests/bench/bench_resolver.py --only nestguard --only dnsmasq --only echo \
        --workload hits                                            # the loop's own ceiling

Layout (2 cores): each server under test is pinned to core 0 (``taskset -c 0``); dnsperf and the
upstream run on core 1. The upstream is **unbound serving local data** (``local-zone: "."
redirect``, so every name answers ``A 192.0.2.1`` with TTL 3600, and ``nx.bench.example`` is a
static zone answering NXDOMAIN with a SOA). It answers from memory in C, without recursion, so
it is not the bottleneck: only cache misses reach it (at most ~20% of queries here). A Python
fake upstream would cap misses at a few thousand per second.

Workloads (default ``hits distinct mixed``; ``-c 10`` clients; extend ``WORKLOADS``). A
synthetic list of ``--list-size`` names (default 100k, ``--full`` 1M) is loaded in every server:
dnsmasq ``addn-hosts``, unbound ``local-zone … always_null``, nestguard a ``domains`` feed in
category ``adult``; the client 127.0.0.1 is a child's device (activity log on).

- ``hits``: 100% cache hits over ``--hit-names`` names (default 10k, warmed first).
- ``distinct``: 100% blocked, each name from the list asked about once (a shuffled order).
- ``mixed``: 80% hot names, 15% names from the list, 5% never-seen allowed names (upstream).
- ``mixed-nx`` (80% hits, 15% new, 5% NXDOMAIN) and ``blocked`` (``--blocked``, 100% under one
  blocked zone) from before, with ``--workload``.

For each server and workload: max qps (dnsperf unthrottled, ``--duration``), p50/p99/p99.9/max
latency at a fixed ``--rate`` (default 2000 qps) over ``--paced-duration`` (default 20 s), the
server's CPU µs per answer at fixed rates (``--cpu-rate``, default 10k and 20k qps; utime+stime
of the server's process tree from /proc before and after), RSS of the main process and PSS of the
whole tree, and the CPU share during the max-qps run (qps per core). New-name lines are unique
per run. Prints a table and nestguard's ratio to each peer.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVERS = ("nestguard", "dnsmasq", "unbound", "echo")
DEFAULT_SERVERS = ("nestguard", "dnsmasq", "unbound")
ZONE = "bench.example"
BLOCKED_ZONE = "blocked.bench.example"
LIST_ZONE = "list.example"  # the synthetic list (--list-size): not special-use (RFC 6761)
CLIENTS = 10
SERVER_CORE = "0"
LOAD_CORE = "1"


# -- workloads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A query mix. ``lines(tag, count, names)`` returns dnsperf input lines ("name TYPE")."""

    name: str
    description: str
    lines: Callable[[str, int, Names], list[str]]
    warm: bool = True  # warm the hit names first
    expect: str = ""  # a check before the run: "blocked" -> first answer must be 0.0.0.0


class Names:
    """The hot (cached) names and the synthetic list. List names are handed out from a shuffled
    order by a cursor shared by every run of a server, so each is asked about once until the
    list is used up (then the order starts again)."""

    def __init__(self, hits: list[str], list_size: int) -> None:
        self.hits = hits
        self.list_size = list_size
        self._order = list(range(list_size))
        random.Random("list-order").shuffle(self._order)
        self._cursor = 0

    def restart(self) -> None:
        self._cursor = 0  # each server sees the same sequence

    def listed(self) -> str:
        if not self._order:
            raise SystemExit("this workload needs --list-size > 0")
        i = self._order[self._cursor % len(self._order)]
        self._cursor += 1
        return list_name(i)


def list_name(i: int) -> str:
    """The i-th synthetic list name: 1,000 registrable parents, like a tracker list."""
    return f"ad{i}.trk{i % 1000}.{LIST_ZONE}"


def _hits(tag: str, count: int, names: Names) -> list[str]:
    hits = names.hits
    return [f"{hits[i % len(hits)]} A" for i in range(count)]


def _mix(tag: str, count: int, hot: list[str], listed: Callable[[int], str],
         new: Callable[[int], str]) -> list[str]:
    """80% hot names, 15% `listed(i)`, 5% `new(i)`, in a fixed order per tag."""
    rng = random.Random(f"mixed-{tag}")
    out = []
    for i in range(count):
        r = rng.random()
        if r < 0.80:
            out.append(f"{rng.choice(hot)} A")
        elif r < 0.95:
            out.append(f"{listed(i)} A")
        else:
            out.append(f"{new(i)} A")
    return out


def _mixed_nx(tag: str, count: int, names: Names) -> list[str]:
    """80% hot names, 15% new allowed names, 5% NXDOMAIN names (all upstream misses)."""
    return _mix(tag, count, names.hits, lambda i: f"n{i}-{tag}.{ZONE}",
                lambda i: f"x{i}-{tag}.nx.{ZONE}")


def _mixed(tag: str, count: int, names: Names) -> list[str]:
    """80% hot names, 15% names from the list, 5% never-seen allowed names (upstream misses)."""
    return _mix(tag, count, names.hits, lambda _i: names.listed(), lambda i: f"n{i}-{tag}.{ZONE}")


def _blocked(tag: str, count: int, names: Names) -> list[str]:
    return [f"b{i % 5000}.{BLOCKED_ZONE} A" for i in range(count)]


def _blocked_distinct(tag: str, count: int, names: Names) -> list[str]:
    return [f"{names.listed()} A" for _ in range(count)]


WORKLOADS: dict[str, Workload] = {
    "hits": Workload("hits", "100% cache hits", _hits),
    "mixed": Workload("mixed", "80% hits / 15% listed / 5% new allowed", _mixed),
    "distinct": Workload(
        "distinct",
        "100% blocked, distinct names from the list",
        _blocked_distinct,
        warm=False,
        expect="listed",
    ),
    "mixed-nx": Workload("mixed-nx", "80% hits / 15% new / 5% NXDOMAIN", _mixed_nx),
    "blocked": Workload("blocked", "100% blocked", _blocked, warm=False, expect="blocked"),
}
DEFAULT_WORKLOADS = ("hits", "distinct", "mixed")


# -- helpers ------------------------------------------------------------------------------------


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (racy, but fine for a benchmark)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def dns_query(port: int, name: str, timeout: float = 0.5) -> tuple[int, list[str]] | None:
    """(rcode, A addresses) for ``name`` from 127.0.0.1:port, or None on timeout. Stdlib only."""
    qid = random.randrange(1, 65536)
    packet = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in name.rstrip(".").split("."):
        packet += bytes([len(label)]) + label.encode()
    packet += b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, ("127.0.0.1", port))
        try:
            data = s.recv(4096)
        except TimeoutError:
            return None
    if len(data) < 12 or data[:2] != packet[:2]:
        return None
    rcode = data[3] & 0xF
    ancount = int.from_bytes(data[6:8], "big")
    pos = len(packet)  # our question is echoed
    addresses = []
    for _ in range(ancount):
        while data[pos] != 0 and data[pos] < 0xC0:  # skip owner name
            pos += data[pos] + 1
        pos += 2 if data[pos] >= 0xC0 else 1
        rtype = int.from_bytes(data[pos : pos + 2], "big")
        rdlen = int.from_bytes(data[pos + 8 : pos + 10], "big")
        rdata = data[pos + 10 : pos + 10 + rdlen]
        if rtype == 1 and rdlen == 4:
            addresses.append(".".join(str(b) for b in rdata))
        pos += 10 + rdlen
    return rcode, addresses


def wait_ready(
    port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}); see {log}:\n{tail(log)}")
        with contextlib.suppress(OSError):
            if dns_query(port, f"ready.{ZONE}", 0.3) is not None:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer on port {port} within {timeout:.0f} s; see {log}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (nestguard's workers, dnsmasq's TCP children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree(pid))


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    values = {"VmRSS": 0, "VmHWM": 0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def tree_pss(pid: int) -> int:
    """Proportional set size of ``pid`` and its descendants in KiB: pages shared between them
    (the mmapped list index, copy-on-write heap) counted once in total."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


@contextlib.contextmanager
def running(
    cmd: list[str], *, core: str, log: Path, port: int, what: str, timeout: float = 20
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", core, *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
            env={**os.environ, "PYTHONPATH": str(REPO)},  # nestguard when not pip-installed
        )
    try:
        wait_ready(port, proc, what, log, timeout)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# -- servers ------------------------------------------------------------------------------------


def unbound_run(conf: Path, port: int, rest: str) -> list[str]:
    """An unbound in the foreground on 127.0.0.1:port: the common server settings + `rest`."""
    conf.write_text(
        f"""server:
  interface: 127.0.0.1
  port: {port}
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{conf.parent}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  do-ip6: no
"""
        + rest
        + """remote-control:
  control-enable: no
"""
    )
    return ["unbound", "-d", "-c", str(conf)]


def upstream_command(tmp: Path, port: int) -> list[str]:
    return unbound_run(
        tmp / "upstream.conf",
        port,
        f"""  access-control: 127.0.0.0/8 allow
  so-rcvbuf: 4m
  local-zone: "." redirect
  local-data: ". 3600 IN A 192.0.2.1"
  local-zone: "nx.{ZONE}." static
  local-data: "nx.{ZONE}. 3600 IN SOA ns.{ZONE}. h.{ZONE}. 1 3600 600 86400 300"
""",
    )


def write_lists(tmp: Path, size: int) -> None:
    """The synthetic list in each server's format: a domains feed (nestguard), a hosts file
    (dnsmasq addn-hosts), local-zone lines (unbound)."""
    with (
        (tmp / "list.txt").open("w") as feed,
        (tmp / "list.hosts").open("w") as hosts,
        (tmp / "list-unbound.conf").open("w") as zones,
    ):
        for i in range(size):
            name = list_name(i)
            feed.write(name + "\n")
            hosts.write(f"0.0.0.0 {name}\n")
            zones.write(f'  local-zone: "{name}." always_null\n')


def nestguard_base() -> list[str]:
    exe = REPO / ".venv" / "bin" / "nestguard"
    if exe.exists():
        return [str(exe)]
    # not pip-installed (no console script): same entry point
    return [
        str(REPO / ".venv" / "bin" / "python"),
        "-c",
        "import sys; from resolver.main import main; sys.exit(main())",
    ]


def nestguard_command(tmp: Path, port: int, upstream: int, args: argparse.Namespace) -> list[str]:
    blocked = tmp / "blocked.txt"
    blocked.write_text(f"{BLOCKED_ZONE}\n")
    listed = ""
    if args.list_size:
        listed = f"""  - name: bench-list
    url: {tmp.parent / "list.txt"}
    format: domains
    category: adult
"""
    workers = f"  workers: {args.workers}\n"
    conf = tmp / "nestguard.yaml"
    conf.write_text(
        f"""data_dir: {tmp / "nestguard-data"}
log_level: warning
dns:
  listen: ["127.0.0.1:{port}"]
  upstreams: ["127.0.0.1:{upstream}"]
  rate_limit: {{queries: 1000000000, per_seconds: 1}}
  cache: {{max_entries: 100000}}
{workers}policy:
  log_queries: {"false" if args.no_log_queries else "true"}
web:
  listen: "127.0.0.1:{free_port()}"
feeds:
  - name: bench-blocked
    url: {blocked}
    format: domains
    category: adult
{listed}"""
    )
    base = nestguard_base()
    if not args.unknown_client:
        # the client (127.0.0.1) is a child's device: the activity log is on, as in a home
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for cli in (
            ["child", "add", "Kid", "--born", "2016-01-01"],
            ["device", "set", "127.0.0.1", "--child", "Kid"],
        ):
            subprocess.run(
                [*base, *cli, "--config", str(conf)], check=True, env=env, capture_output=True
            )
    return [*base, "serve", "--config", str(conf)]


def dnsmasq_command(tmp: Path, port: int, upstream: int, args: argparse.Namespace) -> list[str]:
    listed = [f"--addn-hosts={tmp.parent / 'list.hosts'}"] if args.list_size else []
    return [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        *listed,
        "--no-poll",
        f"--server=127.0.0.1#{upstream}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        f"--port={port}",
        "--cache-size=100000",
        "--dns-forward-max=150",
        f"--address=/{BLOCKED_ZONE}/0.0.0.0",
        f"--pid-file={tmp / 'dnsmasq.pid'}",
        "--log-facility=-",
    ]


def unbound_command(tmp: Path, port: int, upstream: int, args: argparse.Namespace) -> list[str]:
    listed = f"  include: {tmp.parent / 'list-unbound.conf'}\n" if args.list_size else ""
    return unbound_run(
        tmp / "unbound.conf",
        port,
        f"""  do-not-query-localhost: no
  module-config: "iterator"
  qname-minimisation: no
  msg-cache-size: 64m
  rrset-cache-size: 128m
  access-control: 127.0.0.0/8 allow
  local-zone: "{BLOCKED_ZONE}." always_null
{listed}forward-zone:
  name: "."
  forward-addr: 127.0.0.1@{upstream}
""",
    )


# The ceiling of any Python server on this loop: uvloop's UDP path answering every packet with
# its own question (QR set, no records), no other work. Not a DNS server: the hits/blocked rows
# say how close nestguard's hot path is to the loop and socket costs alone (--only echo).
ECHO = """
import asyncio, sys, uvloop
class P(asyncio.DatagramProtocol):
    def connection_made(self, t): self.t = t
    def datagram_received(self, d, a): self.t.sendto(d[:2] + bytes((d[2] | 0x80, 0x80)) + d[4:], a)
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(P, local_addr=("127.0.0.1", int(sys.argv[1])))
    await asyncio.Event().wait()
uvloop.run(main())
"""


def echo_command(tmp: Path, port: int, upstream: int, args: argparse.Namespace) -> list[str]:
    return [str(REPO / ".venv" / "bin" / "python"), "-c", ECHO, str(port)]


COMMANDS = {
    "nestguard": nestguard_command,
    "dnsmasq": dnsmasq_command,
    "unbound": unbound_command,
    "echo": echo_command,
}


# -- dnsperf ------------------------------------------------------------------------------------


@dataclass
class Run:
    qps: float = 0.0
    lost_pct: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rcodes: str = ""
    completed: int = 0


def dnsperf(
    port: int,
    lines: list[str],
    path: Path,
    args: argparse.Namespace,
    *,
    rate: int | None = None,
    verbose: bool = False,
    once: bool = True,
    duration: int | None = None,
) -> Run:
    path.write_text("\n".join(lines) + "\n")
    duration = duration or args.duration
    cmd = [
        "taskset", "-c", args.load_core, "dnsperf", "-s", "127.0.0.1", "-p", str(port),
        "-d", str(path), "-c", str(CLIENTS), "-l", str(duration), "-t", "2",
    ]  # fmt: skip
    if once:
        cmd += ["-n", "1"]
    if rate:
        cmd += ["-Q", str(rate)]
    if verbose:
        cmd += ["-v"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    out = result.stdout
    run = Run()
    if m := re.search(r"Queries per second:\s+([\d.]+)", out):
        run.qps = float(m.group(1))
    if m := re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", out):
        run.lost_pct = float(m.group(1))
    if m := re.search(r"Queries completed:\s+(\d+)", out):
        run.completed = int(m.group(1))
    if m := re.search(r"Response codes:\s+(.*)", out):
        run.rcodes = m.group(1).strip()
    if verbose:
        run.latencies = [
            float(m.group(1)) for m in re.finditer(r"^> \S+ \S+ \S+ ([\d.]+)$", out, re.M)
        ]
    if not run.qps:
        raise RuntimeError(f"dnsperf failed ({result.returncode}): {result.stderr[-500:]}")
    path.unlink()
    return run


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Row:
    server: str
    workload: str
    qps: float
    p50_ms: float
    p99_ms: float
    lost_pct: float
    rss_mb: float = 0.0
    hwm_mb: float = 0.0
    pss_mb: float = 0.0  # every process of the server, shared pages once
    cpu_share: float = 0.0  # of one core, during the max-qps run
    cpu_us: dict[int, float] = field(default_factory=dict)  # rate -> server CPU us per answer
    cpu_lost: dict[int, float] = field(default_factory=dict)  # rate -> lost %
    cpu_qps: dict[int, float] = field(default_factory=dict)  # rate -> qps dnsperf achieved
    p999_ms: float = 0.0
    max_ms: float = 0.0
    note: str = ""

    @property
    def qps_per_core(self) -> float:
        """Max qps divided by the CPU share the server got: fairer on a shared machine."""
        return self.qps / self.cpu_share if self.cpu_share > 0.05 else float("nan")


def check_blocked(port: int, name: str, deadline: float) -> str:
    """Wait until ``name`` is answered 0.0.0.0 (a list still loading is not blocked yet)."""
    answer = None
    while time.monotonic() < deadline:
        answer = dns_query(port, name, 2.0)
        if answer is not None and answer[1] == ["0.0.0.0"]:
            return ""
        time.sleep(0.5)
    return f"NOT blocked (answer {answer})"


def bench_server(
    name: str, tmp: Path, upstream: int, names: Names, args: argparse.Namespace
) -> list[Row]:
    port = free_port()
    work = tmp / name
    work.mkdir()
    cmd = COMMANDS[name](work, port, upstream, args)
    rows: list[Row] = []
    names.restart()
    hits = names.hits
    print(f"# {name}: {' '.join(cmd)}", file=sys.stderr)
    core = args.server_core if not (name == "nestguard" and args.workers > 1) else "0,1"
    started = time.monotonic()
    with running(
        cmd, core=core, log=work / "server.log", port=port, what=name, timeout=300
    ) as proc:
        ready = time.monotonic() - started
        list_note = ""
        if args.list_size:
            list_note = check_blocked(port, list_name(args.list_size - 1), started + 300)
        loaded = time.monotonic() - started
        print(
            f"#   answering after {ready:.1f} s, list in force after {loaded:.1f} s",
            file=sys.stderr,
        )
        warmed = False
        for wname in args.workloads:
            workload = WORKLOADS[wname]
            note = list_note if workload.expect == "listed" or wname == "mixed" else ""
            if workload.warm and not warmed:
                dnsperf(port, [f"{h} A" for h in hits], work / "warm.txt", args)
                warmed = True
            if workload.expect == "blocked":
                note = check_blocked(port, f"b0.{BLOCKED_ZONE}", time.monotonic() + 5)
            big = max(200_000, 80_000 * args.duration)
            lines = workload.lines(f"{name}-max", big, names)
            cpu0, wall0 = tree_cpu_seconds(proc.pid), time.monotonic()
            top = dnsperf(port, lines, work / "q.txt", args)
            cpu_share = (tree_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - wall0)
            paced_for = args.paced_duration
            paced = dnsperf(
                port,
                workload.lines(f"{name}-paced", args.rate * paced_for + 1000, names),
                work / "q.txt",
                args,
                rate=args.rate,
                verbose=True,
                duration=paced_for,
            )
            row = Row(
                name,
                wname,
                top.qps,
                percentile(paced.latencies, 0.50) * 1000,
                percentile(paced.latencies, 0.99) * 1000,
                max(top.lost_pct, paced.lost_pct),
                cpu_share=cpu_share,
                p999_ms=percentile(paced.latencies, 0.999) * 1000,
                max_ms=max(paced.latencies, default=float("nan")) * 1000,
                note=note,
            )
            for rate in args.cpu_rates:
                count = rate * args.cpu_duration + 1000
                lines = workload.lines(f"{name}-cpu{rate}", count, names)
                cpu0 = tree_cpu_seconds(proc.pid)
                fixed = dnsperf(
                    port, lines, work / "q.txt", args, rate=rate, duration=args.cpu_duration
                )
                used = tree_cpu_seconds(proc.pid) - cpu0
                row.cpu_us[rate] = used / max(1, fixed.completed) * 1e6
                row.cpu_lost[rate] = fixed.lost_pct
                row.cpu_qps[rate] = fixed.qps
            rows.append(row)
            print(f"#   {wname}: {top.qps:.0f} qps; paced {paced.rcodes}", file=sys.stderr)
        rss, hwm = memory(proc.pid)
        pss = tree_pss(proc.pid)
        for row in rows:
            row.rss_mb, row.hwm_mb, row.pss_mb = rss / 1024, hwm / 1024, pss / 1024
    return rows


def print_table(rows: list[Row], rates: list[int]) -> None:
    cpu_cols = "".join(f" {'us/q@' + str(r // 1000) + 'k':>9}" for r in rates)
    header = (
        f"{'server':<10} {'workload':<9} {'max qps':>9} {'cpu%':>5} {'qps/core':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'p99.9':>7} {'max ms':>7} {'lost%':>6}{cpu_cols} "
        f"{'RSS MB':>7} {'PSS MB':>7}  note"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        cpu = "".join(f" {r.cpu_us.get(rate, float('nan')):>9.1f}" for rate in rates)
        print(
            f"{r.server:<10} {r.workload:<9} {r.qps:>9.0f} {r.cpu_share * 100:>5.0f} "
            f"{r.qps_per_core:>9.0f} {r.p50_ms:>7.3f} {r.p99_ms:>7.3f} {r.p999_ms:>7.2f} "
            f"{r.max_ms:>7.1f} {r.lost_pct:>6.2f}{cpu} {r.rss_mb:>7.1f} {r.pss_mb:>7.1f}  {r.note}"
        )
    # dnsperf keeps at most 100 queries outstanding: a server slower than the rate is asked
    # (and measured) at its own pace, with nothing lost
    lossy = [
        f"{r.server}/{r.workload}@{rate}: {r.cpu_qps.get(rate, 0):.0f} qps, "
        f"{r.cpu_lost.get(rate, 0):.1f}% lost"
        for r in rows
        for rate in r.cpu_us
        if r.cpu_lost.get(rate, 0) > 1 or r.cpu_qps.get(rate, 0) < 0.9 * rate
    ]
    if lossy:
        print("fixed-rate runs below the rate (the server could not keep up): " + "; ".join(lossy))
    ours = {r.workload: r for r in rows if r.server == "nestguard"}
    peers = [r for r in rows if r.server != "nestguard" and r.workload in ours]
    if ours and peers:
        print()
        print("nestguard / peer   (qps: >1 is better; latency, CPU and memory: <1 is better)")
        for peer in peers:
            mine = ours[peer.workload]
            p50 = _ratio(mine.p50_ms, peer.p50_ms)
            p99 = _ratio(mine.p99_ms, peer.p99_ms)
            cpu = "".join(
                f"  us/q@{r // 1000}k x{_ratio(mine.cpu_us.get(r, 0), peer.cpu_us.get(r, 0))}"
                for r in rates
            )
            print(
                f"  vs {peer.server:<8} {peer.workload:<9} qps x{_ratio(mine.qps, peer.qps)}"
                f"  qps/core x{_ratio(mine.qps_per_core, peer.qps_per_core)}"
                f"  p50 x{p50}  p99 x{p99}{cpu}"
                f"  RSS x{_ratio(mine.rss_mb, peer.rss_mb)}"
                f"  PSS x{_ratio(mine.pss_mb, peer.pss_mb)}"
            )


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def load_names(path: Path, count: int) -> list[str]:
    """Names from a file: one per line, or CSV whose last field is the name (``rank,domain``)."""
    opener = gzip.open if path.suffix == ".gz" else open
    names: list[str] = []
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            field_ = line.strip().split(",")[-1].strip().strip(".")
            if not field_ or field_.startswith("#") or " " in field_ or "." not in field_:
                continue
            if field_.lower() in ("domain", "name"):
                continue
            names.append(field_.lower())
            if len(names) >= count:
                break
    if not names:
        raise SystemExit(f"{path}: no names found")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per max-qps run")
    parser.add_argument(
        "--paced-duration", type=int, default=20, help="seconds of the fixed-rate latency run"
    )
    parser.add_argument("--only", choices=SERVERS, action="append", help="server(s) to run")
    parser.add_argument("--names-file", type=Path, help="hit names (one per line, or CSV)")
    parser.add_argument("--hit-names", type=int, default=10_000, help="size of the hit set")
    parser.add_argument("--rate", type=int, default=2000, help="qps for the latency runs")
    parser.add_argument(
        "--list-size",
        type=int,
        default=100_000,
        help="synthetic blocked names loaded in every server (0: none)",
    )
    parser.add_argument(
        "--cpu-rate",
        type=int,
        action="append",
        dest="cpu_rates",
        help="fixed qps at which to read the server's CPU per query (default 10000 and 20000)",
    )
    parser.add_argument("--cpu-duration", type=int, default=5, help="seconds per CPU run")
    parser.add_argument(
        "--full",
        action="store_true",
        help="the issue's run: --list-size 1000000, 10 s max-qps, 30 s latency, 10 s CPU runs",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="nestguard dns.workers (default 1, pinned to core 0 like the others; more: cores 0,1)",
    )
    parser.add_argument("--blocked", action="store_true", help="add the 100%%-blocked workload")
    parser.add_argument(
        "--workload", action="append", choices=sorted(WORKLOADS), help="run only these"
    )
    parser.add_argument("--no-log-queries", action="store_true", help="nestguard: no activity")
    parser.add_argument(
        "--unknown-client",
        action="store_true",
        help="nestguard: the client is an unknown device (default: a child's device)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs)")
    args = parser.parse_args()
    if args.full:
        args.list_size, args.duration = 1_000_000, 10
        args.paced_duration, args.cpu_duration = 30, 10
    args.cpu_rates = args.cpu_rates or [10_000, 20_000]
    args.server_core, args.load_core = SERVER_CORE, LOAD_CORE
    args.workloads = args.workload or [*DEFAULT_WORKLOADS, *(["blocked"] if args.blocked else [])]
    if not args.list_size and any(
        WORKLOADS[w].expect == "listed" or w == "mixed" for w in args.workloads
    ):
        raise SystemExit("the distinct and mixed workloads need --list-size > 0")
    for tool in (
        "dnsperf",
        "taskset",
        "unbound",
        *(["dnsmasq"] if not args.only or "dnsmasq" in args.only else []),
    ):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores (server on 0, load on 1)")
    hits = (
        load_names(args.names_file, args.hit_names)
        if args.names_file
        else [f"h{i}.{ZONE}" for i in range(args.hit_names)]
    )
    names = Names(hits, args.list_size)
    servers = args.only or list(DEFAULT_SERVERS)
    tmp = Path(tempfile.mkdtemp(prefix="nestguard-bench-"))
    tmp.chmod(0o755)  # dnsmasq reads the list after dropping to user nobody
    rows: list[Row] = []
    load_before = os.getloadavg()
    try:
        if args.list_size:
            write_lists(tmp, args.list_size)
        up_port = free_port()
        up_cmd = upstream_command(tmp, up_port)
        with running(
            up_cmd, core=LOAD_CORE, log=tmp / "upstream.log", port=up_port, what="upstream unbound"
        ):
            for name in servers:
                try:
                    rows += bench_server(name, tmp, up_port, names, args)
                except RuntimeError as e:
                    print(f"# {name} failed: {e}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"# logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    who = "an unknown device" if args.unknown_client else "a child's device"
    print(
        f"\n{CLIENTS} clients ({who}, activity log "
        f"{'off' if args.no_log_queries else 'on'}); max qps over {args.duration} s, latency "
        f"at {args.rate} qps over {args.paced_duration} s, CPU per answer at "
        f"{', '.join(str(r) for r in args.cpu_rates)} qps over {args.cpu_duration} s; "
        f"list {args.list_size} names, hit set {len(hits)} names; servers on core "
        f"{SERVER_CORE}, dnsperf + upstream (unbound local-data) on core {LOAD_CORE}"
        + (f"; nestguard dns.workers {args.workers} on cores 0,1" if args.workers > 1 else "")
    )
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print_table(rows, args.cpu_rates)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
