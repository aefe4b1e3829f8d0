"""The DNS side assembled from a `Config`: the one place the query path is put together.

The stage order is fixed here (STYLE.md principle 1)::

    Observe -> Acl -> RateLimit -> LocalNames -> Identify -> Enforce -> [BudgetMeter] -> Cache
    -> [Forward]

Observe first so it sees every reply; the guards before any work; local names before policy so
they never reach an upstream; Enforce above Cache so policy changes need no flush and cached
answers get the CNAME-cloaking check too. In front of the chain, the server replays the chain's
own answer to a repeat of a UDP packet from the same client within the second (resolver/replay.py).

Wiring points for the rest of nestguard are the fields of `ResolverServices` (live policy,
decider, activity and sightings sinks, web app factory); the composition root
(resolver/root.py) fills them in. `open_resolver(config, services)` is what `run()`, the DNS
workers and the tests use. Every setting comes from the typed `Config`; its dataclasses hold
the defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
import zoneinfo
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from policy.live import Live
from policy.model import Policy, Profile
from resolver.budgets import BudgetMeter, BudgetSink
from resolver.cache import Cache, CacheSettings, Forward, Upstream
from resolver.config import Config, HostPort
from resolver.enforce import BlockSettings, Decider, Enforce, WallClock
from resolver.forward import UpstreamClient
from resolver.gcpace import GcPacer
from resolver.guard import Acl, RateLimit
from resolver.identify import ARP_PATH, Identify, Neighbours
from resolver.localnames import LocalNames
from resolver.metrics import METRICS, Metrics
from resolver.metrics_app import create_app as metrics_app
from resolver.observe import (
    ActivitySink,
    BatchQueue,
    Observe,
    Sightings,
    SightingSink,
    event_of,
    sighting_of,
)
from resolver.pipeline import Pipeline, chain
from resolver.replay import Replay
from resolver.server import DnsServer, ServerSettings

log = logging.getLogger(__name__)


def default_policy() -> Policy:
    """The policy when none is given (tests, a bare resolver): everyone unknown, nothing
    restricted."""
    return Policy(
        revision=0,
        devices=(),
        profiles={},
        adults_profile=Profile(None, mode="adults"),
        default_profile=Profile(None),
    )


@dataclass
class ResolverServices:
    """What the resolver needs from the rest of nestguard (all optional, for tests too).

    live_policy: the policy snapshot slot (policy/reload.py swaps it).
    decider: (profile, canonical qname, qtype, now) -> Verdict; None allows everything.
    activity_sink / sightings_sink: async callables taking a batch (the store).
    upstream: anything with UpstreamClient.query; None -> an UpstreamClient on config.dns.upstreams.
    web_app: factory for the HTTP app on config.web.listen; None -> resolver.metrics_app.
    clock: monotonic seconds for cache TTLs, rate limits (tests inject a fake).
    now: wall-clock datetime for the decider (default: config.policy.timezone, per second).
    arp_path: the neighbour table (None: no MAC lookup).
    """

    live_policy: Live[Policy] | None = None
    decider: Decider | None = None
    activity_sink: ActivitySink | None = None
    sightings_sink: SightingSink | None = None
    upstream: Upstream | None = None
    web_app: Callable[[], web.Application] | None = None
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] | None = None
    arp_path: Path | None = ARP_PATH
    block_mode: Callable[[], str] | None = None  # the parents' block answer choice (web UI)
    live_index: Live[Any] | None = None  # the lists the decider reads (known: replay longer)
    budgets: BudgetSink | None = None  # daily time budgets are counted


@dataclass
class Running:
    addresses: list[tuple[str, int]]
    server: DnsServer
    cache: Cache
    pipeline: Pipeline
    metrics: Metrics
    live_policy: Live[Policy]
    activity: BatchQueue[Any, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def cache_settings(config: Config) -> CacheSettings:
    c = config.dns.cache
    return CacheSettings(
        max_entries=c.max_entries,
        max_bytes=c.max_bytes,
        min_ttl=c.min_ttl,
        max_ttl=c.max_ttl,
        negative_max_ttl=c.negative_max_ttl,
        stale_window=float(c.stale_window),
        rebind_allow=frozenset(c.rebind_allow),
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def block_settings(config: Config) -> BlockSettings:
    p = config.policy
    return BlockSettings(
        answer=p.block_answer,
        ttl=p.block_ttl,
        blockpage_ipv4=_str_or_none(p.blockpage_ipv4),
        blockpage_ipv6=_str_or_none(p.blockpage_ipv6),
    )


def server_settings(config: Config) -> ServerSettings:
    dns = config.dns
    return ServerSettings(
        tcp_idle=float(dns.tcp_idle),
        tcp_max_clients=dns.tcp_max_clients,
        trusted_mac_sources=tuple(dns.trusted_mac_sources),
        tcp_max_per_client=dns.tcp_max_per_client,
        reuse_port=dns.workers > 1,
        udp_batch=dns.udp_batch,
    )


def household_now(config: Config) -> Callable[[], datetime]:
    name = config.policy.timezone
    tz = None
    if name:
        try:
            tz = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            log.warning("unknown timezone %r; using the system's", name)
    return WallClock(tz)


def rate_limit(config: Config, clock: Callable[[], float]) -> RateLimit:
    """The per-client rate limit stage. One instance serves the chain and the replay in front
    of it (a replayed answer spends the client's budget too)."""
    rate = config.dns.rate_limit
    return RateLimit(queries=rate.queries, per_seconds=float(rate.per_seconds), clock=clock)


def build_pipeline(
    config: Config,
    services: ResolverServices,
    *,
    cache: Cache,
    forward: Forward,
    rate: RateLimit,
    live_policy: Live[Policy],
    activity: BatchQueue[Any, Any] | None,
    sightings: Sightings | None,
    metrics: Metrics,
) -> Pipeline:
    """The stage chain. The order is fixed here, in code."""
    dns = config.dns
    return chain(
        [
            Observe(
                metrics,
                activity=activity,
                sightings=sightings,
                log_queries=config.policy.log_queries,
            ),
            Acl(dns.allow_networks),
            rate,
            LocalNames(lan_domains=dns.local_domains, router=dns.router is not None),
            Identify(
                live_policy,
                neighbours=Neighbours(services.arp_path) if services.arp_path else None,
            ),
            Enforce(
                services.decider,
                block=block_settings(config),
                now=services.now or household_now(config),
                mode=services.block_mode,
                index=services.live_index,
            ),
            *([BudgetMeter(services.budgets)] if services.budgets is not None else []),
            cache,
        ],
        last=forward,
    )


def upstream_client(
    config: Config, addresses: Sequence[HostPort], metric_name: str = "upstream"
) -> UpstreamClient:
    dns = config.dns
    return UpstreamClient(
        list(addresses),
        timeout=float(dns.timeout),
        max_inflight=dns.max_inflight,
        metric_name=metric_name,
    )


@contextlib.asynccontextmanager
async def open_resolver(
    config: Config, services: ResolverServices | None = None
) -> AsyncIterator[Running]:
    """Open the whole DNS side; on exit: stop listening, drain, cancel, flush, close."""
    services = services or ResolverServices()
    dns = config.dns
    metrics = METRICS
    async with AsyncExitStack() as stack:
        upstream = services.upstream
        if upstream is None:
            forwarder = upstream_client(config, dns.upstreams)
            await forwarder.start()
            stack.push_async_callback(forwarder.close)
            upstream = forwarder
        router = None
        if dns.router is not None:
            router = upstream_client(config, [dns.router], metric_name="router")
            await router.start()
            stack.push_async_callback(router.close)
        activity = None
        if services.activity_sink is not None:
            activity = BatchQueue(services.activity_sink, event_of, name="activity")

            def dropped() -> None:
                metrics.activity_dropped += 1

            def lost(n: int) -> None:  # the store cannot save (a full disk): parents are told
                metrics.activity_dropped += n
                metrics.set_degraded("activity_log")

            activity.on_drop = dropped
            activity.on_lost = lost
            activity.on_recovered = lambda: metrics.set_degraded("activity_log", False)
            await stack.enter_async_context(activity.running())
        sightings = None
        if services.sightings_sink is not None:
            squeue = BatchQueue(services.sightings_sink, sighting_of, name="sightings")

            def sightings_lost(n: int) -> None:
                metrics.sightings_dropped += n

            squeue.on_lost = sightings_lost
            await stack.enter_async_context(squeue.running())
            sightings = Sightings(squeue)
        cache = Cache(cache_settings(config), clock=services.clock)
        metrics.cache = cache
        forward = Forward(
            upstream,
            cache,
            serve_stale_after=float(dns.cache.serve_stale_after),
            max_inflight=dns.max_inflight,
            router=router,
        )
        stack.push_async_callback(forward.close)
        live_policy = services.live_policy or Live(default_policy())
        rate = rate_limit(config, services.clock)
        pipeline = build_pipeline(
            config,
            services,
            cache=cache,
            forward=forward,
            rate=rate,
            live_policy=live_policy,
            activity=activity,
            sightings=sightings,
            metrics=metrics,
        )
        replay = None
        if services.now is None:  # a fake wall clock in tests would outrun the per-second memo
            replay = Replay(
                metrics=metrics,
                clock=services.clock,
                live=live_policy,
                index=services.live_index,
                mode=services.block_mode,
                cache=cache,
                rate=rate,
            )
        server = DnsServer(
            pipeline, metrics=metrics, settings=server_settings(config), replay=replay
        )
        stack.push_async_callback(server.drain, 2.0)
        stack.callback(server.stop_listening)
        addresses = await server.start(list(dns.listen))
        yield Running(addresses, server, cache, pipeline, metrics, live_policy, activity)


async def run(config: Config, services: ResolverServices | None = None) -> None:
    """Serve until SIGTERM/SIGINT."""
    services = services or ResolverServices()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(open_resolver(config, services))
        await start_web(stack, config, services.web_app)
        # The start-up heap (lists, the rater's lexicon, modules) lives as long as the process,
        # and so do cache and memo entries for minutes: keep them out of the collector's scans
        # (resolver/gcpace.py). Measured: process() on a hit 22 -> 15 us with a household
        # loaded; gen-2 pauses of 30-110 ms every few seconds under new names gone.
        pacer = GcPacer()
        pacer.start()
        stack.callback(pacer.stop)
        await stop.wait()
        log.info("stopping")
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


class _QuietBadRequests(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, minus the ERROR and traceback it logs for every malformed
    request (an HTTP/1.1 request without Host, garbage on the port): anyone on the LAN can
    send those, so they get one debug line; the client still gets its 400."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            peer = args[0] if args else "?"
            self.logger.debug("bad HTTP request from %s: %s", peer, exc.message)
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kw)


def web_runner(app: web.Application) -> web.AppRunner:
    """The runner for the web UI (or the metrics-only app)."""
    return web.AppRunner(
        app, access_log=None, logger=_QuietBadRequests(logging.getLogger("aiohttp.server"), {})
    )


async def start_web(
    stack: AsyncExitStack, config: Config, factory: Callable[[], web.Application] | None
) -> None:
    """The HTTP app (web UI, or /metrics alone) on web.listen until `stack` closes."""
    app = (factory or metrics_app)()
    runner = web_runner(app)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    host, port = config.web.listen
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("web on http://%s:%d/", host, port)


