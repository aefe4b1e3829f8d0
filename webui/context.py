"""Shared helpers for views and the API: rendering, the store in a thread, audit + nudge."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import aiohttp_jinja2
from aiohttp import web

from policy.model import Category
from webui.auth import Principal
from webui.forms import FormError
from webui.i18n import LANGS, Translator
from webui.keys import LANG, PRINCIPAL, SERVICES, STATE

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=Callable[..., object])

NAV = (
    ("/", "nav.home", "parent"),
    ("/children", "nav.children", "parent"),
    ("/devices", "nav.devices", "parent"),
    ("/activity", "nav.activity", "parent"),
    ("/requests", "nav.requests", "parent"),
    ("/reports/weekly", "nav.weekly", "parent"),
    ("/lists", "nav.lists", "admin"),
    ("/reports/sites", "nav.reports", "admin"),
    ("/settings", "nav.settings", "parent"),
)


def admin_only(handler: H) -> H:
    """Mark a handler as admin-only; the authenticate middleware enforces it."""
    handler.nestguard_role = "admin"  # type: ignore[attr-defined]
    return handler


def translator(request: web.Request) -> Translator:
    lang = request.get(LANG) or request.app[STATE].household_lang
    return Translator(lang, request.app[STATE].catalogues)


async def in_thread(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run any synchronous call (a Store method, a report build, a file removal) in a worker
    thread, so the event loop keeps serving."""
    return await asyncio.to_thread(functools.partial(func, *args, **kwargs))


def principal(request: web.Request) -> Principal:
    p = request.get(PRINCIPAL)
    if p is None:  # the middleware guarantees one on every non-public route
        raise web.HTTPUnauthorized()
    return p


def now(request: web.Request) -> datetime:
    return request.app[SERVICES].clock()


async def record(request: web.Request, action: str, detail: str = "") -> None:
    """Write an audit line (who changed what) and nudge the resolver to reload."""
    svc = request.app[SERVICES]
    who = principal(request).username
    await in_thread(svc.store.audit, who, action, detail)
    svc.nudge()


def category_name(cat: Category | None, slug: str, lang: str) -> str:
    if cat is None:
        return slug
    return cat.names.get(lang) or cat.names.get("en") or slug


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, object],
    *,
    status: int = 200,
) -> web.Response:
    t = translator(request)
    who = request.get(PRINCIPAL)
    base: dict[str, object] = {
        "t": t,
        "lang": t.lang,
        "langs": LANGS,
        "who": who,
        "csrf": who.csrf if who is not None else "",
        "path": request.path,
        "path_qs": request.rel_url.path_qs,
        "nav": [n for n in NAV if who is not None and (n[2] == "parent" or who.is_admin)],
        "pending": 0,
        "notice": "",
    }
    done = request.query.get("done", "")
    if done and t.has(f"done.{done}"):
        base["notice"] = t(f"done.{done}")
    base.update(context)
    return aiohttp_jinja2.render_template(template, request, base, status=status)


async def page(
    request: web.Request, template: str, context: Mapping[str, object], *, status: int = 200
) -> web.Response:
    """Render a logged-in page (with the pending-requests badge)."""
    svc = request.app[SERVICES]
    pending = len(await in_thread(svc.store.requests, status="pending"))
    return render(request, template, {"pending": pending, **context}, status=status)


def see_other(location: str, done: str = "") -> web.HTTPSeeOther:
    if done:
        location += ("&" if "?" in location else "?") + f"done={done}"
    return web.HTTPSeeOther(location)


def host_name(host_header: str) -> str:
    """'Example.COM:8080' -> 'example.com'; '[::1]:80' -> '::1'; '' when unreadable."""
    host = host_header.strip().lower()
    if not host:
        return ""
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    elif host.count(":") > 1:  # a bare IPv6 address without brackets
        return host
    return host.rstrip(".")


def form_state(request: web.Request, form_id: str, raw: Mapping[str, object],
               err: FormError | None) -> dict[str, Any]:
    """What a template needs to show a failed form again: the values and the messages."""
    t = translator(request)
    errors = {}
    if err is not None:
        errors = {f: t(key, **params) for f, (key, params) in err.errors.items()}
    secret = ("password", "confirm", "old", "new", "csrf")
    values = {k: v for k, v in raw.items() if k not in secret}
    return {"id": form_id, "errors": errors, "values": values}
