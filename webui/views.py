"""HTML pages. Thin: forms.py validates (via actions.py), the store writes, then
POST-redirect-GET. A failed form is re-rendered with a message next to each bad field."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, time, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import prometheus_client
from aiohttp import web

from blocklists.feed import FORMATS
from policy.budgets import Standing
from policy.decide import after_allow
from policy.model import ADULTS, Action, Child, Device
from policy.store import AccessRequest, Conflict, NotFound, StoreError
from webui import actions, auth, present, static
from webui.actions import SavedRule
from webui.context import (
    admin_only,
    category_name,
    form_state,
    in_thread,
    page,
    principal,
    render,
    see_other,
    translator,
)
from webui.forms import FormError, form_fields
from webui.i18n import LANGS
from webui.keys import SERVICES, SETTINGS_PARTS, STATE

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

Ctx = dict[str, Any]


FormAction = Callable[[web.Request, Mapping[str, object]], Awaitable[object]]
FormPage = Callable[[web.Request, Ctx, int], Awaitable[web.Response]]


async def _form_post(request: web.Request, form_id: str, *, action: FormAction,
                     page: FormPage, then: web.HTTPSeeOther) -> web.StreamResponse:
    """A page's form, POST-redirect-GET: run `action` on the posted fields, then redirect
    (`then`); on a FormError show `page` again with the form's values and messages (400)."""
    raw = form_fields(await request.post())
    try:
        await action(request, raw)
    except FormError as e:
        return await page(request, form_state(request, form_id, raw, e), 400)
    raise then


def safe_next(value: str) -> str:
    """Only local paths after login (no open redirect)."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def day_start(now: datetime) -> datetime:
    return datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)


# public: setup, login, language, health, metrics, static -------------------------------


@routes.get("/setup")
async def setup_page(request: web.Request) -> web.Response:
    if request.app[STATE].has_accounts:
        raise web.HTTPNotFound()
    return render(request, "setup.html", {
        "form": form_state(request, "setup", {}, None),
        "need_code": bool(request.app[SERVICES].setup_code),
    })


@routes.post("/setup")
async def setup_submit(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    try:
        account = await actions.setup(request, raw)
    except FormError as e:
        return render(request, "setup.html", {
            "form": form_state(request, "setup", raw, e),
            "need_code": bool(request.app[SERVICES].setup_code),
        }, status=400)
    except NotFound:
        raise web.HTTPNotFound() from None
    except actions.Locked as e:
        return render(request, "setup.html", {
            "form": form_state(request, "setup", raw, FormError(
                {"code": ("error.locked", {"until": e.until.strftime("%H:%M:%S")})})),
            "need_code": True,
        }, status=429)
    # signed in at once: the next step is adding a child, not typing the password again
    resp = see_other("/", "welcome")
    actions.set_session_cookie(request, resp, await actions.first_session(request, account))
    raise resp


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    if not request.app[STATE].has_accounts:
        raise web.HTTPSeeOther("/setup")
    return render(request, "login.html", {
        "form": form_state(request, "login", {}, None),
        "next": safe_next(request.query.get("next", "/")),
        "locked": None,
    })


@routes.post("/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    nxt = safe_next(str(raw.get("next", "/")))
    try:
        raw_id, _ = await actions.login(request, raw)
    except FormError as e:
        return render(request, "login.html", {
            "form": form_state(request, "login", raw, e), "next": nxt, "locked": None,
        }, status=400)
    except actions.Locked as e:
        return render(request, "login.html", {
            "form": form_state(request, "login", raw, None), "next": nxt,
            "locked": e.until.strftime("%H:%M:%S"),
        }, status=429)
    resp = web.HTTPSeeOther(nxt)
    actions.set_session_cookie(request, resp, raw_id)
    raise resp


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    resp = web.HTTPSeeOther("/login")
    await actions.logout(request, resp)
    raise resp


@routes.get("/lang/{code}")
async def set_lang(request: web.Request) -> web.StreamResponse:
    code = request.match_info["code"]
    if code not in LANGS:
        raise web.HTTPNotFound()
    resp = web.HTTPSeeOther(safe_next(request.query.get("next", "/")))
    resp.set_cookie(auth.LANG_COOKIE, code, max_age=365 * 86400, samesite="Strict",
                    httponly=True, path="/", secure=request.app[SERVICES].secure_cookies)
    raise resp


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = prometheus_client.generate_latest()
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


@routes.get("/static/{name}")
async def static_file(request: web.Request) -> web.Response:
    return static.serve(request.match_info["name"])


# home -------------------------------------------------------------------------------


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    t = translator(request)
    now = svc.clock()
    children = await in_thread(svc.store.children)
    summary = await in_thread(svc.store.summary, day_start(now))
    devices = await in_thread(svc.store.devices)
    more_time = await pending_more_time(request)
    profiles = svc.live_policy.value.profiles
    cards = []
    for child in children:
        s = summary.get(child.id, {})
        settings = await in_thread(svc.store.settings, child.id)
        tops = cast(list[tuple[str, int]], s.get("top_categories") or [])
        cards.append({
            "child": child,
            "age": child.age_on(now.date()),
            "queries": s.get("queries", 0),
            "blocked": s.get("blocked", 0),
            "bypass": s.get("bypass", 0),
            "security": s.get("security", 0),
            "top": [(category_name(svc.categories.get(str(c)), str(c), t.lang), n)
                    for c, n in tops][:3],
            "paused": settings.paused_until is not None and settings.paused_until > now,
            "paused_until": settings.paused_until,
            "forever": settings.paused_until is not None
            and settings.paused_until.year >= 9999,
            "budgets": await budget_rows(request, child, more_time),
            # a schedule in force now ("Bedtime until 06:30"); a pause has its own line
            "in_force": present.in_force_now(replace(profile, paused_until=None), now, t)
            if (profile := profiles.get(child.id)) is not None else "",
        })
    new_devices = [d for d in devices if d.new]
    others = summary.get(None, {})
    problems = set(svc.health()) if svc.health is not None else set()
    if svc.store.write_failing:
        problems.add("store")
    return await page(request, "home.html", {
        "disk_trouble": bool(problems & {"activity_log", "store"}),
        "cards": cards,
        "new_devices": new_devices,
        "any_devices": bool(devices),
        "others": others,
        "today": now.date(),
    })


# daily time budgets -----------------------------------------------------------------------


async def pending_more_time(request: web.Request) -> dict[tuple[int, str], AccessRequest]:
    """(child id, budget slug) -> the newest pending "more time" request."""
    out: dict[tuple[int, str], AccessRequest] = {}
    for r in await in_thread(request.app[SERVICES].store.requests, status="pending"):
        if r.child_id is not None and r.reason.startswith("budget:"):
            out.setdefault((r.child_id, r.reason[7:]), r)
    return out


async def budget_rows(
    request: web.Request, child: Child, more_time: Mapping[tuple[int, str], AccessRequest]
) -> list[dict[str, object]]:
    """Today's budgets of a child for the pages (_budget_bars.html, _budgets.html)."""
    t = translator(request)
    return [
        {"st": st, "name": present.budget_name(st.slug, t),
         "pct": 100 if st.limit <= 0 else min(100, round(100 * st.used / st.limit)),
         "ask": more_time.get((child.id, st.slug))}
        for st in await actions.budget_standings(request, child)
    ]


async def budget_warnings(
    request: web.Request, children: list[Child], child_id: int | None
) -> list[tuple[Child, str, Standing]]:
    """(child, budget name, standing) of budgets with 5 minutes or less left, or spent."""
    t = translator(request)
    out = []
    for child in children:
        if child_id is None or child.id == child_id:
            for st in await actions.budget_standings(request, child):
                if st.warn or st.spent:
                    out.append((child, present.budget_name(st.slug, t), st))
    return out


@routes.post("/children/{id:\\d+}/budgets")
async def child_budget_set(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    child_id = _child_id(request)
    try:
        await actions.set_budget(request, child_id, str(raw.get("slug", "")), raw)
    except FormError as e:
        return await child_page(request, child_id, form_state(request, "budget", raw, e), 400)
    except NotFound:
        raise web.HTTPNotFound() from None
    raise see_other(f"/children/{child_id}?open=sec-budgets", "saved#sec-budgets")


@routes.post("/children/{id:\\d+}/budgets/{slug}/delete")
async def child_budget_delete(request: web.Request) -> web.StreamResponse:
    child_id = _child_id(request)
    await _or_404(actions.remove_budget(request, child_id, request.match_info["slug"]))
    raise see_other(f"/children/{child_id}?open=sec-budgets", "removed#sec-budgets")


@routes.post("/children/{id:\\d+}/budgets/{slug}/extra")
async def child_budget_extra(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    child_id = _child_id(request)
    back = _back(request, raw)
    try:
        await actions.add_budget_time(request, child_id, request.match_info["slug"], raw)
    except NotFound:
        raise web.HTTPNotFound() from None
    except FormError:
        raise see_other(back, "") from None
    raise see_other(back, "saved")


# children -------------------------------------------------------------------------------


async def children_page(request: web.Request, form: Ctx | None = None, status: int = 200
                        ) -> web.Response:
    svc = request.app[SERVICES]
    now = svc.clock()
    children = await in_thread(svc.store.children)
    exceptions = await in_thread(svc.store.exceptions)
    return await page(request, "children.html", {
        "children": [(c, c.age_on(now.date())) for c in children],
        "names": {c.id: c.name for c in children},
        "exceptions": exceptions,
        "form": form or form_state(request, "", {}, None),
        "today": now.date().isoformat(),
    }, status=status)


@routes.get("/children")
async def children_list(request: web.Request) -> web.Response:
    return await children_page(request)


@routes.post("/children")
async def children_add(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    try:
        child = await actions.add_child(request, raw)
    except FormError as e:
        return await children_page(request, form_state(request, "child-add", raw, e), 400)
    raise see_other(f"/children/{child.id}?open=sec-cats", "child_added")


@routes.post("/exceptions")
async def exceptions_add(request: web.Request) -> web.StreamResponse:
    return await _form_post(request, "exception", action=actions.add_exception,
                            page=children_page, then=see_other("/children", "saved"))


@routes.post("/exceptions/{id:\\d+}/delete")
async def exceptions_delete(request: web.Request) -> web.StreamResponse:
    await _or_404(actions.remove_exception(request, int(request.match_info["id"])))
    raise see_other("/children", "removed")


async def _or_404(aw: Awaitable[object]) -> object:
    try:
        return await aw
    except NotFound:
        raise web.HTTPNotFound() from None


# the child's page: each form's section (a <details> the page opens again after a save or
# an error, and scrolls to): form id -> section id
CHILD_SECTIONS = {
    "settings": "sec-cats",
    "rule": "sec-sites",
    "schedule": "sec-sched",
    "child-edit": "sec-edit",
    "learning-games": "sec-learning",
    "budget": "sec-budgets",
}


async def child_page(request: web.Request, child_id: int, form: Ctx | None = None,
                     status: int = 200) -> web.Response:
    svc, state = request.app[SERVICES], request.app[STATE]
    t = translator(request)
    try:
        child = await in_thread(svc.store.child, child_id)
    except NotFound:
        raise web.HTTPNotFound() from None
    now = svc.clock()
    settings = await in_thread(svc.store.settings, child_id)
    age = child.age_on(now.date())
    rules = await in_thread(svc.store.rules, child_id)
    schedules = await in_thread(svc.store.schedules, child_id)
    grants = [g for g in await in_thread(svc.store.grants, active_at=now) if g.child_id == child_id]
    devices = [d for d in await in_thread(svc.store.devices) if d.owner == child_id]
    catalogue = svc.services_catalogue or {}
    services = [(k, service_name(v, k, t.lang)) for k, v in sorted(catalogue.items())]
    categories = present.category_rows(svc.categories, settings, age, t.lang)
    form = form or form_state(request, "", {}, None)
    profile = svc.live_policy.value.profiles.get(child_id)
    assert state.tld is not None
    saved = present.saved_rule(request.query, rules, state.tld, t)
    extra: dict[str, object] = {"notice": ""} if saved else {}  # "Saved." said once
    return await page(request, "child.html", {
        **extra,
        "child": child,
        "age": age,
        "settings": settings,
        "words": present.profile_words(child, settings, svc.categories, now.date(), t),
        "in_force": present.in_force_now(profile, now, t) if profile is not None else "",
        "summary": present.child_summary(settings, categories, rules, schedules, grants,
                                         dict(services), t),
        "saved": saved,
        "categories": categories,
        "category_names": {s: category_name(c, s, t.lang) for s, c in svc.categories.items()},
        "rules": rules,
        "schedules": schedules,
        "grants": grants,
        "devices": devices,
        "services": services,
        "form": form,
        "open_section": CHILD_SECTIONS.get(str(form["id"]), request.query.get("open", "")),
        "weekdays": range(7),
        "paused": settings.paused_until is not None and settings.paused_until > now,
        "budgets": await budget_rows(request, child, await pending_more_time(request)),
        "budget_choices": present.budget_choices(t),
    }, status=status)


def service_name(entry: object, key: str, lang: str) -> str:
    names = getattr(entry, "names", None)
    if isinstance(entry, Mapping):
        names = entry.get("names", names)
        if names is None and isinstance(entry.get("name"), str):
            return str(entry["name"])
    if isinstance(names, Mapping):
        value = names.get(lang) or names.get("en")
        if isinstance(value, str):
            return value
    name = getattr(entry, "name", None)
    return name if isinstance(name, str) else key


def _child_id(request: web.Request) -> int:
    return int(request.match_info["id"])


@routes.get("/children/{id:\\d+}")
async def child_view(request: web.Request) -> web.Response:
    return await child_page(request, _child_id(request))


ChildAction = Callable[[web.Request, int, Mapping[str, object]], Awaitable[object]]


async def _child_form(request: web.Request, form_id: str, action: ChildAction,
                      done: str) -> web.StreamResponse:
    child_id = _child_id(request)
    raw = form_fields(await request.post())
    try:
        saved = await action(request, child_id, raw)
    except FormError as e:
        return await child_page(request, child_id, form_state(request, form_id, raw, e), 400)
    except NotFound:
        raise web.HTTPNotFound() from None
    section = CHILD_SECTIONS[form_id]
    extra = f"&{urlencode(saved.what)}" if isinstance(saved, SavedRule) else ""
    raise see_other(f"/children/{child_id}?open={section}{extra}", f"{done}#{section}")


@routes.post("/children/{id:\\d+}")
async def child_edit(request: web.Request) -> web.StreamResponse:
    return await _child_form(request, "child-edit", actions.update_child, "saved")


@routes.post("/children/{id:\\d+}/settings")
async def child_settings(request: web.Request) -> web.StreamResponse:
    return await _child_form(request, "settings", actions.save_child_settings, "saved")


@routes.post("/children/{id:\\d+}/learning-games")
async def child_learning_games(request: web.Request) -> web.StreamResponse:
    return await _child_form(request, "learning-games", actions.save_learning_games, "saved")


@routes.post("/children/{id:\\d+}/rules")
async def child_rule_add(request: web.Request) -> web.StreamResponse:
    return await _child_form(request, "rule", actions.add_rule_saying_what, "saved")


@routes.post("/children/{id:\\d+}/schedules")
async def child_schedule_add(request: web.Request) -> web.StreamResponse:
    return await _child_form(request, "schedule", actions.add_schedule, "saved")


@routes.post("/children/{id:\\d+}/rules/{rule:\\d+}/delete")
async def child_rule_delete(request: web.Request) -> web.StreamResponse:
    await _or_404(actions.remove_rule(request, int(request.match_info["rule"])))
    raise see_other(f"/children/{_child_id(request)}?open=sec-sites", "removed#sec-sites")


@routes.post("/children/{id:\\d+}/schedules/{sid:\\d+}/delete")
async def child_schedule_delete(request: web.Request) -> web.StreamResponse:
    child_id = _child_id(request)
    await _or_404(actions.remove_schedule(request, child_id, int(request.match_info["sid"])))
    raise see_other(f"/children/{child_id}?open=sec-sched", "removed#sec-sched")


@routes.post("/children/{id:\\d+}/grants/{gid:\\d+}/delete")
async def child_grant_delete(request: web.Request) -> web.StreamResponse:
    child_id = _child_id(request)
    await _or_404(actions.end_grant(request, child_id, int(request.match_info["gid"])))
    raise see_other(f"/children/{child_id}?open=sec-sites", "removed#sec-sites")


@routes.post("/children/{id:\\d+}/delete")
async def child_delete(request: web.Request) -> web.StreamResponse:
    await _or_404(actions.delete_child(request, _child_id(request)))
    raise see_other("/children", "removed")


@routes.post("/children/{id:\\d+}/pause")
async def child_pause(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    minutes = raw.get("minutes", "0")
    mins = int(minutes) if isinstance(minutes, str) and minutes.isdigit() else 0
    await _or_404(actions.pause(request, _child_id(request), min(mins, 7 * 24 * 60)))
    raise see_other(_back(request, raw), "paused")


@routes.post("/children/{id:\\d+}/resume")
async def child_resume(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    await _or_404(actions.pause(request, _child_id(request), None))
    raise see_other(_back(request, raw), "resumed")


def _back(request: web.Request, raw: Mapping[str, object], *, keep_query: bool = False) -> str:
    """Where to go after an action: the local page it came from; with `keep_query`, with
    that page's filters (less an earlier notice)."""
    back = raw.get("back", "/")
    path, _, query = safe_next(back if isinstance(back, str) else "/").partition("?")
    if keep_query and query:
        kept = [(k, v) for k, v in parse_qsl(query) if k != "done"]
        return path + ("?" + urlencode(kept) if kept else "")
    return path


@routes.post("/children/{id:\\d+}/allow")
async def child_allow_site(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    child_id = _child_id(request)
    back = _back(request, raw, keep_query=True)
    try:
        before = await in_thread(request.app[SERVICES].store.rules, child_id)
        domain = await actions.allow_site(request, child_id, raw)
    except FormError as e:
        return await activity_page(request, form_state(request, "allow", raw, e), 400)
    except NotFound:
        raise web.HTTPNotFound() from None
    if raw.get("minutes") == "0":  # for good: replaces a deny of the same name
        replaced = any(r.kind == "deny" and r.domain == domain for r in before)
        raise see_other(back, "allowed_replaced" if replaced else "allowed")
    # for a while: the parent's own deny still comes first (decide.py, step 3)
    svc = request.app[SERVICES]
    profile = svc.live_policy.value.profiles.get(child_id)
    now_ = svc.clock()
    denied = profile is not None and after_allow(
        profile, domain, now_, until=now_ + timedelta(minutes=1)).reason == "parent:deny"
    raise see_other(back, "allowed_but_denied" if denied else "allowed")


# devices ---------------------------------------------------------------------------------


async def devices_page(request: web.Request, form: Ctx | None = None, status: int = 200
                       ) -> web.Response:
    svc = request.app[SERVICES]
    now = svc.clock()
    devices = await in_thread(svc.store.devices)
    children = await in_thread(svc.store.children)
    stats = await in_thread(svc.store.device_stats, now.date())
    devices.sort(key=lambda d: (not d.new, d.name.lower() if d.name else "~", d.id))
    return await page(request, "devices.html", {
        "devices": devices,
        "children": children,
        "names": {c.id: c.name for c in children},
        "stats": stats,
        "form": form or form_state(request, "", {}, None),
        "adults": ADULTS,
    }, status=status)


@routes.get("/devices")
async def devices_list(request: web.Request) -> web.Response:
    return await devices_page(request)


@routes.post("/devices/{id:\\d+}")
async def device_update(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    raw = form_fields(await request.post())
    try:
        device: Device = await in_thread(svc.store.device, int(request.match_info["id"]))
        await actions.update_device(request, device, raw)
    except NotFound:
        raise web.HTTPNotFound() from None
    except FormError as e:
        return await devices_page(request, form_state(request, f"device-{device.id}", raw, e),
                                  400)
    raise see_other("/devices", "saved")


@routes.post("/devices/{id:\\d+}/delete")
async def device_delete(request: web.Request) -> web.StreamResponse:
    await _or_404(actions.delete_device(request, int(request.match_info["id"])))
    raise see_other("/devices", "removed")


@routes.post("/devices/merge")
async def devices_merge(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    try:
        await actions.merge_devices(request, raw)
    except FormError as e:
        return await devices_page(request, form_state(request, "merge", raw, e), 400)
    except StoreError as e:
        log.info("merge refused: %s", e)
        return await devices_page(request, form_state(
            request, "merge", raw, FormError({"other": ("err.merge_failed", {})})), 400)
    raise see_other("/devices", "merged")


# activity ---------------------------------------------------------------------------------


def _int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "")
    return int(value) if value.isdigit() else None


ACTIVITY_PAGE = 200  # lookups per page: "show more" adds as many again
ACTIVITY_MAX = 5000


async def activity_page(request: web.Request, form: Ctx | None = None, status: int = 200
                        ) -> web.Response:
    svc, state = request.app[SERVICES], request.app[STATE]
    t = translator(request)
    child_id = _int_param(request, "child")
    device_id = _int_param(request, "device")
    blocked_only = request.query.get("blocked", "") in ("1", "on")
    search = request.query.get("q", "").strip()[:100]
    limit = min(max(_int_param(request, "rows") or ACTIVITY_PAGE, ACTIVITY_PAGE), ACTIVITY_MAX)
    children = await in_thread(svc.store.children)
    devices = await in_thread(svc.store.devices)
    # addresses of known devices: a device's first lookups were logged before it was known
    device_of = {i: d.id for d in devices for i in d.identifiers}
    clients = [i for d in devices if d.id == device_id for i in d.identifiers]
    rows = await in_thread(svc.store.activity, device_id=device_id, child_id=child_id,
                           blocked_only=blocked_only, search=search, limit=limit + 1,
                           clients=clients)
    more = len(rows) > limit
    rows = rows[:limit]
    assert state.tld is not None
    groups = present.group_by_site(rows, state.tld, t, svc.categories, device_of)
    device_owner = {d.id: d.owner for d in devices}
    if device_id is not None and child_id is None:
        owner = device_owner.get(device_id)
        child_id_for_allow = owner if isinstance(owner, int) else None
    else:
        child_id_for_allow = child_id
    names = {c.id: c.name for c in children}
    if child_id_for_allow not in names:
        child_id_for_allow = None
    # the profile unassigned devices are filtered with ("filtered as Bé Na")
    default = svc.live_policy.value.default_profile
    filtered_as = default.child.name if default.child is not None else ""
    query = {k: v for k, v in request.query.items() if k not in ("done", "rows")}
    return await page(request, "activity.html", {
        "groups": groups,
        "children": children,
        "devices": devices,
        "names": names,
        "device_names": {d.id: d.name or ", ".join(d.identifiers) for d in devices},
        "child_id": child_id,
        "device_id": device_id,
        "allow_child": child_id_for_allow,
        "filtered_as": filtered_as,
        "blocked_only": blocked_only,
        "search": search,
        "count": len(rows),
        "more_url": ("/activity?" + urlencode({**query, "rows": str(limit + ACTIVITY_PAGE)})
                     if more and limit < ACTIVITY_MAX else ""),
        "form": form or form_state(request, "", {}, None),
        "budget_warnings": await budget_warnings(request, children, child_id),
    }, status=status)


@routes.get("/activity")
async def activity(request: web.Request) -> web.Response:
    return await activity_page(request)


# requests --------------------------------------------------------------------------------


@routes.get("/requests")
async def requests_page(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    reqs = await in_thread(svc.store.requests)
    children = await in_thread(svc.store.children)
    devices = {d.id: d for d in await in_thread(svc.store.devices)}
    t = translator(request)
    pending = [r for r in reqs if r.status == "pending"]
    answered = [r for r in reqs if r.status != "pending"][:30]
    return await page(request, "requests.html", {
        "pending_reqs": pending,
        "answered": answered,
        "names": {c.id: c.name for c in children},
        "devices": devices,
        "why": {r.id: present.reason_text(r.reason, t, svc.categories) for r in reqs},
        "still": _still_blocked(request, reqs, _int_param(request, "yes")),
    })


def _still_blocked(request: web.Request, reqs: Sequence[AccessRequest], yes: int | None
                   ) -> dict[str, object] | None:
    """After a yes: what still blocks the site now (bedtime until 06:30 after "Yes, always",
    a pause, the parent's own block after "Yes, 30 minutes"), and for a bedtime the minutes
    until it ends (for "open it until then too"); None when the yes opened it."""
    svc = request.app[SERVICES]
    r = next((r for r in reqs if r.id == yes), None)
    if r is None or r.status != "approved" or r.child_id is None:
        return None
    profile = svc.live_policy.value.profiles.get(r.child_id)
    if profile is None:
        return None
    now = svc.clock()
    until = None
    if r.minutes and r.answered_at is not None:
        until = r.answered_at + timedelta(minutes=r.minutes)
    verdict = after_allow(profile, r.domain, now, until=until)
    if verdict.action != Action.BLOCK:
        return None
    t = translator(request)
    end = present.window_ends(verdict, profile, now)
    return {
        "domain": r.domain,
        "child_id": r.child_id,
        "text": t("requests.still_denied", site=r.domain) if verdict.reason == "parent:deny"
        else t("requests.still_applies", site=r.domain,
               what=present.in_force_text(verdict, profile, now, t)),
        "minutes": -(-int((end - now).total_seconds()) // 60) if end is not None else 0,
        "until": end.strftime("%H:%M") if end is not None else "",
    }


@routes.post("/requests/{id:\\d+}/approve")
async def request_approve(request: web.Request) -> web.StreamResponse:
    return await _answer(request, approve=True)


@routes.post("/requests/{id:\\d+}/decline")
async def request_decline(request: web.Request) -> web.StreamResponse:
    return await _answer(request, approve=False)


async def _answer(request: web.Request, *, approve: bool) -> web.StreamResponse:
    raw = form_fields(await request.post())
    request_id = int(request.match_info["id"])
    denied = await _denied_before(request, request_id)
    try:
        answered = await actions.answer_request(request, request_id, approve=approve, raw=raw)
    except NotFound:
        raise web.HTTPNotFound() from None
    except (FormError, Conflict):
        current = await in_thread(request.app[SERVICES].store.request, request_id)
        done = "already" if current.status != "pending" else "no_child"
        back = _back(request, raw) if "back" in raw else "/requests"
        raise see_other(back, done) from None
    if "back" in raw:  # answered from Home (budgets' "more time")
        raise see_other(_back(request, raw), "approved" if approve else "declined")
    if not approve:
        raise see_other("/requests", "declined")
    # "Yes, always": the page says what still applies to the site (see _still_blocked)
    where = f"/requests?yes={request_id}"  # the page says what still applies, if anything
    # "Yes, always" replaces a block the parent set for the site: say so
    raise see_other(where, "approved_replaced" if denied and not answered.minutes
                    else "approved")


async def _denied_before(request: web.Request, request_id: int) -> bool:
    """Whether the parent blocked the requested site for the child (an always-yes lifts it)."""
    store = request.app[SERVICES].store
    try:
        req = await in_thread(store.request, request_id)
    except NotFound:
        return False
    if req.child_id is None:
        return False
    return any(r.domain == req.domain and r.kind == "deny"
               for r in await in_thread(store.rules, req.child_id))


# lists (admin) ------------------------------------------------------------------------------


async def lists_page(request: web.Request, form: Ctx | None = None, status: int = 200
                     ) -> web.Response:
    svc, state = request.app[SERVICES], request.app[STATE]
    t = translator(request)
    statuses = {s.name: s for s in await in_thread(svc.store.feed_statuses)}
    feeds = actions.all_feeds(request)
    return await page(request, "lists.html", {
        "feeds": feeds,
        "statuses": statuses,
        "category_names": {s: category_name(c, s, t.lang) for s, c in svc.categories.items()},
        "syncing": state.sync_task is not None and not state.sync_task.done(),
        "sync_error": state.sync_error,
        "can_sync": svc.feed_sync is not None,
        "can_add": svc.add_feed is not None,
        "editable": actions.editable_feeds(request),
        "formats": FORMATS,
        "form": form or form_state(request, "", {}, None),
    }, status=status)


@routes.get("/lists")
@admin_only
async def lists(request: web.Request) -> web.Response:
    return await lists_page(request)


@routes.post("/lists")
@admin_only
async def lists_add(request: web.Request) -> web.StreamResponse:
    return await _form_post(request, "feed", action=actions.add_feed, page=lists_page,
                            then=see_other("/lists", "feed_added"))


@routes.post("/lists/feeds/{name}/remove")
@admin_only
async def lists_feed_remove(request: web.Request) -> web.StreamResponse:
    await _or_404(actions.remove_feed(request, request.match_info["name"]))
    raise see_other("/lists", "removed")


@routes.post("/lists/feeds/{name}/enabled")
@admin_only
async def lists_feed_enable(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    try:
        on = await _or_404(actions.enable_feed(request, request.match_info["name"], raw))
    except FormError:
        raise web.HTTPBadRequest() from None
    raise see_other("/lists", "feed_on" if on else "feed_off")


@routes.post("/lists/sync")
@admin_only
async def lists_sync(request: web.Request) -> web.StreamResponse:
    try:
        started = await actions.sync_now(request)
    except FormError:
        raise see_other("/lists", "") from None
    raise see_other("/lists", "sync_started" if started else "sync_running")


# settings -----------------------------------------------------------------------------------


async def settings_page(request: web.Request, form: Ctx | None = None, status: int = 200,
                        new_token: str = "") -> web.Response:
    svc, state = request.app[SERVICES], request.app[STATE]
    p = principal(request)
    now = svc.clock()
    tokens = await in_thread(svc.store.tokens, None if p.is_admin else p.account_id)
    accounts = await in_thread(svc.store.accounts)
    retention = await in_thread(svc.store.get_setting, "retention_days", svc.retention_days)
    failed_logins = failed_logins_by_address(
        await in_thread(svc.store.lockouts, now - auth.WINDOW), now, svc.live_policy.value
    )
    unknown = await in_thread(svc.store.get_setting, "unknown_devices", "strictest")
    children = await in_thread(svc.store.children)
    return await page(request, "settings.html", {
        "block_answer": state.block_answer,
        "modes": list(svc.block_modes),
        "upstreams": list(svc.upstreams),
        "retention": retention,
        "household_lang": state.household_lang,
        "tokens": tokens,
        "accounts": accounts,
        "account_names": {a.id: a.username for a in accounts},
        "failed_logins": failed_logins,
        "unknown_devices": unknown,
        "child_names": [c.name for c in children],
        "form": form or form_state(request, "", {}, None),
        "new_token": new_token,
        **{k: v for part in request.app.get(SETTINGS_PARTS, ()) for k, v in
           (await part(request)).items()},
    }, status=status)


@routes.get("/settings")
async def settings(request: web.Request) -> web.Response:
    return await settings_page(request)


@routes.post("/settings")
@admin_only
async def settings_save(request: web.Request) -> web.StreamResponse:
    return await _form_post(request, "household", action=actions.save_household,
                            page=settings_page, then=see_other("/settings", "saved"))


@routes.post("/settings/password")
async def settings_password(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    try:
        raw_id = await actions.change_password(request, raw)
    except FormError as e:
        return await settings_page(request, form_state(request, "password", raw, e), 400)
    resp = see_other("/settings", "password")
    actions.set_session_cookie(request, resp, raw_id)
    raise resp


@routes.post("/settings/tokens")
async def settings_token_add(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    try:
        value, _ = await actions.add_token(request, raw)
    except FormError as e:
        return await settings_page(request, form_state(request, "token", raw, e), 400)
    # shown once, on this response only (not a redirect: the value must not sit in a URL)
    return await settings_page(request, new_token=value)


@routes.post("/settings/tokens/{id:\\d+}/delete")
async def settings_token_delete(request: web.Request) -> web.StreamResponse:
    await _or_404(actions.delete_token(request, int(request.match_info["id"])))
    raise see_other("/settings", "removed")


def failed_logins_by_address(
    rows: list[tuple[str, int, datetime]], now: datetime, policy: Any
) -> list[dict[str, Any]]:
    """The throttle rows grouped per address, for the sentences on Settings: how many failed
    logins, for which accounts, the last one, the device if known, and until when logins from
    there wait (None: not now)."""
    by: dict[str, dict[str, Any]] = {}
    for key, n, last in rows:
        address = auth.key_address(key)
        entry = by.setdefault(address, {
            "address": address, "failures": 0, "accounts": [], "last": last, "until": None,
        })
        entry["last"] = max(entry["last"], last)
        if key.startswith("pair:"):
            entry["accounts"].append(auth.key_account(key))
            until = auth.retry_at(n, last, now, auth.MAX_FAILURES)
        else:
            entry["failures"] += n  # "ip:" counts every login failure; "setup:" the code's
            free = auth.MAX_FAILURES if key.startswith("setup:") else auth.MAX_ADDRESS_FAILURES
            until = auth.retry_at(n, last, now, free)
        if until is not None and (entry["until"] is None or until > entry["until"]):
            entry["until"] = until
    for entry in by.values():
        entry["accounts"].sort()
        device = None
        try:
            device, _ = policy.profile_for(entry["address"])
        except Exception:  # noqa: BLE001 - a /64 or "unknown" is no device address
            device = None
        entry["device"] = device.name if device is not None else ""
    return sorted(by.values(), key=lambda e: e["last"], reverse=True)


@routes.post("/settings/logins/unlock")
async def settings_logins_unlock(request: web.Request) -> web.StreamResponse:
    raw = form_fields(await request.post())
    try:
        await actions.unlock_logins(request, raw)
    except FormError:
        raise web.HTTPBadRequest() from None
    except NotFound:
        raise see_other("/settings", "") from None
    raise see_other("/settings", "unlocked")


@routes.post("/settings/accounts")
@admin_only
async def settings_account_add(request: web.Request) -> web.StreamResponse:
    return await _form_post(request, "account", action=actions.add_account,
                            page=settings_page, then=see_other("/settings", "saved"))


@routes.post("/settings/accounts/{id:\\d+}/delete")
@admin_only
async def settings_account_delete(request: web.Request) -> web.StreamResponse:
    try:
        await actions.delete_account(request, int(request.match_info["id"]))
    except NotFound:
        raise web.HTTPNotFound() from None
    except FormError as e:
        return await settings_page(request, form_state(request, "accounts", {}, e), 400)
    raise see_other("/settings", "removed")


@routes.get("/help")
async def help_page(request: web.Request) -> web.Response:
    return await page(request, "help.html", {"address": own_address(request)})


def own_address(request: web.Request) -> str:
    """The address this page was reached at: nestguard's own, to type into the router ("" on
    loopback, where it is not the one the router needs)."""
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    host = str(sock[0]) if sock else ""
    if host.startswith("::ffff:"):
        host = host[len("::ffff:"):]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return ""
    return "" if ip.is_loopback or ip.is_unspecified else str(ip)


# audit ---------------------------------------------------------------------------------------


@routes.get("/audit")
async def audit(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    entries = await in_thread(svc.store.audit_log, limit=300)
    return await page(request, "audit.html", {"entries": entries})

