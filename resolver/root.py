"""The composition root: the household's parts built from a `Config`: store, policy, lists,
rater, web UI, alerts and time budgets, opened once.

`open_household(config)` is used by `nestguard serve` (resolver/cli.py), by each DNS worker
(resolver/workers.py) and by the CLI commands that must decide exactly as the running server
would (`explain`, `lists check`). It yields a `Household` whose `resolver_services()` plugs
into the DNS side (`resolver.assembly.open_resolver`/`run`). This module starts no server and
no worker: the CLI decides how `serve` runs.

Start-up never runs unfiltered: a corrupt store gives the strict default
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
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from blocklists.catalogue import load_catalogue
from blocklists.feed import TRUSTED, BadFeed, Feed, UrlRules, feed_from_dict, feed_to_dict
from blocklists.index import CategoryIndex, SourceInfo
from blocklists.local import FILE_NAME as LOCAL_FILE
from blocklists.local import LOCAL_FEED, LocalList, LocalOverlay, local_match
from blocklists.rater import NameRater, RatedIndex, load_popular
from blocklists.sync import FeedSync, explain_matches
from policy.decide import decide
from policy.leases import leases_loop
from policy.live import Live
from policy.model import Category, Index, Match, Policy, Profile, QueryEvent, Verdict
from policy.names import canonical_name
from policy.reload import ReloadStatus, open_policy, reload_loop
from policy.services import default_services, load_services
from policy.store import FeedStatus, Store
from resolver.assembly import ResolverServices
from resolver.budgets import BudgetSpent, BudgetTracker, WorkerBudgetHits
from resolver.config import Config
from resolver.metrics import METRICS
from resolver.metrics_app import create_app as metrics_app
from resolver.observe import Sighting
from webui.alerts import AlertEvent, Alerts, events_of
from webui.app import Services, create_app
from webui.i18n import load_catalogues
from webui.weekly import bundled_tld, weekly_loop

log = logging.getLogger(__name__)

DB_NAME = "nestguard.sqlite"
RELOAD_EVERY = 0.5  # a CLI write (no nudge) is in force within a second; one cheap SELECT
ADDED_FEEDS_KEY = "added_feeds"
BLOCK_MODES = ("null", "nxdomain", "blockpage")  # blockpage only with its address configured


class MemoryStatus:
    """Feed status when the store is unusable (filtering goes on): kept in memory for this run."""

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
    bypass) and the education and kids allow set."""
    data = Path(__file__).resolve().parent.parent / "blocklists" / "data"
    sources = [(SourceInfo("builtin-bypass", "bypass"), data / "bypass-builtin.txt", "domains")]
    if config.lists.education_set:
        sources.append(
            (SourceInfo("education", "education", 0, exception=True),
             data / "education.txt", "domains")
        )
    return sources


MAX_WORKER_ALERTS = 10_000  # a worker's alert events between two reports (0.5 s)


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
    alerts: Alerts | None = None  # parents' alerts (webui/alerts.py); None without a store
    local_list: LocalList | None = None  # the `local` feed admins add reported sites to
    _log_memo: tuple[Policy, dict[int, bool]] | None = field(default=None, init=False)
    budgets: BudgetTracker | None = None  # daily time budgets' counts (store needed)
    # in a DNS worker (dns.workers > 1): what goes to the main process, which counts budgets
    # and sends alerts for every worker (resolver/workers.py)
    worker_budgets: WorkerBudgetHits | None = None
    worker_alerts: list[AlertEvent] | None = None
    clock: Callable[[], datetime] | None = None  # tests: a household clock to use instead
    _local_entries: dict[str, Match] = field(default_factory=dict, init=False)

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
        if self.clock is not None:
            return self.clock()
        return datetime.now(self.zone)

    def decider(self, profile: Profile, qname: str, qtype: int, now: datetime) -> Verdict:
        return decide(profile, qname, now, self.live_index.value, qtype=qtype)

    def budget_limits(self, child_id: int) -> Mapping[str, int]:
        """Today's budget limits of a child in the policy in force (for the tracker)."""
        profile = self.live_policy.value.profiles.get(child_id)
        return profile.budget_limits if profile is not None else {}

    def explain(self, client: str, name: str) -> Verdict:
        """The verdict the running server gives `client` for `name` now (A query)."""
        qname = canonical_name(name)
        _device, profile = self.live_policy.value.profile_for(client)
        return decide(profile, qname, self.now(), self.live_index.value)

    # -- sinks for the resolver's batch queues ---------------------------------------------
    async def log_activity(self, events: list[QueryEvent]) -> None:
        if self.alerts is not None:  # security blocks and bypass attempts (no I/O here)
            self.alerts.observe(events)
        elif self.worker_alerts is not None and len(self.worker_alerts) < MAX_WORKER_ALERTS:
            self.worker_alerts.extend(events_of(events))
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
        if any(f.name == feed.name for f in [*self.config.feeds, *self.web_feeds]):
            raise ValueError(f"a feed named {feed.name!r} exists already")
        self.web_feeds.append(feed)
        await self._save_web_feeds()
        self.sync.feeds.append(feed)
        self.sync.trigger([feed.name])

    async def remove_feed(self, name: str) -> None:
        """Remove a feed added in the web UI: its list and index entries go at once."""
        feed = self._web_feed(name)
        self.web_feeds.remove(feed)
        await self._save_web_feeds()
        before = self.sync.index
        await self.sync.drop(name, delete=True)
        if self.sync.index is not before:
            self.live_index.value = self.wrap_index(self.sync.index)

    async def enable_feed(self, name: str, enabled: bool) -> None:
        """Turn a feed added in the web UI off (its entries leave the index, its copy stays)
        or on again (synced now)."""
        feed = self._web_feed(name)
        if feed.enabled == enabled:
            return
        updated = replace(feed, enabled=enabled)
        self.web_feeds[self.web_feeds.index(feed)] = updated
        await self._save_web_feeds()
        before = self.sync.index
        if enabled:
            await self.sync.restore(updated)
            self.sync.trigger([name])
        else:
            await self.sync.drop(name, delete=False)
        if self.sync.index is not before:
            self.live_index.value = self.wrap_index(self.sync.index)

    def _web_feed(self, name: str) -> Feed:
        for feed in self.web_feeds:
            if feed.name == name:
                return feed
        if any(f.name == name for f in self.config.feeds):
            raise ValueError(f"feed {name!r} is set in the config file; change it there")
        raise KeyError(name)

    async def _save_web_feeds(self) -> None:
        if self.store is not None:
            await asyncio.to_thread(
                self.store.set_setting, ADDED_FEEDS_KEY, [feed_to_dict(f) for f in self.web_feeds]
            )

    async def list_locally(self, domain: str, category: str, min_age: int | None,
                           note: str) -> None:
        """A reported site onto the local list, in force for the house when this returns."""
        if self.local_list is None:
            raise ValueError(f"the operator's config has its own feed named {LOCAL_FEED!r}")
        await asyncio.to_thread(self.local_list.add, domain, category, min_age, note)
        age = self.categories[category].min_age if min_age is None else min_age
        self._local_entries[domain] = local_match(domain, category, age)
        self.live_index.value = self.wrap_index(self.sync.index)  # in force now
        self.sync.trigger([LOCAL_FEED])  # and in the index after the next build

    def check_name(self, name: str) -> list[str]:
        """`nestguard lists check NAME`'s lines for the Reports page."""
        return explain_matches(self.live_index.value, name)

    def wrap_index(self, base: CategoryIndex) -> Index:
        """The index in force: the lists, plus the name rater for names no list knows.
        A list swap keeps the rater's cache (ratings depend only on the name)."""
        rated = self._rated(base)
        if self._local_entries:  # decisions on reported sites, in force before a rebuild
            return LocalOverlay(rated, dict(self._local_entries))
        return rated

    def _rated(self, base: CategoryIndex) -> Index:
        lists = self.config.lists
        if not lists.rater:
            return base
        current = self.live_index.value
        if isinstance(current, LocalOverlay):
            current = current.inner
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
    def resolver_services(self) -> ResolverServices:
        return ResolverServices(
            live_policy=self.live_policy,
            decider=self.decider,
            activity_sink=self.log_activity,
            sightings_sink=self.record_sightings,
            web_app=self.web_app,
            # the resolver's per-second clock in policy.timezone (memo-friendly), or the test's
            now=self.clock,
            block_mode=self.block_mode,
            live_index=self.live_index,
            budgets=self.budgets if self.budgets is not None else self.worker_budgets,
        )

    def web_app(self) -> web.Application:
        if self.store is None:  # no UI over a broken store; DNS keeps filtering
            return metrics_app()
        cfg = self.config
        host = cfg.web.listen[0]
        hosts = {"127.0.0.1", "localhost", "::1", host, *cfg.web.allowed_hosts}
        return create_app(
            Services(
                store=self.store,
                live_policy=self.live_policy,
                categories=self.categories,
                nudge=self.nudge.set,
                clock=self.now,
                explain=self.explain,
                feeds=list(cfg.feeds),
                feed_sync=self.sync_now,
                add_feed=self.add_feed,
                web_feeds=lambda: list(self.web_feeds),
                remove_feed=self.remove_feed,
                enable_feed=self.enable_feed,
                health=lambda: METRICS.degraded_reasons,
                allowed_hosts=tuple(sorted(hosts)),
                metrics_networks=cfg.web.metrics_networks,
                secure_cookies=cfg.web.secure_cookies,
                block_answer=cfg.policy.block_answer,
                upstreams=[f"{h}:{p}" for h, p in cfg.dns.upstreams],
                retention_days=cfg.policy.retention_days,  # the parent's setting wins
                services_catalogue=load_services(),
                block_modes=BLOCK_MODES if self.has_block_page else BLOCK_MODES[:2],
                setup_code=self.setup_code,
                alerts=self.alerts,
                list_locally=self.list_locally if self.local_list is not None else None,
                check_name=self.check_name,
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
    the web UI get the strict rules (https, no loopback/private targets, each redirect
    checked)."""

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
    config: Config,
    *,
    background: bool = True,
    clock: Callable[[], datetime] | None = None,
    worker: bool = False,
) -> AsyncIterator[Household]:
    """Open store, policy and lists; with `background`, run the reload, sync, retention and
    leases loops until the context exits. `clock` (tests): the household's time instead of
    the system's, aware in policy.timezone.

    `worker`: a DNS worker process (dns.workers > 1, resolver/workers.py). It reads the policy
    from the store as the main process does (the same reload loop), but does not sync lists,
    read leases, count time budgets or send alerts: it maps the index file the main process's
    sync writes, and follows it, and keeps its budget hits and alert events
    (`worker_budgets`, `worker_alerts`) for the main process, which counts and sends them."""
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
        open_policy, data_dir / DB_NAME, categories,
        now=clock() if clock is not None else datetime.now(zone), **build
    )
    METRICS.set_degraded("policy", status.degraded)
    web_feeds: list[Feed] = []
    if store is not None:
        raw = await asyncio.to_thread(store.get_setting, ADDED_FEEDS_KEY, [])
        for item in raw if isinstance(raw, list) else []:
            if not isinstance(item, dict):
                log.warning("ignoring a stored feed that is not a mapping: %r", item)
                continue
            # older copies call the refresh interval "refresh_seconds"
            item = {("refresh" if k == "refresh_seconds" else k): v for k, v in item.items()}
            try:
                web_feeds.append(feed_from_dict(item, rules=UrlRules()))
            except BadFeed as e:
                log.warning("ignoring a stored feed that no longer reads: %s", e)
    ages = {slug: c.min_age for slug, c in categories.items()}
    local_list = None
    operator = {f.name for f in config.feeds}
    if LOCAL_FEED in operator:
        log.warning("a feed named %r in the config: reported sites cannot be listed", LOCAL_FEED)
    else:
        local_list = LocalList(data_dir / LOCAL_FILE)
        try:
            await asyncio.to_thread(local_list.ensure)
        except OSError as e:  # a full disk: start anyway, the list is written with its first entry
            log.warning("cannot create the local list %s: %s", local_list.path, e.strerror)
        operator.add(LOCAL_FEED)  # a file nestguard writes: the operator's rules
    sync = FeedSync(
        [*config.feeds, *web_feeds, *([local_list.feed()] if local_list else [])],
        data_dir=data_dir,
        status_store=store if store is not None else MemoryStatus(),
        category_ages=ages,
        extra_sources=builtin_sources(config),
        url_rules=_url_rules(operator),
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
        clock=clock,
        local_list=local_list,
    )
    try:
        base = _load_index(sync.index_path) if worker else await sync.load_from_disk()
    except Exception as e:  # a broken index file must not stop DNS (it filters on)
        log.error("cannot load the lists on disk, starting with none: %s", e)
        METRICS.set_degraded("lists")
        base = CategoryIndex.empty()
    hh.live_index.value = hh.wrap_index(base)
    if store is not None and not worker:
        hh.alerts = _alerts(config, store, hh.now)
        await hh.alerts.load()
    if store is not None and not worker and not _loopback(config.web.listen[0]):
        if await asyncio.to_thread(store.account_count) == 0:
            # a child on the Wi-Fi must not create the first parent account: the set-up page
            # asks for this code, shown only to whoever started nestguard (terminal, journal)
            hh.setup_code = f"{secrets.randbelow(10**8):08d}"
            log.warning("first-run set-up code for the web UI: %s", hh.setup_code)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    if store is not None and worker:
        hh.worker_budgets = WorkerBudgetHits(hh.now)
        hh.worker_alerts = []
    elif store is not None:
        hh.budgets = BudgetTracker(store, clock=hh.now, nudge=hh.nudge.set,
                                   limits_of=hh.budget_limits)
        try:
            await asyncio.to_thread(hh.budgets.load)
        except Exception:  # counting starts from zero, filtering goes on
            log.exception("cannot read today's budget counts")
        if hh.alerts is not None:
            hh.budgets.listeners.append(_budget_alert(hh.alerts))
    if background:
        if store is not None:
            tasks.append(asyncio.create_task(_reload(hh, stop, build)))
            if hh.budgets is not None:
                tasks.append(asyncio.create_task(hh.budgets.run(stop)))
            if pc.leases_file is not None and not worker:
                tasks.append(asyncio.create_task(
                    leases_loop(store, pc.leases_file, nudge=hh.nudge, stop=stop, clock=hh.now)
                ))
        if worker:
            tasks.append(asyncio.create_task(_follow_index(hh, stop)))
        else:
            tasks.append(
                asyncio.create_task(sync.run(hh.live_index, stop=stop, wrap=hh.wrap_index))
            )
        if hh.alerts is not None and store is not None:
            tasks.append(asyncio.create_task(hh.alerts.run(stop)))
            tasks.append(asyncio.create_task(weekly_loop(
                store, hh.alerts, categories, bundled_tld(), hh.alerts.household_lang, stop)))
    try:
        yield hh
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if hh.budgets is not None:
            with contextlib.suppress(Exception):
                await hh.budgets.flush()
        if store is not None:
            await asyncio.to_thread(store.close)


def _budget_alert(alerts: Alerts) -> Callable[[BudgetSpent], None]:
    """Parents hear when a child's daily time budget is spent (and again when extra time is)."""

    def spent(event: BudgetSpent) -> None:
        service = default_services().get(event.slug)
        name = service.name("en") if service is not None else event.slug
        alerts.emit(AlertEvent("budget", child_id=event.child_id, name=name,
                               detail=str(event.minutes)))

    return spent


def _alerts(config: Config, store: Store, clock: Callable[[], datetime]) -> Alerts:
    host, port = config.web.listen
    if host in ("0.0.0.0", "::"):
        host = "nestguard.home.arpa"
    shown = f"[{host}]" if ":" in host else host

    def household_lang() -> str:
        return str(store.get_setting("ui_lang", "vi"))

    return Alerts(store, config.alerts, clock, load_catalogues(), household_lang=household_lang,
                  default_ui_url=f"http://{shown}:{port}",
                  forward_url=config.reports.forward_url,
                  forward_loopback=config.reports.allow_loopback)


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
        except Exception as e:  # a half-written or bad file: keep the index in force
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
