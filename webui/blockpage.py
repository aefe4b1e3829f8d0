"""The block page: what a child sees on a plain-HTTP visit to a blocked name.

In block-page mode the resolver answers blocked names with the web UI's address, so the
browser arrives here with the blocked name as its Host. Any Host that is not the UI's own
gets this page and nothing else (no admin route is reachable under a foreign Host). HTTPS
visits cannot show it (the browser refuses our certificate), so they just fail to connect.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time as monotonic_time
from datetime import datetime, timedelta, tzinfo
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from policy.model import Action, Child
from policy.names import BadName, typed_domain
from policy.store import AccessRequest
from webui import forms, present, reports, static
from webui.alerts import AlertEvent
from webui.context import host_name, in_thread, render
from webui.forms import CONTROL_RE
from webui.i18n import LANGS, Translator
from webui.keys import LANG, SERVICES, STATE

log = logging.getLogger(__name__)

ASKS = Counter("nestguard_web_access_requests_total", "Access requests sent from the block page")
PAGES = Counter("nestguard_web_block_pages_total", "Block pages shown")

ASK_PATH = "/__nestguard/ask"
STATUS_PATH = "/__nestguard/status"
ASKS_PER_WINDOW = 5
ASK_WINDOW = 600.0  # seconds
MESSAGE_MAX = 300
ANSWER_SHOWN_FOR = timedelta(days=1)


def _token(secret: bytes, client: str, domain: str) -> str:
    return hmac.new(secret, f"{client}|{domain}".encode(), hashlib.sha256).hexdigest()[:32]


def _domain(request: web.Request) -> str:
    try:
        return typed_domain(host_name(request.headers.get("Host", "")))
    except BadName:
        return ""


def _site(request: web.Request, domain: str) -> str:
    """What the child asks for: the site (www.casino.example -> casino.example), so an
    approval opens the pages and images the site needs, not one host name."""
    tld = request.app[STATE].tld
    return present.registrable(domain, tld) if domain and tld is not None else domain


def _latest(reqs: list[AccessRequest], client: str, domain: str, now: datetime
            ) -> AccessRequest | None:
    for r in sorted(reqs, key=lambda r: r.created, reverse=True):
        if r.client == client and r.domain == domain and now - r.created < ANSWER_SHOWN_FOR:
            return r
    return None


async def serve(request: web.Request) -> web.StreamResponse:
    path = request.path
    if path.startswith("/static/") and request.method in ("GET", "HEAD"):
        return static.serve(path[len("/static/"):], request.headers.get("If-None-Match", ""))
    if path == ASK_PATH and request.method == "POST":
        return await _ask(request)
    if path == STATUS_PATH and request.method == "GET":
        return await _status(request)
    if path == reports.HELP_PATH and request.method in ("GET", "HEAD"):
        return await child_help(request)
    if path == reports.REPORT_PATH and request.method == "POST":
        return await child_report(request)
    if request.method not in ("GET", "HEAD"):
        return web.Response(status=405, text="405\n")
    return await _page(request)


async def _who(request: web.Request) -> tuple[str, Child | None, int | None]:
    svc = request.app[SERVICES]
    client = request.remote or ""
    device, profile = svc.live_policy.value.profile_for(client)
    child = profile.child
    if child is not None and (device is None or device.owner != child.id):
        # an unassigned device filtered under a child's profile (the strictest): it is not
        # that child's, so no "Hello Na" and no request credited to her
        child = None
    return client, child, device.id if device else None


async def _page(request: web.Request, *, status: int = 200, error: str = "") -> web.Response:
    svc, state = request.app[SERVICES], request.app[STATE]
    domain = _domain(request)
    client, child, _ = await _who(request)
    lang = child.lang if child is not None and child.lang in LANGS else state.household_lang
    request[LANG] = lang
    t = Translator(lang, state.catalogues)
    why, reason, allowed_now, in_force = "", "", False, ""
    if domain and svc.explain is not None:
        try:
            verdict = svc.explain(client, domain)
        except Exception:  # the page must show whatever happens
            log.exception("explain failed for the block page")
        else:
            reason = verdict.reason
            allowed_now = verdict.action != Action.BLOCK
            why = present.reason_text(verdict.reason, t, svc.categories)
            if not allowed_now:  # "Bedtime until 06:30": what a yes does not lift
                _, profile = svc.live_policy.value.profile_for(client)
                in_force = present.in_force_text(verdict, profile, svc.clock(), t)
    PAGES.inc()
    reqs = await in_thread(svc.store.requests) if domain else []
    site = _site(request, domain)
    latest = _latest(reqs, client, site, svc.clock()) if domain else None
    return render(request, "blockpage.html", {
        "domain": domain,
        "child": child,
        "why": why,
        "reason": reason,
        "allowed_now": allowed_now,
        "in_force": in_force,
        "latest": latest,
        "until": _until_text(latest, t, svc.clock().tzinfo),
        "token": _token(state.secret, client, domain),
        "ask_path": ASK_PATH,
        "status_path": STATUS_PATH,
        "error": error,
        "back": request.rel_url.path_qs if request.path != ASK_PATH else "/",
        "message_max": MESSAGE_MAX,
    }, status=status)


async def _page_translator(request: web.Request) -> Translator:
    state = request.app[STATE]
    _, child, _ = await _who(request)
    lang = child.lang if child is not None and child.lang in LANGS else state.household_lang
    return Translator(lang, state.catalogues)


def _until_text(req: AccessRequest | None, t: Translator, tz: tzinfo | None) -> str:
    if req is None or req.status != "approved" or req.answered_at is None:
        return ""
    if req.reason.startswith("budget:"):
        return t("block.more_time_given", n=req.minutes or 0)
    if not req.minutes:
        return t("block.approved_always")
    end = (req.answered_at + timedelta(minutes=req.minutes)).astimezone(tz)
    return t("block.approved_until", time=end.strftime("%H:%M"))


async def _ask(request: web.Request) -> web.StreamResponse:
    svc, state = request.app[SERVICES], request.app[STATE]
    domain = _domain(request)
    client, child, device_id = await _who(request)
    form = await request.post()
    token = form.get("token", "")
    message = form.get("message", "")
    back = form.get("back", "/")
    if not isinstance(back, str) or not back.startswith("/") or back.startswith("//"):
        back = "/"
    if not domain:
        return web.Response(status=403, text="403\n")
    if not isinstance(token, str) or not hmac.compare_digest(
        token.encode(), _token(state.secret, client, domain).encode()
    ):  # another page's token, or one from before a restart: show a fresh page
        tr = await _page_translator(request)
        return await _page(request, status=403, error=tr("block.expired"))
    if not isinstance(message, str):
        message = ""
    message = CONTROL_RE.sub(" ", message).strip()
    if len(message) > MESSAGE_MAX:
        tr = await _page_translator(request)
        return await _page(request, status=400, error=tr("err.too_long", n=MESSAGE_MAX))
    site = _site(request, domain)
    reqs = await in_thread(svc.store.requests, status="pending")
    if any(r.client == client and r.domain == site for r in reqs):
        raise web.HTTPSeeOther(back)
    now_s = monotonic_time.monotonic()
    times = [x for x in state.ask_times.get(client, []) if now_s - x < ASK_WINDOW]
    if len(times) >= ASKS_PER_WINDOW:
        return web.Response(status=429, text="429\n")
    times.append(now_s)
    state.ask_times[client] = times
    if len(state.ask_times) > 10_000:  # bounded: forget the oldest clients
        state.ask_times.pop(next(iter(state.ask_times)))
    reason = ""
    if svc.explain is not None:
        try:
            reason = svc.explain(client, domain).reason
        except Exception:
            log.exception("explain failed for an access request")
    await in_thread(
        svc.store.add_request,
        child_id=child.id if child else None,
        device_id=device_id,
        client=client,
        domain=site,
        reason=reason,
        message=message,
    )
    who = child.name if child else client
    await in_thread(svc.store.audit, who, "request.ask", site)
    if svc.alerts is not None:
        svc.alerts.emit(AlertEvent("request", device_id, child.id if child else None, site,
                                   message, svc.clock()))
    ASKS.inc()
    raise web.HTTPSeeOther(back)


async def _status(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    domain = _domain(request)
    client, _, _ = await _who(request)
    site = _site(request, domain)
    latest = (
        _latest(await in_thread(svc.store.requests), client, site, svc.clock())
        if domain else None
    )
    return web.json_response({"status": latest.status if latest else "none"})


# -- children: the block page's host ------------------------------------------------------------
async def _child_translator(request: web.Request) -> tuple[Translator, Any, str, int | None]:
    state = request.app[STATE]
    client, child, device_id = await _who(request)
    lang = child.lang if child is not None and child.lang in LANGS else state.household_lang
    request[LANG] = lang
    return Translator(lang, state.catalogues), child, client, device_id


async def child_help(request: web.Request, *, status: int = 200, error: str = "",
                     typed: str = "") -> web.Response:
    """The children's help page: 'not bad for me', 'I saw something harmful', hotline 111."""
    state = request.app[STATE]
    _t, child, client, _ = await _child_translator(request)
    domain = _domain(request)
    return render(request, "kids_help.html", {
        "child": child, "domain": domain, "error": error, "typed": typed,
        "token": _token(state.secret, client, domain),
        "help_token": _token(state.secret, client, "help"),
        "report_path": reports.REPORT_PATH, "help_path": reports.HELP_PATH,
        "done": request.query.get("done", ""), "note_max": reports.NOTE_MAX,
    }, status=status)


async def child_report(request: web.Request) -> web.StreamResponse:
    svc, state = request.app[SERVICES], request.app[STATE]
    t, child, client, device_id = await _child_translator(request)
    form = await request.post()
    kind = form.get("kind", "")
    token = str(form.get("token", ""))
    note = str(form.get("note", ""))
    note = forms.CONTROL_RE.sub(" ", note).strip()[:reports.NOTE_MAX]
    if kind == "wrong_block":
        domain = _domain(request)
        expect = _token(state.secret, client, domain)
    elif kind == "harmful":
        typed = str(form.get("domain", ""))
        expect = _token(state.secret, client, "help")
        try:
            domain = forms.canonical_domain(typed)
        except ValueError as e:
            return await child_help(request, status=400, error=t(str(e)), typed=typed[:100])
    else:
        return web.Response(status=400, text="400\n")
    if not domain or not hmac.compare_digest(token.encode(), expect.encode()):
        return await child_help(request, status=403, error=t("block.expired"))
    now_s = monotonic_time.monotonic()
    times = [x for x in state.ask_times.get(client, []) if now_s - x < ASK_WINDOW]
    if len(times) >= ASKS_PER_WINDOW:
        return web.Response(status=429, text="429\n")
    state.ask_times[client] = [*times, now_s]
    site = _site(request, domain) if kind == "wrong_block" else domain
    rep = await in_thread(svc.store.add_report, kind=str(kind), domain=site, source="child",
                          reporter=child.name if child else client, note=note,
                          child_id=child.id if child else None, device_id=device_id)
    await in_thread(svc.store.audit, child.name if child else client, f"report.{kind}",
                    f"#{rep.id} {site}")
    raise web.HTTPSeeOther(f"{reports.HELP_PATH}?done={kind}")
