"""What the UI does, shared by the HTML views and the JSON API.

Each action validates (forms.py) before it writes, writes through the Store in a worker thread,
writes an audit line and nudges the resolver. Failures are `FormError` (400 + field),
`NotFound` (404), `Conflict` (409) or `Locked` (429).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from aiohttp import web
from prometheus_client import Counter

from blocklists.feed import Feed
from policy.budgets import Standing, child_standings
from policy.model import ADULTS, Child, Device, Grant, HouseholdException, Profile, Schedule
from policy.store import AccessRequest, Account, Budget, ChildSettings, Conflict, NotFound, Rule
from webui import auth, forms
from webui.context import in_thread, now, principal, record
from webui.forms import FormError, Raw, fail
from webui.keys import SERVICES, STATE

log = logging.getLogger(__name__)
T = TypeVar("T")

LOGINS = Counter(
    "nestguard_web_logins_total", "Web UI login attempts by outcome", ["outcome"]
)

PAUSE_FOREVER = datetime(9999, 12, 31)


class Locked(Exception):
    """Too many failed logins for this address or account (429)."""

    def __init__(self, until: datetime) -> None:
        super().__init__("locked")
        self.until = until


# setup, login, sessions ----------------------------------------------------------------


async def setup(request: web.Request, raw: Raw) -> Account:
    """Create the first account (an admin). Only while there is none."""
    svc, state = request.app[SERVICES], request.app[STATE]
    errors: dict[str, forms.Msg] = {}
    if svc.setup_code:  # guessing the code is throttled like a password
        key, at = f"setup:{request.remote or 'unknown'}", svc.clock()
        if await in_thread(svc.store.login_failures, key, at - auth.LOCKOUT) >= auth.MAX_FAILURES:
            raise Locked(at + auth.LOCKOUT)
        code = raw.get("code")
        if not isinstance(code, str) or not hmac.compare_digest(
            code.strip().encode(), svc.setup_code.encode()
        ):
            await in_thread(svc.store.record_login_failure, key, at)
            errors["code"] = ("err.setup_code", {})
    try:
        creds, _ = forms.parse_new_account(raw)
    except FormError as e:
        errors.update(e.errors)
    if errors:
        raise FormError(errors)
    async with state.setup_lock:
        if state.has_accounts or await in_thread(svc.store.account_count) > 0:
            state.has_accounts = True
            raise NotFound("setup is done")
        pw_hash = await auth.hash_password(
            creds.password, n=svc.scrypt_n, slots=state.hash_slots
        )
        account = await in_thread(svc.store.add_account, creds.username, pw_hash, "admin")
        state.has_accounts = True
    await in_thread(svc.store.audit, account.username, "setup", "")
    log.info("first account %s created", account.username)
    return account


async def login(request: web.Request, raw: Raw) -> tuple[str, auth.Principal]:
    """Check the password (throttled per address and per account); a new session id."""
    svc, state = request.app[SERVICES], request.app[STATE]
    creds = forms.parse_login(raw)
    ip = request.remote or "unknown"
    address_key, pair_key = keys = auth.throttle_keys(ip, creds.username)
    at = svc.clock()
    limits = ((pair_key, auth.MAX_FAILURES), (address_key, auth.MAX_ADDRESS_FAILURES))
    recent = [
        await in_thread(svc.store.login_failure_state, key, at - auth.WINDOW)
        for key, _ in limits
    ]
    # no await from here to the in-flight count below: attempts still being checked count
    # too (20 parallel guesses are not 20 tries)
    for (key, free), (failures, last) in zip(limits, recent, strict=True):
        failures += state.logins_in_flight.get(key, 0)
        if (until := auth.retry_at(failures, last, at, free)) is not None:
            LOGINS.labels("locked").inc()
            raise Locked(until)
    for key in keys:
        state.logins_in_flight[key] = state.logins_in_flight.get(key, 0) + 1
    try:
        account = await in_thread(svc.store.account, creds.username)
        ok = await auth.verify_password(
            creds.password,
            account.password_hash if account else None,
            n=svc.scrypt_n,
            slots=state.hash_slots,
        )
    finally:
        for key in keys:
            left = state.logins_in_flight.get(key, 1) - 1
            if left > 0:
                state.logins_in_flight[key] = left
            else:
                state.logins_in_flight.pop(key, None)
    if not ok or account is None:
        counts = [
            await in_thread(svc.store.record_login_failure, key, at, window=auth.WINDOW)
            for key in keys
        ]
        if counts[1] == auth.MAX_FAILURES:
            await in_thread(svc.store.audit, creds.username[:32], "login.locked", ip)
        LOGINS.labels("failed").inc()
        raise fail("password", "err.bad_login")
    LOGINS.labels("ok").inc()
    for key in keys:
        await in_thread(svc.store.clear_login_failures, key)
    raw_id, session = auth.new_session(account, at)
    # a fresh id at every login; an old cookie from this browser is dropped
    old = request.cookies.get(auth.SESSION_COOKIE)
    if old:
        await in_thread(svc.store.delete_session, auth.sha256_hex(old))
    await in_thread(svc.store.add_session, session)
    await in_thread(svc.store.audit, account.username, "login", ip)
    return raw_id, auth.Principal(account.id, account.username, account.role, session)


async def first_session(request: web.Request, account: Account) -> str:
    """Setup signs the new parent in at once (they just chose the password): a session id."""
    svc = request.app[SERVICES]
    raw_id, session = auth.new_session(account, now(request))
    await in_thread(svc.store.add_session, session)
    return raw_id


def set_session_cookie(request: web.Request, response: web.StreamResponse, raw_id: str) -> None:
    svc = request.app[SERVICES]
    response.set_cookie(
        auth.SESSION_COOKIE,
        raw_id,
        httponly=True,
        samesite="Strict",
        secure=svc.secure_cookies or request.secure,
        path="/",
        max_age=int(svc.session_absolute.total_seconds()),
    )


async def unlock_logins(request: web.Request, raw: Raw) -> str:
    """A parent forgives the failed logins from one address (all its accounts)."""
    svc = request.app[SERVICES]
    address = raw.get("address")
    if not isinstance(address, str) or not address.strip() or len(address) > 64:
        raise fail("address", "err.required")
    address = address.strip()
    cleared = await in_thread(svc.store.clear_login_failures_from, address)
    if not cleared:
        raise NotFound("no failed logins from that address")
    await in_thread(svc.store.audit, principal(request).username, "login.unlock", address)
    log.info("failed logins from %s forgiven by %s", address, principal(request).username)
    return address


async def logout(request: web.Request, response: web.StreamResponse) -> None:
    svc = request.app[SERVICES]
    p = principal(request)
    if p.session is not None:
        await in_thread(svc.store.delete_session, p.session.id_hash)
    response.del_cookie(auth.SESSION_COOKIE, path="/")
    await in_thread(svc.store.audit, p.username, "logout", "")


async def change_password(request: web.Request, raw: Raw) -> str:
    """Every session and API token of the account ends (a new password logs other browsers
    and API clients out); returns a new session id for this browser."""
    svc, state = request.app[SERVICES], request.app[STATE]
    p = principal(request)
    old, new = forms.parse_password_change(raw, p.username)
    account = await in_thread(svc.store.account_by_id, p.account_id)
    if not await auth.verify_password(
        old, account.password_hash, n=svc.scrypt_n, slots=state.hash_slots
    ):
        raise fail("old", "err.bad_old_password")
    pw_hash = await auth.hash_password(new, n=svc.scrypt_n, slots=state.hash_slots)
    # also deletes every session and API token of the account
    await in_thread(svc.store.set_password, account.id, pw_hash)
    await in_thread(svc.store.delete_sessions, account.id)
    await in_thread(svc.store.audit, p.username, "password.change", "")
    account = await in_thread(svc.store.account_by_id, p.account_id)
    raw_id, session = auth.new_session(account, max(svc.clock(), account.password_changed))
    await in_thread(svc.store.add_session, session)
    return raw_id


async def add_account(request: web.Request, raw: Raw) -> Account:
    svc, state = request.app[SERVICES], request.app[STATE]
    creds, role = forms.parse_new_account(raw, with_role=True)
    if await in_thread(svc.store.account, creds.username) is not None:
        raise fail("username", "err.username_taken")
    pw_hash = await auth.hash_password(creds.password, n=svc.scrypt_n, slots=state.hash_slots)
    try:
        account = await in_thread(svc.store.add_account, creds.username, pw_hash, role)
    except Conflict:
        raise fail("username", "err.username_taken") from None
    await record(request, "account.add", f"{account.username} ({role})")
    return account


async def delete_account(request: web.Request, account_id: int) -> None:
    svc = request.app[SERVICES]
    p = principal(request)
    if account_id == p.account_id:
        raise fail("account", "err.delete_self")
    account = await in_thread(svc.store.account_by_id, account_id)
    await in_thread(svc.store.delete_account, account_id)
    await in_thread(svc.store.delete_sessions, account_id)
    await record(request, "account.delete", account.username)


async def add_token(request: web.Request, raw: Raw) -> tuple[str, int]:
    svc = request.app[SERVICES]
    p = principal(request)
    name = forms.parse_token_name(raw)
    value = auth.new_token()
    token = await in_thread(svc.store.add_token, p.account_id, name, auth.sha256_hex(value))
    await record(request, "token.add", name)
    return value, token.id


async def delete_token(request: web.Request, token_id: int) -> None:
    svc = request.app[SERVICES]
    p = principal(request)
    owner = None if p.is_admin else p.account_id
    mine = {t.id: t for t in await in_thread(svc.store.tokens, owner)}
    token = await _remove_known(mine, token_id, what="token", remove=svc.store.delete_token)
    await record(request, "token.delete", token.name)


async def _remove_known(
    known: Mapping[int, T], item_id: int, *, what: str, remove: Callable[[int], object]
) -> T:
    """Remove the item `item_id` if it is among `known` (the ones the caller may touch), else
    NotFound(f"{what} {item_id}"). Returns the item (for the audit line)."""
    if item_id not in known:
        raise NotFound(f"{what} {item_id}")
    await in_thread(remove, item_id)
    return known[item_id]


# children --------------------------------------------------------------------------------


async def add_child(request: web.Request, raw: Raw) -> Child:
    svc = request.app[SERVICES]
    form = forms.parse_child(raw, now(request).date())
    existing = await in_thread(svc.store.children)
    if any(c.name.casefold() == form.name.casefold() for c in existing):
        raise fail("name", "err.child_exists")
    child = await in_thread(svc.store.add_child, form.name, form.born, lang=form.lang)
    await record(request, "child.add", f"{child.name} ({child.born.isoformat()})")
    return child


async def update_child(request: web.Request, child_id: int, raw: Raw) -> Child:
    svc = request.app[SERVICES]
    form = forms.parse_child(raw, now(request).date())
    existing = await in_thread(svc.store.children)
    if not any(c.id == child_id for c in existing):
        raise NotFound(f"child {child_id}")
    if any(c.name.casefold() == form.name.casefold() and c.id != child_id for c in existing):
        raise fail("name", "err.child_exists")
    child = await in_thread(
        svc.store.update_child, child_id, name=form.name, born=form.born, lang=form.lang
    )
    await record(request, "child.edit", f"{child.name} ({child.born.isoformat()})")
    return child


async def delete_child(request: web.Request, child_id: int) -> None:
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    await in_thread(svc.store.delete_child, child_id)
    await record(request, "child.delete", child.name)


async def save_child_settings(request: web.Request, child_id: int, raw: Raw) -> ChildSettings:
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    form = forms.parse_child_settings(
        raw, svc.categories.keys(), (svc.services_catalogue or {}).keys()
    )
    current = await in_thread(svc.store.settings, child_id)
    new = replace(
        current,
        blocked=form.blocked,
        allowed=form.allowed,
        safe_search=form.safe_search,
        youtube=form.youtube,
        services=form.services,
        mode=form.mode,
    )
    await in_thread(svc.store.save_settings, child_id, new)
    await record(request, "child.settings", f"{child.name}: {describe_settings(current, new)}")
    return new


async def save_learning_games(request: web.Request, child_id: int, raw: Raw) -> bool:
    """The per-child switch "learning games stay open when games are blocked" (issue 17)."""
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    on = forms.parse_learning_games(raw)
    current = await in_thread(svc.store.settings, child_id)
    if current.learning_games != on:
        await in_thread(svc.store.save_settings, child_id, replace(current, learning_games=on))
        await record(request, "child.settings", f"{child.name}: learning_games={on}")
    return on


def describe_settings(old: ChildSettings, new: ChildSettings) -> str:
    parts = []
    for name in ("blocked", "allowed", "services"):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            plus, minus = sorted(b - a), sorted(a - b)
            parts.append(
                f"{name}"
                + (f" +{','.join(plus)}" if plus else "")
                + (f" -{','.join(minus)}" if minus else "")
            )
    for name in ("safe_search", "youtube", "mode", "learning_games"):
        if getattr(old, name) != getattr(new, name):
            parts.append(f"{name}={getattr(new, name)}")
    return "; ".join(parts) or "–"


async def pause(request: web.Request, child_id: int, minutes: int | None) -> datetime | None:
    """minutes None: resume; 0: until resumed; else for that long."""
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    if minutes is None:
        until = None
    elif minutes == 0:
        until = PAUSE_FOREVER.replace(tzinfo=now(request).tzinfo)
    else:
        until = now(request) + timedelta(minutes=minutes)
    await in_thread(svc.store.set_pause, child_id, until)
    what = "resume" if until is None else "pause"
    await record(request, f"child.{what}", child.name + (f" · {minutes}′" if minutes else ""))
    return until


async def add_rule(request: web.Request, child_id: int, raw: Raw) -> Rule:
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    domain, kind = forms.parse_rule(raw)
    rules = await in_thread(svc.store.rules, child_id)
    if any(r.domain == domain and r.kind == kind for r in rules):
        raise fail("domain", "err.rule_exists")
    rule = await in_thread(svc.store.add_rule, child_id, domain, kind)
    await record(request, f"rule.{kind}", f"{child.name}: {domain}")
    return rule


@dataclass(frozen=True, slots=True)
class SavedRule:
    """What the site form saved, for the page to say so: the site as stored, the rule's kind,
    and the opposite rule it replaced ("deny" when an allow replaced a block), if any."""

    domain: str
    kind: str
    replaced: str = ""

    @property
    def what(self) -> dict[str, str]:
        out = {"site": self.domain, "kind": self.kind}
        if self.replaced:
            out["replaced"] = self.replaced
        return out


async def add_rule_saying_what(request: web.Request, child_id: int, raw: Raw) -> SavedRule:
    """add_rule, and what it did (the page says "Saved: allow youtube.com; this replaces
    your block of it")."""
    svc = request.app[SERVICES]
    before = await in_thread(svc.store.rules, child_id)
    rule = await add_rule(request, child_id, raw)
    opposite = {"allow": "deny", "deny": "allow"}.get(rule.kind, "")
    replaced = opposite if any(
        r.domain == rule.domain and r.kind == opposite for r in before) else ""
    return SavedRule(rule.domain, rule.kind, replaced)


async def remove_rule(request: web.Request, rule_id: int) -> None:
    svc = request.app[SERVICES]
    rules = {r.id: r for r in await in_thread(svc.store.rules)}
    rule = await _remove_known(rules, rule_id, what="rule", remove=svc.store.remove_rule)
    await record(request, f"rule.{rule.kind}.remove", f"#{rule.child_id}: {rule.domain}")


async def allow_site(request: web.Request, child_id: int, raw: Raw) -> str:
    """'Allow this site for this child': for good (minutes 0) or for a time (a grant)."""
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    domain = forms.parse_domain(raw)
    minutes = forms.parse_minutes(raw)
    if minutes == 0:
        rules = await in_thread(svc.store.rules, child_id)
        if not any(r.domain == domain and r.kind == "allow" for r in rules):
            await in_thread(svc.store.add_rule, child_id, domain, "allow")
        await record(request, "site.allow", f"{child.name}: {domain} · ∞")
    else:
        until = now(request) + timedelta(minutes=minutes)
        await in_thread(svc.store.add_grant, Grant(child_id=child_id, until=until, domain=domain))
        await record(request, "site.allow", f"{child.name}: {domain} · {minutes}′")
    return domain


async def end_grant(request: web.Request, child_id: int, grant_id: int) -> None:
    """End a temporary allow early."""
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    mine = {g.id: g for g in await in_thread(svc.store.grants) if g.child_id == child_id}
    grant = await _remove_known(mine, grant_id, what="grant", remove=svc.store.remove_grant)
    await record(request, "grant.end", f"{child.name}: {grant.domain or '–'}")


async def delete_device(request: web.Request, device_id: int) -> None:
    svc = request.app[SERVICES]
    device = await in_thread(svc.store.device, device_id)
    await in_thread(svc.store.delete_device, device_id)
    await record(request, "device.delete", device.name or ", ".join(device.identifiers))


async def add_schedule(request: web.Request, child_id: int, raw: Raw) -> Schedule:
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    form = forms.parse_schedule(raw, svc.categories.keys())
    schedule = await in_thread(
        svc.store.add_schedule,
        child_id,
        Schedule(
            name=form.name,
            kind=form.kind,
            weekdays=form.weekdays,
            start=form.start,
            end=form.end,
            categories=form.categories,
        ),
    )
    await record(
        request,
        "schedule.add",
        f"{child.name}: {form.name} {form.start:%H:%M}-{form.end:%H:%M}",
    )
    return schedule


async def remove_schedule(request: web.Request, child_id: int, schedule_id: int) -> None:
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    mine = {s.id: s for s in await in_thread(svc.store.schedules, child_id)}
    schedule = await _remove_known(
        mine, schedule_id, what="schedule", remove=svc.store.remove_schedule
    )
    await record(request, "schedule.remove", f"{child.name}: {schedule.name}")


async def add_exception(request: web.Request, raw: Raw) -> HouseholdException:
    svc = request.app[SERVICES]
    ids = [c.id for c in await in_thread(svc.store.children)]
    form = forms.parse_exception(raw, ids)
    exc = await in_thread(
        svc.store.add_exception,
        HouseholdException(
            name=form.name,
            first_day=form.first_day,
            last_day=form.last_day,
            child_ids=form.child_ids,
        ),
    )
    await record(request, "exception.add", f"{form.name} {form.first_day}..{form.last_day}")
    return exc


async def remove_exception(request: web.Request, exc_id: int) -> None:
    svc = request.app[SERVICES]
    known = {e.id: e for e in await in_thread(svc.store.exceptions)}
    exc = await _remove_known(known, exc_id, what="exception", remove=svc.store.remove_exception)
    await record(request, "exception.remove", exc.name)


# devices ---------------------------------------------------------------------------------


async def device_by_address(request: web.Request, address: str) -> Device:
    svc = request.app[SERVICES]
    ident = forms.parse_address(address)
    device = await in_thread(svc.store.device_by_identifier, ident)
    if device is None:
        raise NotFound(f"device {ident}")
    return device


async def update_device(request: web.Request, device: Device, raw: Raw) -> Device:
    """Assign (child / adults / nobody) and/or rename, validated together first."""
    svc = request.app[SERVICES]
    ids = [c.id for c in await in_thread(svc.store.children)]
    has_owner = any(k in raw for k in ("child", "owner", "adults"))
    owner = forms.parse_owner(raw, ids) if has_owner else device.owner
    name = forms.parse_device_name(raw) if "name" in raw else None
    if has_owner:
        device = await in_thread(svc.store.set_owner, device.id, owner)
        names = {c.id: c.name for c in await in_thread(svc.store.children)}
        if owner == ADULTS:
            who = "18+"
        else:
            who = names.get(owner, "?") if isinstance(owner, int) else "–"
        await record(request, "device.assign", f"{device.name or device.identifiers[0]} → {who}")
    if name is not None and name != device.name:
        device = await in_thread(svc.store.rename_device, device.id, name)
        await record(request, "device.rename", name)
    return device


async def merge_devices(request: web.Request, raw: Raw) -> Device:
    svc = request.app[SERVICES]
    keep, other = raw.get("keep"), raw.get("other")
    known = {d.id: d for d in await in_thread(svc.store.devices)}
    ids: list[int] = []
    for field, value in (("keep", keep), ("other", other)):
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value not in known:
            raise fail(field, "err.no_device")
        ids.append(value)
    if ids[0] == ids[1]:
        raise fail("other", "err.merge_same")
    device = await in_thread(svc.store.merge_devices, ids[0], ids[1])
    await record(
        request, "device.merge", f"{known[ids[1]].name or ids[1]} → {device.name or ids[0]}"
    )
    return device


# requests --------------------------------------------------------------------------------


async def answer_request(
    request: web.Request, request_id: int, *, approve: bool, raw: Raw
) -> AccessRequest:
    svc = request.app[SERVICES]
    minutes = forms.parse_minutes(raw) if approve else 0
    current = await in_thread(svc.store.request, request_id)
    if current.status != "pending":
        raise Conflict(f"request {request_id} is already {current.status}")
    answered = await in_thread(
        svc.store.answer_request,
        request_id,
        approve=approve,
        minutes=minutes,
        by=principal(request).username,
        now=now(request),
    )
    how = ("∞" if minutes == 0 else f"{minutes}′") if approve else "✗"
    await record(request, "request.answer", f"{answered.domain} · {how}")
    return answered


# daily time budgets ---------------------------------------------------------------------


def _child_profile(request: web.Request, child: Child) -> Profile:
    """The child's profile in force (exceptions decide weekends and holidays)."""
    profile = request.app[SERVICES].live_policy.value.profiles.get(child.id)
    return profile if profile is not None else Profile(child)


async def budget_standings(request: web.Request, child: Child) -> list[Standing]:
    svc = request.app[SERVICES]
    return await in_thread(child_standings, svc.store, _child_profile(request, child),
                           now(request).date())


async def set_budget(request: web.Request, child_id: int, slug: str, raw: Raw) -> Budget:
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    slug, school, weekends = forms.parse_budget(
        slug, raw.get("school_days"), raw.get("weekends")
    )
    budget = await in_thread(svc.store.set_budget, child_id, slug, school_days=school,
                             weekends=weekends)
    await record(request, "budget.set", f"{child.name}: {slug} {school}′/{weekends}′")
    return budget


async def remove_budget(request: web.Request, child_id: int, slug: str) -> None:
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    await in_thread(svc.store.remove_budget, child_id, slug)
    await record(request, "budget.remove", f"{child.name}: {slug}")


async def add_budget_time(request: web.Request, child_id: int, slug: str, raw: Raw) -> int:
    """Extra minutes today for one budget ("more time" from Home); the day's extra total."""
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, child_id)
    minutes = forms.parse_minutes(raw)
    if minutes == 0:
        raise fail("minutes", "err.minutes")
    total = await in_thread(svc.store.add_budget_extra, child_id, now(request).date(), slug,
                            minutes, by=principal(request).username)
    await record(request, "budget.extra", f"{child.name}: {slug} +{minutes}′")
    return total


# settings, feeds -------------------------------------------------------------------------


async def save_household(request: web.Request, raw: Raw) -> None:
    svc, state = request.app[SERVICES], request.app[STATE]
    children = await in_thread(svc.store.children)
    errors: dict[str, forms.Msg] = {}
    try:
        mode, days, lang = forms.parse_household(raw, svc.block_modes)
    except FormError as e:
        errors.update(e.errors)
    try:
        unknown = forms.parse_unknown_devices(raw, [c.name for c in children])
    except FormError as e:
        errors.update(e.errors)
    if errors:
        raise FormError(errors)
    if unknown is not None:
        await in_thread(svc.store.set_setting, "unknown_devices", unknown)
    await in_thread(svc.store.set_setting, "block_answer", mode)
    await in_thread(svc.store.set_setting, "retention_days", days)
    await in_thread(svc.store.set_setting, "ui_lang", lang)
    state.block_answer, state.household_lang = mode, lang
    await record(request, "settings", f"{mode} · {days} · {lang} · {unknown or '–'}")


def all_feeds(request: web.Request) -> list[Feed]:
    svc, state = request.app[SERVICES], request.app[STATE]
    feeds = list(svc.feeds)
    names = {f.name for f in feeds}
    added = svc.web_feeds() if svc.web_feeds is not None else state.added_feeds
    feeds += [f for f in added if f.name not in names]
    return feeds


def editable_feeds(request: web.Request) -> set[str]:
    """The feeds a parent may remove or turn off: those added in the web UI (the config
    file's belong to whoever runs nestguard)."""
    svc = request.app[SERVICES]
    if svc.web_feeds is None or svc.remove_feed is None:
        return set()
    yaml = {f.name for f in svc.feeds}
    return {f.name for f in svc.web_feeds() if f.name not in yaml}


def _editable(request: web.Request, name: str) -> str:
    if name not in editable_feeds(request):
        raise NotFound(f"no feed {name!r} added in the web UI")
    return name


async def remove_feed(request: web.Request, name: str) -> None:
    svc = request.app[SERVICES]
    assert svc.remove_feed is not None
    await svc.remove_feed(_editable(request, name))
    await record(request, "feed.remove", name)


async def enable_feed(request: web.Request, name: str, raw: Raw) -> bool:
    svc = request.app[SERVICES]
    assert svc.enable_feed is not None
    on = raw.get("enabled")
    if isinstance(on, str):
        on = on.strip().lower() in ("1", "true", "on", "yes")
    if not isinstance(on, bool):
        raise fail("enabled", "err.required")
    await svc.enable_feed(_editable(request, name), on)
    await record(request, "feed.enable" if on else "feed.disable", name)
    return on


async def add_feed(request: web.Request, raw: Raw) -> Feed:
    svc, state = request.app[SERVICES], request.app[STATE]
    feed = forms.parse_feed(
        raw,
        categories=svc.categories.keys(),
        existing={f.name for f in all_feeds(request)},
        allow_http=svc.allow_http_feeds,
        allow_loopback=svc.allow_loopback_feeds,
    )
    if svc.add_feed is None:
        raise fail("url", "err.feeds_readonly")
    try:
        await svc.add_feed(feed)
    except Exception as e:  # noqa: BLE001 - their FeedError or config error: shown to admin
        log.warning("adding feed %s failed: %s", feed.name, e)
        raise FormError({"url": ("err.feed_failed", {"reason": str(e)[:200]})}) from e
    state.added_feeds.append(feed)
    await record(request, "feed.add", f"{feed.name} {feed.url}")
    return feed


async def sync_now(request: web.Request) -> bool:
    """Start a sync in the background; False when one is already running."""
    svc, state = request.app[SERVICES], request.app[STATE]
    if svc.feed_sync is None:
        raise fail("sync", "err.feeds_readonly")
    if state.sync_task is not None and not state.sync_task.done():
        return False
    sync = svc.feed_sync

    async def run() -> None:
        try:
            await sync()
            state.sync_error = ""
        except Exception as e:  # noqa: BLE001 - shown on the lists page
            log.warning("feed sync failed: %s", e)
            state.sync_error = str(e)[:300]

    state.sync_task = asyncio.create_task(run(), name="webui-sync-now")
    await record(request, "feeds.sync", "")
    return True
