"""The JSON API under /api/v1 (the same actions as the pages).

Auth: the session cookie (writes send the CSRF token back as X-CSRF-Token) or an API token
(`Authorization: Bearer ng_…`). Errors: JSON {error, field?} with 400/401/403/404/409/429.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time
from typing import Any

from aiohttp import web

from blocklists.feed import Feed
from policy.budgets import Standing
from policy.model import Child, Device
from policy.store import (
    AccessRequest,
    Account,
    Conflict,
    NotFound,
    Rule,
    StoreError,
    StoreUnavailable,
)
from webui import actions, present
from webui.context import admin_only, in_thread, principal, translator
from webui.forms import FormError, parse_minutes
from webui.keys import SERVICES, STATE
from webui.middleware import json_error

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 64 * 1024


def api(handler: Handler) -> Handler:
    """Translate the actions' errors into JSON answers with the right status."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except FormError as e:
            t = translator(request)
            key, params = e.errors[e.field]
            return json_error(400, t(key, **params), e.field)
        except actions.Locked as e:
            return web.json_response(
                {"error": translator(request)("error.locked", until=e.until.strftime("%H:%M:%S")),
                 "until": e.until.isoformat()},
                status=429,
            )
        except NotFound as e:
            return json_error(404, str(e) or "not found")
        except Conflict as e:
            return json_error(409, str(e) or "conflict")
        except StoreUnavailable as e:  # a full or failing disk: 503, never the file's path
            log.warning("cannot save %s %s: %s", request.method, request.path, e)
            return json_error(503, translator(request)("error.503"))
        except StoreError as e:
            log.info("store refused %s %s: %s", request.method, request.path, e)
            return json_error(400, translator(request)("error.400"))

    return wrapper


async def body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise FormError({"body": ("err.json", {})})
    raw = await request.read()
    if len(raw) > MAX_BODY:
        raise FormError({"body": ("err.json", {})})
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise FormError({"body": ("err.json", {})}) from None
    if not isinstance(data, dict):
        raise FormError({"body": ("err.json", {})})
    return data


def _default(value: object) -> object:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(type(value).__name__)


def ok(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=_default))


def child_json(c: Child) -> dict[str, object]:
    return {"id": c.id, "name": c.name, "born": c.born.isoformat(), "lang": c.lang}


def device_json(d: Device, stats: dict[int, tuple[datetime | None, int]]) -> dict[str, object]:
    last, count = stats.get(d.id, (None, 0))
    return {
        "id": d.id, "name": d.name, "identifiers": list(d.identifiers), "owner": d.owner,
        "new": d.new, "last_seen": last.isoformat() if last else None, "queries_today": count,
    }


def account_json(a: Account) -> dict[str, object]:
    return {"id": a.id, "username": a.username, "role": a.role}


def rule_json(r: Rule) -> dict[str, object]:
    return {"id": r.id, "domain": r.domain, "kind": r.kind}


async def _device_stats(request: web.Request) -> dict[int, tuple[datetime | None, int]]:
    """Each device's last query and today's count, for device_json."""
    svc = request.app[SERVICES]
    return await in_thread(svc.store.device_stats, svc.clock().date())


def request_json(r: AccessRequest) -> dict[str, object]:
    return {
        "id": r.id, "child_id": r.child_id, "device_id": r.device_id, "client": r.client,
        "domain": r.domain, "reason": r.reason, "message": r.message,
        "created": r.created.isoformat(), "status": r.status, "answered_by": r.answered_by,
        "answered_at": r.answered_at.isoformat() if r.answered_at else None,
        "minutes": r.minutes,
    }


# setup, login ------------------------------------------------------------------------------


@routes.post("/api/v1/setup")
@api
async def api_setup(request: web.Request) -> web.StreamResponse:
    if request.app[STATE].has_accounts:
        return json_error(404, "setup is done")
    account = await actions.setup(request, await body(request))
    return ok(account_json(account), 201)


@routes.post("/api/v1/login")
@api
async def api_login(request: web.Request) -> web.StreamResponse:
    raw_id, p = await actions.login(request, await body(request))
    resp = ok({"username": p.username, "role": p.role, "csrf": p.csrf})
    actions.set_session_cookie(request, resp, raw_id)
    return resp


@routes.post("/api/v1/logout")
@api
async def api_logout(request: web.Request) -> web.StreamResponse:
    resp = ok({"ok": True})
    await actions.logout(request, resp)
    return resp


@routes.get("/api/v1/me")
@api
async def api_me(request: web.Request) -> web.StreamResponse:
    p = principal(request)
    return ok({"username": p.username, "role": p.role, "csrf": p.csrf or None})


@routes.put("/api/v1/password")
@api
async def api_password(request: web.Request) -> web.StreamResponse:
    raw_id = await actions.change_password(request, await body(request))
    resp = ok({"ok": True})
    actions.set_session_cookie(request, resp, raw_id)
    return resp


# children ---------------------------------------------------------------------------------


@routes.get("/api/v1/children")
@api
async def api_children(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    return ok([child_json(c) for c in await in_thread(svc.store.children)])


@routes.post("/api/v1/children")
@api
async def api_children_add(request: web.Request) -> web.StreamResponse:
    child = await actions.add_child(request, await body(request))
    return ok(child_json(child), 201)


def _id(request: web.Request, name: str = "id") -> int:
    return int(request.match_info[name])


@routes.get("/api/v1/children/{id:\\d+}")
@api
async def api_child(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    t = translator(request)
    child = await in_thread(svc.store.child, _id(request))
    settings = await in_thread(svc.store.settings, child.id)
    now = svc.clock()
    return ok({
        **child_json(child),
        "age": child.age_on(now.date()),
        "profile": present.profile_words(child, settings, svc.categories, now.date(), t),
        "settings": {
            "blocked": sorted(settings.blocked), "allowed": sorted(settings.allowed),
            "safe_search": settings.safe_search, "youtube": settings.youtube,
            "services": sorted(settings.services), "mode": settings.mode,
            "learning_games": settings.learning_games,
            "paused_until": settings.paused_until.isoformat() if settings.paused_until else None,
        },
        "rules": [rule_json(r) for r in await in_thread(svc.store.rules, child.id)],
        "grants": [{"id": g.id, "domain": g.domain, "category": g.category,
                    "until": g.until.isoformat()}
                   for g in await in_thread(svc.store.grants, active_at=now)
                   if g.child_id == child.id],
        "schedules": [{"id": s.id, "name": s.name, "kind": s.kind,
                       "weekdays": sorted(s.weekdays), "start": s.start.strftime("%H:%M"),
                       "end": s.end.strftime("%H:%M"), "categories": sorted(s.categories)}
                      for s in await in_thread(svc.store.schedules, child.id)],
    })


@routes.put("/api/v1/children/{id:\\d+}")
@api
async def api_child_edit(request: web.Request) -> web.StreamResponse:
    child = await actions.update_child(request, _id(request), await body(request))
    return ok(child_json(child))


@routes.delete("/api/v1/children/{id:\\d+}")
@api
async def api_child_delete(request: web.Request) -> web.StreamResponse:
    await actions.delete_child(request, _id(request))
    return ok({"ok": True})


@routes.put("/api/v1/children/{id:\\d+}/settings")
@api
async def api_child_settings(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    data = await body(request)
    # {"categories": {"gambling": "block"}, "safe_search": true, ...}; what is left out
    # keeps its current value (a form sends everything; an API client may send one field)
    cats = data.pop("categories", {})
    if not isinstance(cats, dict):
        raise FormError({"categories": ("err.choice", {})})
    learning = data.pop("learning_games", None)  # its own switch (issue 17)
    if learning is not None and not isinstance(learning, bool):
        raise FormError({"learning_games": ("err.choice", {})})
    current = await in_thread(svc.store.settings, _id(request))
    for slug in svc.categories:
        choice = "block" if slug in current.blocked else (
            "allow" if slug in current.allowed else "age")
        data[f"cat_{slug}"] = cats.pop(slug, choice)
    if cats:  # unknown category slugs
        raise FormError({"categories": ("err.choice", {})})
    data.setdefault("safe_search", current.safe_search)
    data.setdefault("youtube", current.youtube)
    data.setdefault("mode", current.mode)
    data.setdefault("services", sorted(current.services))
    await actions.save_child_settings(request, _id(request), data)
    if learning is not None:
        await actions.save_learning_games(request, _id(request), {"learning_games": learning})
    return ok({"ok": True})


@routes.post("/api/v1/children/{id:\\d+}/pause")
@api
async def api_child_pause(request: web.Request) -> web.StreamResponse:
    data = await body(request)
    minutes = parse_minutes(data) if "minutes" in data else 0
    until = await actions.pause(request, _id(request), minutes)
    return ok({"paused_until": until.isoformat() if until else None})


@routes.post("/api/v1/children/{id:\\d+}/resume")
@api
async def api_child_resume(request: web.Request) -> web.StreamResponse:
    await actions.pause(request, _id(request), None)
    return ok({"paused_until": None})


@routes.post("/api/v1/children/{id:\\d+}/rules")
@api
async def api_rule_add(request: web.Request) -> web.StreamResponse:
    rule = await actions.add_rule(request, _id(request), await body(request))
    return ok(rule_json(rule), 201)


@routes.delete("/api/v1/rules/{id:\\d+}")
@api
async def api_rule_delete(request: web.Request) -> web.StreamResponse:
    await actions.remove_rule(request, _id(request))
    return ok({"ok": True})


@routes.post("/api/v1/children/{id:\\d+}/allow")
@api
async def api_allow_site(request: web.Request) -> web.StreamResponse:
    domain = await actions.allow_site(request, _id(request), await body(request))
    return ok({"domain": domain}, 201)


@routes.post("/api/v1/children/{id:\\d+}/schedules")
@api
async def api_schedule_add(request: web.Request) -> web.StreamResponse:
    data = await body(request)
    data["weekdays"] = [str(d) for d in data.get("weekdays", [])] if isinstance(
        data.get("weekdays"), list) else data.get("weekdays")
    s = await actions.add_schedule(request, _id(request), data)
    return ok({"id": s.id, "name": s.name}, 201)


@routes.delete("/api/v1/children/{id:\\d+}/schedules/{sid:\\d+}")
@api
async def api_schedule_delete(request: web.Request) -> web.StreamResponse:
    await actions.remove_schedule(request, _id(request), _id(request, "sid"))
    return ok({"ok": True})


@routes.get("/api/v1/exceptions")
@api
async def api_exceptions(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    return ok([{"id": e.id, "name": e.name, "first_day": e.first_day.isoformat(),
                "last_day": e.last_day.isoformat(), "children": sorted(e.child_ids),
                "mode": e.mode} for e in await in_thread(svc.store.exceptions)])


@routes.post("/api/v1/exceptions")
@api
async def api_exception_add(request: web.Request) -> web.StreamResponse:
    data = await body(request)
    if isinstance(data.get("children"), list):
        data["children"] = [str(c) for c in data["children"]]
    exc = await actions.add_exception(request, data)
    return ok({"id": exc.id, "name": exc.name}, 201)


@routes.delete("/api/v1/exceptions/{id:\\d+}")
@api
async def api_exception_delete(request: web.Request) -> web.StreamResponse:
    await actions.remove_exception(request, _id(request))
    return ok({"ok": True})


# devices ------------------------------------------------------------------------------------


@routes.get("/api/v1/devices")
@api
async def api_devices(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    stats = await _device_stats(request)
    return ok([device_json(d, stats) for d in await in_thread(svc.store.devices)])


@routes.put("/api/v1/devices/{address}")
@api
async def api_device_update(request: web.Request) -> web.StreamResponse:
    device = await actions.device_by_address(request, request.match_info["address"])
    device = await actions.update_device(request, device, await body(request))
    return ok(device_json(device, await _device_stats(request)))


@routes.delete("/api/v1/devices/{address}")
@api
async def api_device_delete(request: web.Request) -> web.StreamResponse:
    device = await actions.device_by_address(request, request.match_info["address"])
    await actions.delete_device(request, device.id)
    return ok({"ok": True})


@routes.delete("/api/v1/children/{id:\\d+}/grants/{gid:\\d+}")
@api
async def api_grant_delete(request: web.Request) -> web.StreamResponse:
    await actions.end_grant(request, _id(request), _id(request, "gid"))
    return ok({"ok": True})


@routes.post("/api/v1/devices/merge")
@api
async def api_devices_merge(request: web.Request) -> web.StreamResponse:
    device = await actions.merge_devices(request, await body(request))
    return ok(device_json(device, await _device_stats(request)))


# activity, summary ---------------------------------------------------------------------------


@routes.get("/api/v1/activity")
@api
async def api_activity(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    q = request.query
    device_id: int | None = None
    if "device" in q:
        value = q["device"]
        if value.isdigit():
            device_id = int(value)
        else:
            device_id = (await actions.device_by_address(request, value)).id
    child = q.get("child", "")
    if child and not child.isdigit():
        raise FormError({"child": ("err.number", {})})
    limit = q.get("limit", "200")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise FormError({"limit": ("err.number", {})})
    rows = await in_thread(
        svc.store.activity,
        device_id=device_id,
        child_id=int(child) if child else None,
        blocked_only=q.get("blocked", "") in ("1", "true", "on"),
        search=q.get("q", "")[:100],
        limit=int(limit),
    )
    t = translator(request)
    tld = request.app[STATE].tld
    assert tld is not None
    return ok([{
        "id": r.id, "at": r.event.at.isoformat(), "client": r.event.client,
        "device_id": r.event.device_id, "child_id": r.event.child_id,
        "name": r.event.qname, "site": present.registrable(r.event.qname, tld),
        "type": r.event.qtype, "action": r.event.action, "reason": r.event.reason,
        "why": present.reason_text(r.event.reason, t, svc.categories, source=r.event.source),
    } for r in rows])


@routes.get("/api/v1/summary")
@api
async def api_summary(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    now = svc.clock()
    start = datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)
    summary = await in_thread(svc.store.summary, start)
    return ok({("unassigned" if k is None else str(k)): v for k, v in summary.items()})


# daily time budgets -------------------------------------------------------------------------


def standing_json(st: Standing) -> dict[str, object]:
    return {"slug": st.slug, "school_days": st.school_days, "weekends": st.weekends,
            "limit": st.limit, "extra": st.extra, "used": st.used, "left": st.left,
            "spent": st.spent, "warn": st.warn}


@routes.get("/api/v1/children/{id:\\d+}/budgets")
@api
async def api_budgets(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    child = await in_thread(svc.store.child, _id(request))
    rows = await actions.budget_standings(request, child)
    day = svc.clock().date()
    weekend = rows[0].weekend if rows else None
    return ok({"child": child.id, "day": day, "weekend": weekend,
               "budgets": [standing_json(st) for st in rows]})


@routes.put("/api/v1/children/{id:\\d+}/budgets/{slug}")
@api
async def api_budget_set(request: web.Request) -> web.StreamResponse:
    b = await actions.set_budget(request, _id(request), request.match_info["slug"],
                                 await body(request))
    return ok({"slug": b.slug, "school_days": b.school_days, "weekends": b.weekends})


@routes.delete("/api/v1/children/{id:\\d+}/budgets/{slug}")
@api
async def api_budget_delete(request: web.Request) -> web.StreamResponse:
    await actions.remove_budget(request, _id(request), request.match_info["slug"])
    return ok({"ok": True})


@routes.post("/api/v1/children/{id:\\d+}/budgets/{slug}/extra")
@api
async def api_budget_extra(request: web.Request) -> web.StreamResponse:
    total = await actions.add_budget_time(request, _id(request), request.match_info["slug"],
                                          await body(request))
    return ok({"slug": request.match_info["slug"], "extra": total})


# requests -----------------------------------------------------------------------------------


@routes.get("/api/v1/requests")
@api
async def api_requests(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    status = request.query.get("status") or None
    if status not in (None, "pending", "approved", "declined"):
        raise FormError({"status": ("err.choice", {})})
    return ok([request_json(r) for r in await in_thread(svc.store.requests, status=status)])


@routes.post("/api/v1/requests/{id:\\d+}/approve")
@api
async def api_request_approve(request: web.Request) -> web.StreamResponse:
    r = await actions.answer_request(request, _id(request), approve=True,
                                     raw=await body(request))
    return ok(request_json(r))


@routes.post("/api/v1/requests/{id:\\d+}/decline")
@api
async def api_request_decline(request: web.Request) -> web.StreamResponse:
    r = await actions.answer_request(request, _id(request), approve=False, raw={})
    return ok(request_json(r))


# tokens, accounts, audit, settings -------------------------------------------------------------


@routes.get("/api/v1/tokens")
@api
async def api_tokens(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    p = principal(request)
    tokens = await in_thread(svc.store.tokens, None if p.is_admin else p.account_id)
    return ok([{"id": t.id, "name": t.name, "account_id": t.account_id,
                "created": t.created.isoformat()} for t in tokens])


@routes.post("/api/v1/tokens")
@api
async def api_token_add(request: web.Request) -> web.StreamResponse:
    value, token_id = await actions.add_token(request, await body(request))
    return ok({"id": token_id, "token": value}, 201)


@routes.delete("/api/v1/tokens/{id:\\d+}")
@api
async def api_token_delete(request: web.Request) -> web.StreamResponse:
    await actions.delete_token(request, _id(request))
    return ok({"ok": True})


@routes.get("/api/v1/accounts")
@admin_only
@api
async def api_accounts(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    return ok([{**account_json(a), "created": a.created.isoformat()}
               for a in await in_thread(svc.store.accounts)])


@routes.post("/api/v1/accounts")
@admin_only
@api
async def api_account_add(request: web.Request) -> web.StreamResponse:
    a = await actions.add_account(request, await body(request))
    return ok(account_json(a), 201)


@routes.delete("/api/v1/accounts/{id:\\d+}")
@admin_only
@api
async def api_account_delete(request: web.Request) -> web.StreamResponse:
    await actions.delete_account(request, _id(request))
    return ok({"ok": True})


@routes.get("/api/v1/audit")
@api
async def api_audit(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    return ok([{"at": e.at.isoformat(), "who": e.who, "action": e.action, "detail": e.detail}
               for e in await in_thread(svc.store.audit_log, limit=500)])


@routes.get("/api/v1/settings")
@api
async def api_settings(request: web.Request) -> web.StreamResponse:
    svc, state = request.app[SERVICES], request.app[STATE]
    retention = await in_thread(svc.store.get_setting, "retention_days", svc.retention_days)
    unknown = await in_thread(svc.store.get_setting, "unknown_devices", "strictest")
    return ok({"block_answer": state.block_answer, "retention_days": retention,
               "lang": state.household_lang, "upstreams": list(svc.upstreams),
               "unknown_devices": unknown})


@routes.put("/api/v1/settings")
@admin_only
@api
async def api_settings_save(request: web.Request) -> web.StreamResponse:
    await actions.save_household(request, await body(request))
    return await api_settings(request)


# feeds (admin) ---------------------------------------------------------------------------------


def feed_json(f: Feed) -> dict[str, object]:
    return {"name": f.name, "url": f.url, "format": f.format, "category": f.category,
            "enabled": f.enabled, "pinned": bool(f.sha256), "signed": bool(f.signature)}


@routes.get("/api/v1/feeds")
@admin_only
@api
async def api_feeds(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    statuses = {s.name: s for s in await in_thread(svc.store.feed_statuses)}
    out = []
    for f in actions.all_feeds(request):
        s = statuses.get(f.name)
        out.append({**feed_json(f), "status": None if s is None else {
            "last_try": s.last_try, "last_success": s.last_success, "entries": s.entries,
            "rejected": s.rejected, "error": s.error}})
    return ok(out)


@routes.post("/api/v1/feeds")
@admin_only
@api
async def api_feed_add(request: web.Request) -> web.StreamResponse:
    feed = await actions.add_feed(request, await body(request))
    return ok(feed_json(feed), 201)


@routes.delete("/api/v1/feeds/{name}")
@admin_only
@api
async def api_feed_remove(request: web.Request) -> web.StreamResponse:
    await actions.remove_feed(request, request.match_info["name"])
    return web.Response(status=204)


@routes.put("/api/v1/feeds/{name}/enabled")
@admin_only
@api
async def api_feed_enable(request: web.Request) -> web.StreamResponse:
    on = await actions.enable_feed(request, request.match_info["name"], await body(request))
    return ok({"name": request.match_info["name"], "enabled": on})


@routes.post("/api/v1/feeds/sync")
@admin_only
@api
async def api_feed_sync(request: web.Request) -> web.StreamResponse:
    started = await actions.sync_now(request)
    return ok({"started": started}, 202 if started else 409)
