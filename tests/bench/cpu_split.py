"""Where a server's CPU goes per answer: user and system time of each thread, at a fixed rate.

The same servers, upstream, lists and workloads as bench_resolver.py (this script imports it),
one server and one workload at a time:

    .venv/bin/python tests/bench/cpu_split.py --workload hits --rate 10000
    .venv/bin/python tests/bench/cpu_split.py --server dnsmasq --workload hits --rate 10000
    .venv/bin/python tests/bench/cpu_split.py --workload distinct --max

Prints the answers per second, the server's CPU per answer, and per thread (from
/proc/PID/task/TID/stat) user and system µs per answer. It is how issue 12's third round found
that a cache hit at 10k qps cost 55.7 µs of *user* CPU in the main thread (not the kernel),
against 5 µs for process() in a warm loop. Needs what bench_resolver.py needs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_resolver as bench  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def thread_times(pid: int) -> dict[tuple[str, str], tuple[float, float]]:
    """(tid, name) -> (user s, system s) of each thread of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            continue  # the thread ended
        fields = stat.rsplit(")", 1)[1].split()
        out[(tid, name)] = (int(fields[11]) / TICK, int(fields[12]) / TICK)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=bench.SERVERS, default="nestguard")
    parser.add_argument("--workload", choices=sorted(bench.WORKLOADS), default="hits")
    parser.add_argument("--rate", type=int, default=10_000, help="fixed qps")
    parser.add_argument("--max", action="store_true", help="as fast as it goes instead")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--list-size", type=int, default=100_000)
    parser.add_argument("--hit-names", type=int, default=10_000)
    a = parser.parse_args()
    args = argparse.Namespace(
        list_size=a.list_size, workers=1, no_log_queries=False, unknown_client=False,
        server_core=bench.SERVER_CORE, load_core=bench.LOAD_CORE, duration=a.seconds,
    )  # fmt: skip
    names = bench.Names([f"h{i}.{bench.ZONE}" for i in range(a.hit_names)], a.list_size)
    tmp = Path(tempfile.mkdtemp(prefix="nestguard-cpu-"))
    tmp.chmod(0o755)  # dnsmasq reads the list as user nobody
    try:
        if a.list_size:
            bench.write_lists(tmp, a.list_size)
        up = bench.free_port()
        with bench.running(
            bench.upstream_command(tmp, up), core=bench.LOAD_CORE, log=tmp / "up.log", port=up,
            what="upstream unbound",
        ):  # fmt: skip
            port = bench.free_port()
            work = tmp / a.server
            work.mkdir()
            cmd = bench.COMMANDS[a.server](work, port, up, args)
            with bench.running(
                cmd, core=bench.SERVER_CORE, log=work / "server.log", port=port, what=a.server,
                timeout=300,
            ) as proc:  # fmt: skip
                if a.list_size and a.server != "echo":  # the list in force, not compiling
                    last = bench.list_name(a.list_size - 1)
                    bench.check_blocked(port, last, time.monotonic() + 300)
                workload = bench.WORKLOADS[a.workload]
                if workload.warm:
                    bench.dnsperf(port, [f"{h} A" for h in names.hits], work / "warm.txt", args)
                count = 400_000 if a.max else a.rate * a.seconds + 1000
                lines = workload.lines("split", count, names)
                before, cpu0 = thread_times(proc.pid), bench.tree_cpu_seconds(proc.pid)
                started = time.monotonic()
                result = bench.dnsperf(
                    port, lines, work / "q.txt", args,
                    rate=None if a.max else a.rate, duration=None if a.max else a.seconds,
                )  # fmt: skip
                wall = time.monotonic() - started
                cpu, after = bench.tree_cpu_seconds(proc.pid) - cpu0, thread_times(proc.pid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = max(1, result.completed)
    print(
        f"{a.server} {a.workload}: {result.qps:.0f} answers/s, {result.lost_pct:.2f}% lost; "
        f"CPU {cpu / n * 1e6:.1f} µs per answer ({cpu / wall:.2f} of a core)"
    )
    for key in sorted(after):
        user0, sys0 = before.get(key, (0.0, 0.0))
        user, system = after[key][0] - user0, after[key][1] - sys0
        if user + system > 0.005:
            print(
                f"  thread {key[1]:<16} user {user / n * 1e6:6.1f}  system "
                f"{system / n * 1e6:6.1f} µs per answer"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
