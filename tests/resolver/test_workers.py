"""`dns.workers: 2` as a real `nestguard serve`: clients spread over worker processes on one
port (SO_REUSEPORT), a parent's change reaches every worker, /metrics adds every worker up, a
killed worker comes back while the other keeps answering, SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from datetime import date
from pathlib import Path

import aiohttp
import dns.message
import dns.rcode
import pytest

from policy.model import Child
from policy.store import Store

REPO = Path(__file__).resolve().parents[2]
CLIENT_IPS = [f"127.0.0.{i}" for i in range(2, 10)]
SOCKETS_PER_IP = 4  # 32 (address, port) pairs: all on one worker by chance is 2**-31

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clients:
    """UDP sockets kept open from several loopback addresses: each (address, port) is one
    client the kernel hashes to one worker."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = 0
        self.socks: list[socket.socket] = []
        for ip in CLIENT_IPS:
            for _ in range(SOCKETS_PER_IP):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((ip, 0))
                s.setblocking(False)
                self.socks.append(s)

    def close(self) -> None:
        for s in self.socks:
            s.close()

    async def ask(self, sock: socket.socket, name: str, timeout: float = 1.0) -> list[str] | None:
        """The A addresses answered (empty for NXDOMAIN/no data), or None on timeout."""
        loop = asyncio.get_running_loop()
        q = dns.message.make_query(name, "A")
        await loop.sock_sendto(sock, q.to_wire(), ("127.0.0.1", self.port))
        self.sent += 1
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 4096), left)
            except TimeoutError:
                return None
            r = dns.message.from_wire(data)
            if r.id == q.id:
                return [rr.address for rrset in r.answer for rr in rrset if rr.rdtype == 1]
        return None

    async def ask_all(self, name: str) -> list[list[str] | None]:
        return list(await asyncio.gather(*(self.ask(s, name) for s in self.socks)))


async def _metrics(web_port: int) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{web_port}/metrics") as resp,
    ):
        assert resp.status == 200
        return await resp.text()


def _samples(text: str, family: str) -> dict[str, float]:
    out = {}
    for m in re.finditer(rf"^{family}(\{{[^}}]*\}})? (\S+)$", text, re.M):
        out[m.group(1) or ""] = float(m.group(2))
    return out


def _listeners(server_pid: int, port: int) -> set[int]:
    """Pids of the server's processes holding a UDP socket on `port` (the DNS workers)."""
    inodes = set()
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    todo = [server_pid]
    while todo:
        pid = todo.pop()
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if fd.readlink().as_posix() in inodes:
                        pids.add(pid)
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return pids


async def _until(check, what: str, timeout: float = 30.0) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.1)


async def _serve(
    tmp_path: Path, fake_upstream, more_yaml: str = ""  # type: ignore[no-untyped-def]
) -> tuple[Store, Child, int, int, asyncio.subprocess.Process]:
    """`nestguard serve` with two workers, every client address a device of one child:
    (store, child, DNS port, web port, the server process)."""
    dns_port, web_port = _free_port(), _free_port(socket.SOCK_STREAM)
    up_host, up_port = fake_upstream.address
    data = tmp_path / "data"
    data.mkdir()
    store = Store.open(data / "nestguard.sqlite")
    kid = store.add_child("Kid", date(date.today().year - 10, 1, 1))
    for ip in CLIENT_IPS:
        store.upsert_device(ip, owner=kid.id)
    config = tmp_path / "nestguard.yaml"
    config.write_text(
        f"data_dir: {data}\n"
        "log_level: info\n"
        "dns:\n"
        "  workers: 2\n"
        f'  listen: ["127.0.0.1:{dns_port}"]\n'
        f'  upstreams: ["{up_host}:{up_port}"]\n'
        "  rate_limit: {queries: 100000, per_seconds: 1}\n"
        "web:\n"
        f'  listen: "127.0.0.1:{web_port}"\n' + more_yaml
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "resolver.main", "serve", "--config", str(config),
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return store, kid, dns_port, web_port, proc


async def test_two_workers_share_policy_metrics_and_restart(tmp_path, fake_upstream) -> None:
    fake_upstream.add("games.example", "A", "192.0.2.7")
    store, kid, dns_port, web_port, proc = await _serve(tmp_path, fake_upstream)
    clients = Clients(dns_port)
    try:
        # every client is answered (by whichever worker the kernel picked for it)
        async def all_allowed() -> bool:
            return all(a == ["192.0.2.7"] for a in await clients.ask_all("games.example"))

        await _until(all_allowed, "every client answered", timeout=60)

        # /metrics adds up every worker: once the start-up queries are counted (the figure
        # holds still), 3 more rounds from every client add exactly that many
        seen: list[float] = []

        async def total() -> float:
            text = await _metrics(web_port)
            return sum(_samples(text, "nestguard_queries_total").values())

        async def settled() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                seen.append(await total())
                await asyncio.sleep(1.0)
                seen.append(await total())
                return seen[-1] == seen[-2]
            return False

        await _until(settled, "/metrics holds still")
        before = seen[-1]
        for _ in range(3):
            assert await all_allowed()
        sent = 3 * len(clients.socks)

        async def added_up() -> bool:
            text = await _metrics(web_port)
            per_worker = _samples(text, "nestguard_worker_queries_total")
            seen.append(await total())
            # both workers answered some: the clients did land on different workers
            return seen[-1] == before + sent and len(per_worker) == 2 and all(per_worker.values())

        await _until(added_up, f"/metrics counts the {sent} queries of both workers ({seen})")
        workers = _listeners(proc.pid, dns_port)
        assert len(workers) == 2

        # a parent's change (written to the store, as the web UI does) reaches both workers,
        # although each has the name cached and its verdict memoised
        store.add_rule(kid.id, "games.example", "deny")

        async def all_blocked() -> bool:
            return all(a == ["0.0.0.0"] for a in await clients.ask_all("games.example"))

        took = await _until(all_blocked, "the deny rule in force for every client", timeout=10)
        print(f"deny rule in force on every worker after {took:.2f} s")

        # a killed worker: the other keeps every client answered, and it comes back
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)

        async def one_left() -> bool:
            # the kernel releases a killed process's socket a moment after the process is gone
            return (
                _listeners(proc.pid, dns_port) == workers - {victim} and _udp_sockets(dns_port) == 1
            )

        await _until(one_left, "the killed worker's socket closed", timeout=10)
        answers = await clients.ask_all("games.example")
        assert all(a == ["0.0.0.0"] for a in answers), answers

        async def back() -> bool:
            now = _listeners(proc.pid, dns_port)
            return len(now) == 2 and victim not in now

        await _until(back, "a new worker in the killed one's place", timeout=60)

        async def restarted() -> bool:
            text = await _metrics(web_port)
            return _samples(text, "nestguard_worker_restarts_total") == {"": 1.0} and (
                _samples(text, "nestguard_workers") == {"": 2.0}
            )

        await _until(restarted, "/metrics counts the restart and two workers")
        assert all(a == ["0.0.0.0"] for a in await clients.ask_all("games.example"))

        # SIGTERM stops the main process and drains every worker
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in _listeners(proc.pid, dns_port))
        assert _udp_sockets(dns_port) == 0
    finally:
        clients.close()
        store.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _udp_sockets(port: int) -> int:
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return sum(1 for line in lines if int(line.split()[1].split(":")[1], 16) == port)


async def _worker_of(clients: Clients, web_port: int, sock: socket.socket, name: str) -> str:
    """Which worker answers this client: the one whose query count moves (reports every
    0.5 s; one query from this socket and none from the others)."""

    async def per_worker() -> dict[str, float]:
        return _samples(await _metrics(web_port), "nestguard_worker_queries_total")

    async def still() -> bool:
        first = await per_worker()
        await asyncio.sleep(1.2)
        return await per_worker() == first

    await _until(still, "the per-worker counts hold still")
    before = await per_worker()
    assert await clients.ask(sock, name) is not None
    moved: list[str] = []

    async def counted() -> bool:
        after = await per_worker()
        moved[:] = [w for w, n in after.items() if n > before.get(w, 0)]
        return len(moved) == 1

    await _until(counted, "one worker counts the query")
    return moved[0]


@pytest.mark.slow
async def test_budgets_and_alerts_count_every_workers_queries(tmp_path, fake_upstream) -> None:
    """The main process counts a child's daily budget over the queries of every worker (a
    minute on one worker, the next on the other: two minutes, the budget spent), and the
    parents hear of a bypass attempt that a worker blocked."""
    from tests.support.smtp import smtp_server

    for name in ("www.youtube.com", "restrictmoderate.youtube.com", "i.ytimg.com"):
        fake_upstream.add(name, "A", "192.0.2.7", ttl=300)
    with smtp_server() as (box, smtp_port):
        store, kid, dns_port, web_port, proc = await _serve(
            tmp_path,
            fake_upstream,
            "alerts:\n"
            "  allow_loopback: true\n"
            "  email:\n"
            f"    host: 127.0.0.1\n    port: {smtp_port}\n    security: none\n"
            "    from: nestguard@home.example\n    to: [parent@home.example]\n"
            "    events: [bypass]\n",
        )
        store.set_budget(kid.id, "youtube", school_days=2, weekends=2)
        clients = Clients(dns_port)
        try:
            async def answered() -> bool:
                return await clients.ask(clients.socks[0], "example.example") is not None

            await _until(answered, "the workers answer", timeout=60)

            async def web_up() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    return bool(await _metrics(web_port))
                return False

            await _until(web_up, "/metrics answers")
            # one client of each worker
            mine: dict[str, socket.socket] = {}
            for sock in clients.socks:
                mine.setdefault(await _worker_of(clients, web_port, sock, "x.example"), sock)
                if len(mine) == 2:
                    break
            assert len(mine) == 2, "the clients all landed on one worker"
            first, second = mine.values()

            # a bypass attempt, blocked by the worker that got it, reaches the parents
            assert await clients.ask(second, "mask.icloud.com") in ([], ["0.0.0.0"])

            async def mailed() -> bool:
                return any("mask.icloud.com" in str(m) for m in box.messages)

            await _until(mailed, "the parents' e-mail about the bypass attempt")

            # minute 1 of YouTube on one worker; minute 2 on the other: the budget is spent
            if time.time() % 60 > 55:
                await asyncio.sleep(60 - time.time() % 60 + 0.5)
            assert await clients.ask(first, "www.youtube.com") == ["192.0.2.7"]
            await asyncio.sleep(60 - time.time() % 60 + 0.5)  # the next wall-clock minute
            assert await clients.ask(second, "www.youtube.com") == ["192.0.2.7"]

            async def blocked() -> bool:
                return all(a == ["0.0.0.0"] for a in await clients.ask_all("www.youtube.com"))

            took = await _until(blocked, "the spent budget in force for every client")
            print(f"budget spent and in force on every worker after {took:.2f} s")
            day = date.today()
            usage = {u.key: u.minutes for u in store.budget_usage(day) if u.child_id == kid.id}
            assert usage.get("youtube") == 2
        finally:
            clients.close()
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 30)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            store.close()
