"""The parents' web UI: `create_app(services)` serves tests and production alike.

The lead's wiring builds a `Services` (the store, the live policy, callbacks into the resolver
and the blocklist sync, and the operator's web settings) and mounts `create_app(services)` on
`web.listen`. Everything the UI knows about the outside world comes through `Services`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp_jinja2
import jinja2
import tldextract
from aiohttp import web

from blocklists.feed import Feed
from policy.live import Live
from policy.model import Category, Policy, Verdict
from policy.store import Store
from webui import alert_views, api, middleware, present, reports, views, weekly
from webui.alerts import Alerts
from webui.auth import DEFAULT_N, SessionPolicy
from webui.i18n import LANGS, load_catalogues
from webui.keys import JINJA, SERVICES, SETTINGS_PARTS, STATE

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
BLOCK_MODES = ("null", "nxdomain", "blockpage")  # how blocked names are answered

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class Services:
    """What the web UI needs from the rest of nestguard (built by the resolver's wiring)."""

    store: Store
    live_policy: Live[Policy]
    categories: Mapping[str, Category]
    nudge: Callable[[], None]  # after every write: the resolver reloads within 1 s
    clock: Callable[[], datetime]  # aware, in the household's time zone
    explain: Callable[[str, str], Verdict] | None = None  # (client ip, name) -> verdict now
    feeds: Sequence[Feed] = ()
    feed_sync: Callable[[], Awaitable[None]] | None = None  # "Sync now"
    add_feed: Callable[[Feed], Awaitable[None]] | None = None
    # feeds added in the web UI (the YAML's are `feeds`): listed now, removed, turned off/on
    web_feeds: Callable[[], Sequence[Feed]] | None = None
    remove_feed: Callable[[str], Awaitable[None]] | None = None
    enable_feed: Callable[[str, bool], Awaitable[None]] | None = None
    # what is wrong right now, for the note on Home: "activity_log" (rows cannot be saved),
    # "store" (the last change could not be saved), "policy", "lists"
    health: Callable[[], Collection[str]] | None = None
    # web settings (operator YAML)
    allowed_hosts: Collection[str] = ("127.0.0.1", "localhost", "::1")
    metrics_networks: Sequence[IPNetwork] = ()
    secure_cookies: bool = False
    block_answer: str = "null"  # one of BLOCK_MODES; the parents' setting overrides it
    block_modes: Sequence[str] = BLOCK_MODES  # what the settings page offers (the resolver
    # can answer "blockpage" only when it knows the UI's address)
    upstreams: Sequence[str] = ()
    retention_days: int = 30
    services_catalogue: Mapping[str, object] | None = None
    # tuning (defaults are the production values)
    scrypt_n: int = DEFAULT_N
    session_idle: timedelta = timedelta(hours=12)
    session_absolute: timedelta = timedelta(days=7)
    default_lang: str = "vi"
    setup_code: str | None = None  # when set, first-run setup also asks for it (the operator
    # reads it from the log or the console), so a child on the Wi-Fi cannot set up first
    allow_http_feeds: bool = False  # http:// feeds only by the operator's opt-in
    allow_loopback_feeds: bool = False  # tests only
    alerts: Alerts | None = None  # parents' alerts: Settings, the block page's asks
    # reported sites: (domain, category, min_age, note) onto the `local` feed, in force on return
    list_locally: Callable[[str, str, int | None, str], Awaitable[None]] | None = None
    check_name: Callable[[str], list[str]] | None = None  # `nestguard lists check NAME`


@dataclass(slots=True)
class WebState:
    """The app's own mutable state (one per app)."""

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    hash_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    has_accounts: bool = False
    setup_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    block_answer: str = "null"
    household_lang: str = "vi"
    added_feeds: list[Feed] = field(default_factory=list)
    sync_task: asyncio.Task[None] | None = None
    sync_error: str = ""
    ask_times: dict[str, list[float]] = field(default_factory=dict)  # block page asks per client
    logins_in_flight: dict[str, int] = field(default_factory=dict)  # throttle key -> checks
    catalogues: dict[str, dict[str, str]] = field(default_factory=dict)
    tld: tldextract.TLDExtract | None = None
    session_policy: SessionPolicy = field(default_factory=SessionPolicy)


def local_time(dt: datetime | None, clock: Callable[[], datetime]) -> datetime | None:
    """The store answers in UTC; parents read the household's time."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        return dt
    return dt.astimezone(clock().tzinfo)


def create_app(services: Services) -> web.Application:
    app = web.Application(
        middlewares=[
            middleware.errors,
            middleware.hosts,
            middleware.authenticate,
            middleware.csrf,
        ],
        client_max_size=256 * 1024,
        handler_args={"max_field_size": 8190},
    )
    app[SERVICES] = services
    state = WebState(
        block_answer=services.block_answer,
        household_lang=services.default_lang if services.default_lang in LANGS else "vi",
        catalogues=load_catalogues(),
        # the bundled public suffix list only: never fetched at run time. Private suffixes
        # count (user.github.io is its own site, not all of github.io).
        tld=tldextract.TLDExtract(
            suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True
        ),
        session_policy=SessionPolicy(
            idle=services.session_idle, absolute=services.session_absolute
        ),
    )
    app[STATE] = state
    app[SETTINGS_PARTS] = (alert_views.context,)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local"] = lambda dt: local_time(dt, services.clock)
    env.filters["shown"] = present.shown_name  # IDN names in Unicode
    app[JINJA] = env
    app.router.add_routes(api.routes)
    app.router.add_routes(views.routes)
    app.router.add_routes(alert_views.routes)
    app.router.add_routes(weekly.routes)  # before reports: /reports/weekly is not a report id
    app.router.add_routes(reports.routes)
    app.on_response_prepare.append(middleware.security_headers)
    app.cleanup_ctx.append(_load_state)
    app.cleanup_ctx.append(_housekeeping)
    return app


async def _load_state(app: web.Application) -> AsyncIterator[None]:
    svc, state = app[SERVICES], app[STATE]
    store = svc.store
    state.has_accounts = await asyncio.to_thread(store.account_count) > 0
    mode = await asyncio.to_thread(store.get_setting, "block_answer", svc.block_answer)
    state.block_answer = mode if mode in BLOCK_MODES else svc.block_answer
    lang = await asyncio.to_thread(store.get_setting, "ui_lang", state.household_lang)
    if lang in LANGS:
        state.household_lang = str(lang)
    yield
    if state.sync_task is not None and not state.sync_task.done():
        state.sync_task.cancel()
        try:
            await state.sync_task
        except asyncio.CancelledError:
            pass


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    """Keep the children's browsing history, answered requests and ended grants bounded by
    the retention setting (hourly)."""
    svc = app[SERVICES]

    async def loop() -> None:
        while True:
            try:
                days = await asyncio.to_thread(
                    svc.store.get_setting, "retention_days", svc.retention_days
                )
                days_i = int(days) if isinstance(days, int | str) else svc.retention_days
                cutoff = svc.clock() - timedelta(days=max(days_i, 1))
                removed = await asyncio.to_thread(svc.store.purge_activity, cutoff)
                if removed:
                    log.info("purged %d activity rows older than %d days", removed, days_i)
                # budgets' daily counts and extra time: kept as long as the activity log
                await asyncio.to_thread(svc.store.purge_budget_usage, cutoff.date())
                # the same promise covers what children asked for and what was granted
                # (pending requests stay until a parent answers)
                asked = await asyncio.to_thread(svc.store.purge_requests, cutoff)
                granted = await asyncio.to_thread(svc.store.purge_grants, cutoff)
                if asked or granted:
                    log.info("purged %d answered requests and %d ended grants older than %d days",
                             asked, granted, days_i)
                now = svc.clock()
                await asyncio.to_thread(
                    svc.store.purge_sessions,
                    now - svc.session_idle,
                    created_before=now - svc.session_absolute,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("activity purge failed")
            await asyncio.sleep(3600)

    task = asyncio.create_task(loop(), name="webui-housekeeping")
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
