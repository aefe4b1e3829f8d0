"""Shared fixtures: a nestguard resolver started in-process on ephemeral loopback ports.

    async def test_x(nestguard_server, fake_upstream, make_config):
        running = await nestguard_server(make_config(fake_upstream))
        host, port = running.addresses[0]

`nestguard_server(config, services=None)` opens `resolver.assembly.open_resolver` (UDP+TCP on every
`config.dns.listen` address, port 0 = ephemeral, same port for UDP and TCP) and closes it at the
end of the test. `make_config(upstream, **dns_fields)` builds a `resolver.config.Config` listening
on 127.0.0.1:0 in front of the given upstream(s); nested sections via `cache=`, `rate_limit=`,
`policy=`. `FakeClock` / `fake_clock` drive cache TTLs and rate limits without sleeping.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from resolver.assembly import ResolverServices, Running, open_resolver
from resolver.config import CacheConfig, Config, DnsConfig, PolicyConfig, RateLimitConfig
from tests.support.upstream import FakeUpstream

LOOPBACK_NETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as up:
        yield up


def build_config(
    upstreams: FakeUpstream | list[FakeUpstream] | list[tuple[str, int]] | tuple[str, int],
    *,
    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", 0),),
    cache: dict[str, Any] | None = None,
    rate_limit: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
    **dns: Any,
) -> Config:
    if isinstance(upstreams, FakeUpstream):
        addrs: list[tuple[str, int]] = [upstreams.address]
    elif isinstance(upstreams, tuple):
        addrs = [upstreams]
    else:
        addrs = [u.address if isinstance(u, FakeUpstream) else u for u in upstreams]
    dns.setdefault("allow_networks", LOOPBACK_NETS)
    dns.setdefault("timeout", 1.0)
    return Config(
        dns=DnsConfig(
            listen=listen,
            upstreams=tuple(addrs),
            cache=CacheConfig(**(cache or {})),
            rate_limit=RateLimitConfig(**(rate_limit or {"queries": 100_000})),
            **dns,
        ),
        policy=PolicyConfig(timezone="UTC", **(policy or {})),
    )


@pytest.fixture
def make_config() -> Callable[..., Config]:
    return build_config


@pytest.fixture
async def nestguard_server() -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    async with AsyncExitStack() as stack:

        async def start(config: Config, services: ResolverServices | None = None) -> Running:
            services = services or ResolverServices(arp_path=None)
            return await stack.enter_async_context(open_resolver(config, services))

        yield start


def replace_dns(config: Config, **fields: Any) -> Config:
    return dataclasses.replace(config, dns=dataclasses.replace(config.dns, **fields))
