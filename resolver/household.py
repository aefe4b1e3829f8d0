"""Everything behind the DNS path, opened once: store, policy, lists, rater and web UI.

`open_household(config)` is used by `nestguard serve` and by the CLI commands that must decide
exactly as the running server would (`explain`, `lists check`). It yields a `Household` whose
`resolver_services()` plugs into `resolver.main.open_resolver`/`run`.

Start-up never runs unfiltered (RELIABILITY P6): a corrupt store gives the strict default
profile and sets the degraded gauge; lists load from the last good copies on disk before any
network is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from blocklists.catalogue import load_catalogue
from blocklists.feed import Feed
from blocklists.index import CategoryIndex, SourceInfo
from blocklists.names import canonical_name
from blocklists.rater import NameRater, RatedIndex, load_popular
from blocklists.sync import TRUSTED, FeedSync, UrlRules
from policy.decide import decide
from policy.live import Live
from policy.model import Category, Index, Policy, Profile, QueryEvent, Verdict
from policy.reload import ReloadStatus, open_policy, reload_loop
from policy.store import FeedStatus, Store
from resolver.config import Config
from resolver.metrics import METRICS
from resolver.observe import Sighting

log = logging.getLogger(__name__)

DB_NAME = "nestguard.sqlite"
RELOAD_EVERY = 0.5  # a CLI write (no nudge) is in force within a second; one cheap SELECT
ADDED_FEEDS_KEY = "added_feeds"
BLOCK_MODES = ("null", "nxdomain", "blockpage")  # blockpage only with its address configured


class MemoryStatus:
    """Feed status when the store is unusable (P6): kept in memory for this run."""

    def __init__(self) -> None:
        self._by_name: dict[str, FeedStatus] = {}

    def save_feed_status(self, status: FeedStatus) -> None:
        self._by_name[status.name] = status

    def feed_status(self, name: str) -> FeedStatus | None:
        return self._by_name.get(name)

    def feed_statuses(self) -> list[FeedStatus]:
        return list(self._by_name.values())


def builtin_sources(config: Config) -> list[tuple[SourceInfo, Path, str]]:
    """Always-on sources shipped with nestguard: encrypted-DNS bootstrap names (category
    bypass, RELIABILITY X5) and the education and kids allow set (issue 6)."""
    data = Path(__file__).resolve().parent.parent / "blocklists" / "data"
    sources = [(SourceInfo("builtin-bypass", "bypass"), data / "bypass-builtin.txt", "domains")]
    if config.lists.education_set:
        sources.append(
            (SourceInfo("education", "education", 0, exception=True),
             data / "education.txt", "domains")
        )
    return sources


def feed_from_dict(raw: Mapping[str, object]) -> Feed:
    """A feed the web UI added (stored as JSON in the store's settings)."""
    refresh = raw.get("refresh_seconds", 6 * 3600)
    return Feed(
        name=str(raw["name"]),
        url=str(raw["url"]),
        format=str(raw["format"]),  # type: ignore[arg-type]
        category=(str(raw["category"]) if raw.get("category") else None),
        min_age=(int(str(raw["min_age"])) if raw.get("min_age") is not None else None),
        refresh=timedelta(seconds=float(str(refresh))),
        sha256=(str(raw["sha256"]) if raw.get("sha256") else None),
        signature=(str(raw["signature"]) if raw.get("signature") else None),
    )


def feed_to_dict(feed: Feed) -> dict[str, object]:
    return {
        "name": feed.name, "url": feed.url, "format": feed.format, "category": feed.category,
        "min_age": feed.min_age, "refresh_seconds": feed.refresh.total_seconds(),
        "sha256": feed.sha256, "signature": feed.signature,
    }


@dataclass
class Household:
    config: Config
    store: Store | None
    categories: dict[str, Category]
    live_policy: Live[Policy]
    live_index: Live[Index]
    sync: FeedSync
    status: ReloadStatus
    zone: ZoneInfo
    nudge: asyncio.Event = field(default_factory=asyncio.Event)
    web_feeds: list[Feed] = field(default_factory=list)  # added in the web UI (store setting)
    setup_code: str | None = None  # first-run code when the UI is reachable from the LAN
    block_answer: str | None = None  # the parents' choice (store setting), else the config's
    _log_memo: tuple[Policy, dict[int, bool]] | None = field(default=None, init=False)

    @property
    def has_block_page(self) -> bool:
        pc = self.config.policy
        return pc.blockpage_ipv4 is not None or pc.blockpage_ipv6 is not None

    def block_mode(self) -> str:
        return self.block_answer or self.config.policy.block_answer

    async def read_settings(self) -> None:
        """Household settings the resolver uses directly (after each policy change)."""
        if self.store is None:
            return
        mode = await asyncio.to_thread(self.store.get_setting, "block_answer", None)
        if mode in ("null", "nxdomain") or (mode == "blockpage" and self.has_block_page):
            self.block_answer = str(mode)
        else:
            self.block_answer = None

    # -- time and decisions ------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(self.zone)

    def decider(self, profile: Profile, qname: str, qtype: int, now: datetime) -> Verdict:
        return decide(profile, qname, now, self.live_index.value, qtype=qtype)

    def explain(self, client: str, name: str) -> Verdict:
        """The verdict the running server gives `client` for `name` now (A query)."""
        qname = canonical_name(name)
        _device, profile = self.live_policy.value.profile_for(client)
        return decide(profile, qname, self.now(), self.live_index.value)

    # -- sinks for the resolver's batch queues ---------------------------------------------
    async def log_activity(self, events: list[QueryEvent]) -> None:
        if self.store is None or not self.config.policy.log_queries:
            return
        await asyncio.to_thread(self._write_activity, self.live_policy.value, events)

    def _write_activity(self, policy: Policy, events: list[QueryEvent]) -> None:
        """In the writer thread: drop what must not be logged (adults' devices unless
        log_adults), then one batch insert."""
        assert self.store is not None
        logged = self._logged_devices(policy)
        default = policy.default_profile.log_queries
        keep = [
            e for e in events
            if e.child_id is not None
            or (default if e.device_id is None else logged.get(e.device_id, True))
        ]
        if keep:
            self.store.log_queries(keep)

    def _logged_devices(self, policy: Policy) -> dict[int, bool]:
        """device id -> whether its queries are logged, once per policy snapshot."""
        cached = self._log_memo
        if cached is not None and cached[0] is policy:
            return cached[1]
        table = {d.id: policy.profile_of(d).log_queries for d in policy.devices}
        self._log_memo = (policy, table)
        return table

    async def record_sightings(self, sightings: Sequence[Sighting]) -> None:
        if self.store is None:
            return
        await asyncio.to_thread(self.store.seen, sightings)  # Sighting is (ip, mac, at)
        self.nudge.set()  # a new device shows up in the policy (and the UI) at once

    # -- feeds -------------------------------------------------------------------------------
    async def sync_now(self) -> None:
        """The web UI's "Sync now": the background loop syncs every feed at once."""
        self.sync.trigger()

    async def sync_feeds(
        self, names: Sequence[str] | None = None, *, force: bool = False, shrink: bool = False
    ) -> list[FeedStatus]:
        """Sync now, in this task, and put the new index in force before returning."""
        before = self.sync.index
        statuses = await self.sync.sync(names, force=force, allow_shrink=shrink)
        if self.sync.index is not before:
            self.live_index.value = self.wrap_index(self.sync.index)
        return statuses

    async def add_feed(self, feed: Feed) -> None:
        if any(f.name == feed.name for f in self.sync.feeds):
            raise ValueError(f"a feed named {feed.name!r} exists already")
        self.web_feeds.append(feed)
        if self.store is not None:
            await asyncio.to_thread(
                self.store.set_setting, ADDED_FEEDS_KEY, [feed_to_dict(f) for f in self.web_feeds]
            )
        self.sync.feeds.append(feed)
        self.sync.trigger([feed.name])

    def wrap_index(self, base: CategoryIndex) -> Index:
        """The index in force: the lists, plus the name rater for names no list knows.
        A list swap keeps the rater's cache (ratings depend only on the name)."""
        lists = self.config.lists
        if not lists.rater:
            return base
        current = self.live_index.value
        if isinstance(current, RatedIndex):
            return current.rebased(base)
        ages = {slug: c.min_age for slug, c in self.categories.items()}
        known = set(NameRater().categories)
        wanted = [c for c in lists.rater_categories if c in ages and c in known]
        for c in set(lists.rater_categories) - set(wanted):
            log.warning("lists.rater_categories: the rater cannot rate %r; ignored", c)
        rater = NameRater(categories=wanted)
        return RatedIndex(base, rater, category_ages=ages, popular=_popular())

    # -- the resolver's view -------------------------------------------------------------------
    def resolver_services(self) -> object:
        from resolver.main import Services

        return Services(
            live_policy=self.live_policy,
            decider=self.decider,
            activity_sink=self.log_activity,
            sightings_sink=self.record_sightings,
            web_app=self.web_app,
            now=None,  # the resolver's per-second clock in policy.timezone (memo-friendly)
            block_mode=self.block_mode,
            live_index=self.live_index,
        )

    def web_app(self) -> web.Application:
        if self.store is None:  # P6: no UI over a broken store; DNS keeps filtering
            from resolver.metrics_app import create_app as metrics_only

            return metrics_only()
        from policy.services import load_services
        from webui.app import Services as WebServices
        from webui.app import create_app

        cfg = self.config
        host = cfg.web.listen[0]
        hosts = {"127.0.0.1", "localhost", "::1", host, *cfg.web.allowed_hosts}
        return create_app(
            WebServices(
                store=self.store,
                live_policy=self.live_policy,
                categories=self.categories,
                nudge=self.nudge.set,
                clock=self.now,
                explain=self.explain,
                feeds=list(cfg.feeds) + self.web_feeds,
                feed_sync=self.sync_now,
                add_feed=self.add_feed,
                allowed_hosts=tuple(sorted(hosts)),
                metrics_networks=cfg.web.metrics_networks,
                secure_cookies=cfg.web.secure_cookies,
                block_answer=cfg.policy.block_answer,
                upstreams=[f"{h}:{p}" for h, p in cfg.dns.upstreams],
                retention_days=cfg.policy.retention_days,  # the parent's setting wins
                services_catalogue=load_services(),
                block_modes=BLOCK_MODES if self.has_block_page else BLOCK_MODES[:2],
                setup_code=self.setup_code,
            )
        )


_POPULAR: frozenset[str] | None = None


def _popular() -> frozenset[str]:
    global _POPULAR
    if _POPULAR is None:
        _POPULAR = load_popular()
    return _POPULAR


def _url_rules(operator_feeds: set[str]) -> Callable[[Feed], UrlRules]:
    """The operator's YAML feeds may use local paths and private addresses; feeds added in
    the web UI get the strict rules (https, no loopback/private targets, each redirect checked:
    RELIABILITY S1)."""

    def rules(feed: Feed) -> UrlRules:
        return TRUSTED if feed.name in operator_feeds else UrlRules()

    return rules


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def prepare_data_dir(path: Path) -> Path:
    """The state folder, private to nestguard's user (children's browsing history)."""
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    return path


@contextlib.asynccontextmanager
async def open_household(
    config: Config, *, background: bool = True, worker: bool = False
) -> AsyncIterator[Household]:
    """Open store, policy and lists; with `background`, run the reload, sync, retention and
    leases loops until the context exits.

    `worker`: a DNS worker process (dns.workers > 1, resolver/workers.py). It reads the policy
    from the store as the main process does (the same reload loop), but does not sync lists or
    read leases: it maps the index file the main process's sync writes, and follows it."""
    data_dir = prepare_data_dir(config.data_dir)
    zone = ZoneInfo(config.policy.timezone)
    categories = load_catalogue(config.lists.catalogue)
    pc = config.policy
    build = {
        "unknown_devices": pc.unknown_devices,
        "bypass_defence": pc.bypass_defence,
        "log_adults": pc.log_adults,
    }
    store, policy, status = await asyncio.to_thread(
        open_policy, data_dir / DB_NAME, categories, now=datetime.now(zone), **build
    )
    METRICS.set_degraded("policy", status.degraded)
    web_feeds: list[Feed] = []
    if store is not None:
        raw = await asyncio.to_thread(store.get_setting, ADDED_FEEDS_KEY, [])
        for item in raw if isinstance(raw, list) else []:
            try:
                web_feeds.append(feed_from_dict(item))
            except (KeyError, TypeError, ValueError) as e:
                log.warning("ignoring a stored feed that no longer reads: %s", e)
    ages = {slug: c.min_age for slug, c in categories.items()}
    sync = FeedSync(
        [*config.feeds, *web_feeds],
        data_dir=data_dir,
        status_store=store if store is not None else MemoryStatus(),
        category_ages=ages,
        extra_sources=builtin_sources(config),
        url_rules=_url_rules({f.name for f in config.feeds}),
    )
    hh = Household(
        config=config,
        store=store,
        categories=categories,
        live_policy=Live(policy),
        live_index=Live(CategoryIndex.empty()),
        sync=sync,
        status=status,
        zone=zone,
        web_feeds=web_feeds,
    )
    try:
        base = _load_index(sync.index_path) if worker else await sync.load_from_disk()
    except Exception as e:  # P6: a broken index file must not stop DNS
        log.error("cannot load the lists on disk, starting with none: %s", e)
        METRICS.set_degraded("lists")
        base = CategoryIndex.empty()
    hh.live_index.value = hh.wrap_index(base)
    if store is not None and not worker and not _loopback(config.web.listen[0]):
        if await asyncio.to_thread(store.account_count) == 0:
            # a child on the Wi-Fi must not create the first parent account: the set-up page
            # asks for this code, shown only to whoever started nestguard (terminal, journal)
            hh.setup_code = f"{secrets.randbelow(10**8):08d}"
            log.warning("first-run set-up code for the web UI: %s", hh.setup_code)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    if background:
        if store is not None:
            tasks.append(asyncio.create_task(_reload(hh, stop, build)))
            if pc.leases_file is not None and not worker:
                from policy.leases import leases_loop

                tasks.append(asyncio.create_task(
                    leases_loop(store, pc.leases_file, nudge=hh.nudge, stop=stop, clock=hh.now)
                ))
        if worker:
            tasks.append(asyncio.create_task(_follow_index(hh, stop)))
        else:
            tasks.append(
                asyncio.create_task(sync.run(hh.live_index, stop=stop, wrap=hh.wrap_index))
            )
    try:
        yield hh
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if store is not None:
            await asyncio.to_thread(store.close)


def _load_index(path: Path) -> CategoryIndex:
    """The index file the main process's sync wrote (mmapped: its pages are shared)."""
    return CategoryIndex.load(path) if path.exists() else CategoryIndex.empty()


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


async def _follow_index(hh: Household, stop: asyncio.Event) -> None:
    """In a worker: put the main process's new index in force within RELOAD_EVERY seconds.
    The sync replaces the file atomically (a new inode), so a changed stamp is a whole file."""
    path = hh.sync.index_path
    seen = _file_stamp(path)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RELOAD_EVERY)
        stamp = _file_stamp(path)
        if stamp is None or stamp == seen:
            continue
        try:
            base = _load_index(path)
        except Exception as e:  # a half-written or bad file: keep the index in force (P6)
            log.warning("cannot map the new list index, keeping the current one: %s", e)
            continue
        seen = stamp
        hh.live_index.value = hh.wrap_index(base)
        METRICS.set_degraded("lists", False)


async def _reload(hh: Household, stop: asyncio.Event, build: Mapping[str, object]) -> None:
    assert hh.store is not None
    task = asyncio.create_task(
        reload_loop(hh.store, hh.live_policy, hh.categories, nudge=hh.nudge, stop=stop,
                    interval=RELOAD_EVERY, clock=hh.now, status=hh.status, **build)
    )
    seen = -1
    try:
        while not task.done():
            METRICS.set_degraded("policy", hh.status.degraded)
            if hh.live_policy.value.revision != seen:
                seen = hh.live_policy.value.revision
                with contextlib.suppress(Exception):
                    await hh.read_settings()
            await asyncio.wait([task], timeout=0.25)
    finally:
        task.cancel()



async def serve(config: Config) -> None:
    """`nestguard serve`: the household behind the resolver, until SIGTERM/SIGINT.
    SIGHUP re-reads the policy at once (systemd's ExecReload)."""
    import signal

    from resolver.main import run

    async with open_household(config) as hh:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, hh.nudge.set)
        try:
            if config.dns.workers > 1:
                from resolver.workers import supervise

                await supervise(config, hh.web_app)
            else:
                await run(config, hh.resolver_services())  # type: ignore[arg-type]
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
