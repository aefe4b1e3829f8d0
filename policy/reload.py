"""Build the `Policy` snapshot from the store, and keep `Live[Policy]` up to date.

    store, policy, status = open_policy(path, categories, now=now)   # at start (sync)
    live = Live(policy)                      # store None: corrupt file, strict fallback
    task = asyncio.create_task(reload_loop(store, live, categories, nudge=nudge, stop=stop,
                                           clock=clock, status=status))

`build_policy` rules (documented choices):
- One Profile per child: the parent's settings, rules ("allow", "deny", "always"), weekly
  windows, the household exceptions that concern the child, grants still active at `now`.
- mode "auto" -> "allowlist" under 6 (age on `now`'s date), else "normal".
- category_ages = the catalogue's ages (`Category.min_age`) overlaid with the child's
  overrides (ChildSettings.category_ages); catalogue_ages = the catalogue's ages.
- always_allowed = the child's "always" rules plus ESSENTIAL_NAMES (connectivity checks, so
  phones do not report "no internet" and nag during bedtime; they carry no content).
- bypass_defence = the global switch AND the child's setting.
- The adults' profile: mode "adults" (security categories, canaries, nothing else), no safe
  search, no name rater (its guesses are for children), log_queries = log_adults.
- Unknown devices get the default profile, chosen by the household setting
  "unknown_devices" when set in the store, else the `unknown_devices` argument:
  "strictest" = the youngest child's profile without that child's grants (grants are
  personal); with no children, STRICT_DEFAULT: a built-in profile for an 8-year-old
  equivalent (born 8 years before `now`), normal mode, safe search on, YouTube strict.
  "adults" = the adults' profile. Any other value names a child (case-insensitive); an
  unknown name falls back to "strictest" with a warning.
- Daily time budgets (policy/budgets.py): each child's budgets with the minutes counted and
  the extra time given on `now`'s household day; the unknown devices' default profile never
  carries them (an unknown device neither spends nor is held by a child's budget).
- Device identifiers: MACs -> by_mac, IPv6 /64 prefixes -> by_prefix64, addresses ->
  by_address.

`reload_loop` wakes on the nudge Event (UI writes, SIGHUP) or every `interval` seconds and
rebuilds when the store's revision changed, a grant or pause in the snapshot ended, or the
day changed (ages, "auto" mode). Store calls run in `asyncio.to_thread`. On any error the old
Policy stays and `status.degraded` is set (never run unfiltered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

from policy.budgets import with_budgets
from policy.live import Live
from policy.model import (
    ADULTS,
    Category,
    Child,
    Device,
    Grant,
    HouseholdException,
    Policy,
    Profile,
    Schedule,
)
from policy.store import Budget, ChildSettings, Rule, Store, StoreError

log = logging.getLogger(__name__)

ALLOWLIST_UNDER = 6
DEFAULT_AGE = 8
ESSENTIAL_NAMES = frozenset(
    {
        "connectivitycheck.gstatic.com",
        "connectivitycheck.android.com",
        "clients3.google.com",
        "captive.apple.com",
        "www.msftconnecttest.com",
        "www.msftncsi.com",
        "detectportal.firefox.com",
        "time.apple.com",
        "time.windows.com",
        "time.android.com",
        "pool.ntp.org",
    }
)


@dataclass
class ReloadStatus:
    """What the metrics export (a degraded gauge, last error, counters). Mutated by the loop."""

    degraded: bool = False
    last_error: str = ""
    reloads: int = 0
    failures: int = 0
    last_reload: datetime | None = None
    revision: int = 0
    next_expiry: datetime | None = None
    history: list[str] = field(default_factory=list)  # last few errors, newest last


def _born_years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def strict_default(now: datetime, *, bypass_defence: bool = True) -> Profile:
    """The built-in profile for unknown devices when there are no children yet."""
    child = Child(0, "default", _born_years_before(now.date(), DEFAULT_AGE))
    return Profile(
        child=child,
        mode="normal",
        always_allowed=ESSENTIAL_NAMES,
        safe_search=True,
        youtube="strict",
        bypass_defence=bypass_defence,
    )


def adults_profile(
    categories: Mapping[str, Category], *, bypass_defence: bool, log_adults: bool
) -> Profile:
    ages = {slug: c.min_age for slug, c in categories.items()}
    return Profile(
        child=None,
        mode="adults",
        category_ages=ages,
        catalogue_ages=ages,
        safe_search=False,
        youtube="off",
        bypass_defence=bypass_defence,
        rater=False,
        log_queries=log_adults,
    )


def fallback_policy(now: datetime, *, bypass_defence: bool = True) -> Policy:
    """For a store that cannot be read at start: everyone gets the strict default."""
    strict = strict_default(now, bypass_defence=bypass_defence)
    adults = Profile(child=None, mode="adults", safe_search=False, youtube="off",
                     bypass_defence=bypass_defence, rater=False, log_queries=False)
    return Policy(revision=-1, devices=(), profiles={}, adults_profile=adults,
                  default_profile=strict)


def child_profile(
    child: Child,
    settings: ChildSettings,
    rules: list[Rule],
    *,
    schedules: tuple[Schedule, ...],
    exceptions: tuple[HouseholdException, ...],
    grants: tuple[Grant, ...],
    catalogue: Mapping[str, int],
    now: datetime,
    bypass_defence: bool,
) -> Profile:
    # Times in the household's zone (`now`'s tzinfo): comparing datetimes that share one
    # tzinfo object skips the utcoffset() calls, which matter for ZoneInfo on the hot path.
    zone = now.tzinfo
    grants = tuple(replace(g, until=_in_zone(g.until, zone)) for g in grants)
    paused_until = (
        None if settings.paused_until is None else _in_zone(settings.paused_until, zone)
    )
    mode = settings.mode
    if mode == "auto":
        mode = "allowlist" if child.age_on(now.date()) < ALLOWLIST_UNDER else "normal"
    return Profile(
        child=child,
        mode=mode,
        category_ages={**catalogue, **settings.category_ages},
        catalogue_ages=catalogue,
        blocked=settings.blocked,
        allowed=settings.allowed,
        allow=frozenset(r.domain for r in rules if r.kind == "allow"),
        deny=frozenset(r.domain for r in rules if r.kind == "deny"),
        always_allowed=frozenset(r.domain for r in rules if r.kind == "always") | ESSENTIAL_NAMES,
        safe_search=settings.safe_search,
        youtube=settings.youtube,
        bypass_defence=bypass_defence and settings.bypass_defence,
        rater=settings.rater,
        rater_off=settings.rater_off,
        services=settings.services,
        learning_games=settings.learning_games,
        schedules=schedules,
        exceptions=exceptions,
        paused_until=paused_until,
        grants=grants,
        log_queries=True,
    )


def _in_zone(dt: datetime, zone: tzinfo | None) -> datetime:
    if zone is None or dt.tzinfo is None:
        return dt
    try:
        return dt.astimezone(zone)
    except OverflowError:  # "paused until resumed" near datetime.max
        return dt


def build_policy(
    store: Store,
    categories: Mapping[str, Category],
    *,
    now: datetime,
    unknown_devices: str = "strictest",
    bypass_defence: bool = True,
    log_adults: bool = False,
) -> Policy:
    """A fresh snapshot (see the module docstring). Raises StoreError on store trouble."""
    revision = store.revision()  # first: a write during the build triggers another build
    catalogue = {slug: c.min_age for slug, c in categories.items()}
    children = store.children()
    rules: dict[int, list[Rule]] = {}
    for r in store.rules():
        rules.setdefault(r.child_id, []).append(r)
    grants: dict[int, list[Grant]] = {}
    for g in store.grants(active_at=now):
        grants.setdefault(g.child_id, []).append(g)
    all_exceptions = store.exceptions()
    budgets = day_budgets(store, now.date())
    profiles: dict[int, Profile] = {}
    for child in children:
        profiles[child.id] = child_profile(
            child,
            store.settings(child.id),
            rules.get(child.id, []),
            schedules=tuple(store.schedules(child.id)),
            exceptions=tuple(
                e for e in all_exceptions if not e.child_ids or child.id in e.child_ids
            ),
            grants=tuple(grants.get(child.id, ())),
            catalogue=catalogue,
            now=now,
            bypass_defence=bypass_defence,
        )
        if child.id in budgets:
            profiles[child.id] = with_budgets(profiles[child.id], *budgets[child.id], now.date())
    adults = adults_profile(categories, bypass_defence=bypass_defence, log_adults=log_adults)
    choice = store.get_setting("unknown_devices", None)
    if not isinstance(choice, str) or not choice:
        choice = unknown_devices
    default = _default_profile(choice, children, profiles, adults, now, bypass_defence)
    devices = tuple(store.devices())
    by_address: dict[str, Device] = {}
    by_mac: dict[str, Device] = {}
    by_prefix64: dict[str, Device] = {}
    for d in devices:
        for ident in d.identifiers:
            if "/" in ident:
                by_prefix64[ident] = d
            elif len(ident) == 17 and ident.count(":") == 5 and "." not in ident and (
                all(len(p) == 2 for p in ident.split(":"))
            ):
                by_mac[ident] = d
            else:
                by_address[ident] = d
    return Policy(
        revision=revision,
        devices=devices,
        profiles=profiles,
        adults_profile=adults,
        default_profile=default,
        by_address=by_address,
        by_mac=by_mac,
        by_prefix64=by_prefix64,
    )


def _default_profile(
    choice: str,
    children: list[Child],
    profiles: Mapping[int, Profile],
    adults: Profile,
    now: datetime,
    bypass_defence: bool,
) -> Profile:
    if choice == ADULTS:
        return adults
    if choice != "strictest":
        key = choice.strip().casefold()
        for child in children:
            if child.name.casefold() == key:
                return profiles[child.id]
        log.warning("unknown_devices names no child (%r): using the strictest profile", choice)
    if not children:
        return strict_default(now, bypass_defence=bypass_defence)
    youngest = max(children, key=lambda c: (c.born, -c.id))
    # grants and time budgets are the child's own: an unknown device neither uses nor spends them
    return replace(profiles[youngest.id], grants=(), budget_keys={}, budget_limits={},
                   budget_spent={})


def day_budgets(
    store: Store, day: date
) -> dict[int, tuple[list[Budget], dict[str, int], dict[str, int]]]:
    """child id -> (budgets, minutes used on `day` by slug, extra minutes on `day` by slug)."""
    out: dict[int, tuple[list[Budget], dict[str, int], dict[str, int]]] = {}
    for b in store.budgets():
        out.setdefault(b.child_id, ([], {}, {}))[0].append(b)
    if not out:
        return out
    for u in store.budget_usage(day):
        if u.child_id in out:
            out[u.child_id][1][u.key] = u.minutes
    for (child_id, slug), minutes in store.budget_extras(day).items():
        if child_id in out:
            out[child_id][2][slug] = minutes
    return out


def open_policy(
    path: Path,
    categories: Mapping[str, Category],
    *,
    now: datetime,
    **build_kwargs: Any,
) -> tuple[Store | None, Policy, ReloadStatus]:
    """Start-up: open the store and build the first Policy; when the file
    is corrupt or unreadable, return (None, fallback_policy(...), status with degraded=True)
    so the resolver still filters. A store that opens but fails to build also falls back
    (the store is returned: the loop retries and recovers once the cause is fixed)."""
    status = ReloadStatus()
    bypass = bool(build_kwargs.get("bypass_defence", True))
    try:
        store = Store.open(path)
    except StoreError as e:
        log.error("policy store unusable, filtering with the strict default: %s", e)
        status.degraded, status.last_error, status.failures = True, str(e), 1
        return None, fallback_policy(now, bypass_defence=bypass), status
    try:
        policy = build_policy(store, categories, now=now, **build_kwargs)
    except Exception as e:  # a bad row must not stop filtering
        log.exception("building the policy failed, filtering with the strict default")
        status.degraded, status.last_error, status.failures = True, f"{e}", 1
        return store, fallback_policy(now, bypass_defence=bypass), status
    status.revision = policy.revision
    return store, policy, status


def next_expiry(policy: Policy, now: datetime) -> datetime | None:
    """The earliest grant end or pause end after `now` in the snapshot."""
    ends: list[datetime] = []
    for p in policy.profiles.values():
        ends.extend(g.until for g in p.grants if g.until > now)
        if p.paused_until is not None and p.paused_until > now:
            ends.append(p.paused_until)
    return min(ends) if ends else None


async def reload_loop(
    store: Store,
    live: Live[Policy],
    categories: Mapping[str, Category],
    *,
    nudge: asyncio.Event,
    stop: asyncio.Event,
    interval: float = 5.0,
    clock: Callable[[], datetime],
    status: ReloadStatus | None = None,
    **build_kwargs: Any,
) -> None:
    """Keep `live.value` current until `stop` is set (see the module docstring)."""
    st = status if status is not None else ReloadStatus()
    now = clock()
    day = now.date()
    expiry = next_expiry(live.value, now)
    st.revision = live.value.revision
    st.next_expiry = expiry
    while not stop.is_set():
        await _wait_any(nudge, stop, interval)
        nudge.clear()
        if stop.is_set():
            break
        try:
            now = clock()
            revision = await asyncio.to_thread(store.revision)
            due = (
                revision != live.value.revision
                or now.date() != day
                or (expiry is not None and now >= expiry)
                or st.degraded  # retry after a failure even if nothing changed
            )
            if not due:
                continue
            policy = await asyncio.to_thread(
                build_policy, store, categories, now=now, **build_kwargs
            )
        except Exception as e:  # any failure keeps the last good policy
            st.failures += 1
            st.degraded = True
            st.last_error = f"{type(e).__name__}: {e}"
            st.history = [*st.history[-9:], st.last_error]
            log.exception("policy reload failed; keeping revision %d", live.value.revision)
            continue
        live.value = policy
        day = now.date()
        expiry = next_expiry(policy, now)
        st.degraded = False
        st.last_error = ""
        st.reloads += 1
        st.last_reload = now
        st.revision = policy.revision
        st.next_expiry = expiry
        log.info("policy revision %d in force", policy.revision)


async def _wait_any(nudge: asyncio.Event, stop: asyncio.Event, timeout: float) -> None:
    waits = {asyncio.ensure_future(nudge.wait()), asyncio.ensure_future(stop.wait())}
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
