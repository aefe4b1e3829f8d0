"""Metrics: counted per outcome and type, exposed on /metrics, never labelled by name or IP."""

from __future__ import annotations

import asyncio
import re

from prometheus_client import generate_latest

from resolver.metrics import Metrics, ResolverCollector
from resolver.metrics_app import create_app
from resolver.observe import BatchQueue
from tests.resolver.dnsclient import ask, header, raw_udp


def _value(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{name}{{{want}}} (\S+)$" if labels else rf"^{name} (\S+)$"
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_outcomes_counted_and_exposed(
    nestguard_server, fake_upstream, make_config, aiohttp_client
):
    fake_upstream.add("www.example", "A", "192.0.2.1")
    running = await nestguard_server(make_config(fake_upstream))
    addr = running.addresses[0]
    client = await aiohttp_client(create_app())
    before = await (await client.get("/metrics")).text()
    await ask(addr, "www.example")
    await ask(addr, "www.example")
    await ask(addr, "printer", "AAAA")
    await ask(addr, "x.example", "TYPE999")
    await raw_udp(addr, header(qd=0))
    resp = await client.get("/metrics")
    assert resp.status == 200
    after = await resp.text()

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("nestguard_queries_total", outcome="answered", qtype="A") == 1
    assert delta("nestguard_queries_total", outcome="cached", qtype="A") == 1
    assert delta("nestguard_queries_total", outcome="local", qtype="AAAA") == 1
    assert delta("nestguard_queries_total", outcome="answered", qtype="OTHER") == 1
    assert delta("nestguard_queries_total", outcome="formerr", qtype="OTHER") == 1
    assert delta("nestguard_cache_hits_total") >= 1
    assert delta("nestguard_query_duration_seconds_count", source="cache") == 1
    assert _value(after, "nestguard_cache_entries") >= 2
    assert "www.example" not in after
    # only the upstream metrics name an address (the upstream's own, by design)
    client_lines = [ln for ln in after.splitlines() if "nestguard_upstream" not in ln]
    assert not any("127.0.0.1" in ln for ln in client_lines)
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] in ("ok", "degraded")


def test_collector_families_and_histogram():
    m = Metrics()
    m.count("blocked", 65)
    m.observe("policy", 0.0003)
    m.observe("policy", 3.0)
    m.set_degraded("policy-fallback")
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(ResolverCollector(m))
    text = generate_latest(registry).decode()
    assert 'nestguard_queries_total{outcome="blocked",qtype="HTTPS"} 1.0' in text
    assert 'nestguard_query_duration_seconds_bucket{le="0.0005",source="policy"} 1.0' in text
    assert 'nestguard_query_duration_seconds_bucket{le="+Inf",source="policy"} 2.0' in text
    assert "nestguard_degraded 1.0" in text
    m.set_degraded("policy-fallback", False)
    assert "nestguard_degraded 0.0" in generate_latest(registry).decode()


async def test_activity_queue_drops_and_counts_when_full():
    got: list[list[int]] = []

    async def sink(batch: list[int]) -> None:
        got.append(batch)

    dropped: list[int] = []
    queue: BatchQueue[int, int] = BatchQueue(sink, lambda x: x * 10, max_items=3, batch=100)
    queue.on_drop = lambda: dropped.append(1)
    for i in range(5):
        queue.put(i)
    assert queue.dropped == 2 and len(dropped) == 2
    await queue.flush()
    assert got == [[0, 10, 20]]


async def test_activity_queue_survives_a_failing_sink(caplog):
    calls = 0

    async def sink(batch: list[int]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("db locked")

    queue: BatchQueue[int, int] = BatchQueue(sink, lambda x: x, interval=0.05)
    async with queue.running():
        queue.put(1)
        for _ in range(40):
            if calls:
                break
            await asyncio.sleep(0.05)
        queue.put(2)
    assert calls >= 2
    assert "sink failed" in caplog.text
