"""`nestguard serve` as a real process, and the shutdown order of open_resolver."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import dns.exception
import pytest

from policy.model import QueryEvent
from resolver.assembly import ResolverServices, open_resolver
from resolver.cli import build_parser
from tests.resolver.dnsclient import ask

REPO = Path(__file__).resolve().parents[2]


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_parser_has_serve():
    args = build_parser().parse_args(["serve", "--config", "x.yaml"])
    assert args.command == "serve" and args.config == Path("x.yaml")
    with pytest.raises(SystemExit):
        build_parser().parse_args([])


async def _spawn(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "resolver.main",
        "serve",
        "--config",
        str(config),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_serve_answers_serves_metrics_and_stops_on_sigterm(tmp_path, fake_upstream):
    fake_upstream.add("www.example", "A", "192.0.2.1")
    dns_port, web_port = _free_port(), _free_port(socket.SOCK_STREAM)
    up_host, up_port = fake_upstream.address
    config = tmp_path / "nestguard.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "dns:\n"
        f'  listen: ["127.0.0.1:{dns_port}"]\n'
        f'  upstreams: ["{up_host}:{up_port}"]\n'
        "web:\n"
        f'  listen: "127.0.0.1:{web_port}"\n'
    )
    proc = await _spawn(config)
    try:
        reply = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and reply is None:
            try:
                reply = await ask(("127.0.0.1", dns_port), "www.example", timeout=0.5)
            except (dns.exception.Timeout, OSError):
                await asyncio.sleep(0.2)
        assert reply is not None, "nestguard serve did not answer"
        assert reply.answer[0][0].address == "192.0.2.1"
        metrics = None
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline and metrics is None:
                try:  # the web app starts after the DNS listeners
                    async with http.get(f"http://127.0.0.1:{web_port}/metrics") as resp:
                        assert resp.status == 200
                        metrics = await resp.text()
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.2)
        assert metrics is not None and "nestguard_queries_total" in metrics
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
        assert code == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_bad_config_exits_2_with_a_message(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("dns:\n  listen: nonsense\n")
    proc = await _spawn(config)
    _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert "listen" in err.decode()


async def test_shutdown_flushes_the_activity_queue(fake_upstream, make_config):
    fake_upstream.add("www.example", "A", "192.0.2.1")
    events: list[QueryEvent] = []

    async def sink(batch: list[QueryEvent]) -> None:
        events.extend(batch)

    async with open_resolver(
        make_config(fake_upstream), ResolverServices(arp_path=None, activity_sink=sink)
    ) as running:
        await ask(running.addresses[0], "www.example")
        assert events == []  # batched, not yet flushed
    assert [e.qname for e in events] == ["www.example"]
