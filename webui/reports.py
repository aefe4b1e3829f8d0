"""Report a site: children (block page, help page), parents (activity rows), admins (the
Reports page: the queue with what the lists say, list locally / make an exception / dismiss,
the rating CSV export, an optional forward of accepted reports to `reports.forward_url`).

Every report and decision goes to the audit log. Names are checked by forms.canonical_domain
(the web UI's one site-name rule); a garbage name gets a clear message, never a row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from aiohttp import web

from blocklists.local import rating_csv
from policy.model import NEVER
from policy.store import Conflict, NotFound, Report
from webui import forms
from webui.alerts import AlertConfigError, check_webhook_url
from webui.context import admin_only, form_state, in_thread, page, principal, record, see_other
from webui.forms import FormError, form_fields
from webui.keys import LANG, SERVICES, STATE

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
KINDS = ("harmful", "wrong_block")
NOTE_MAX = 300
HELP_PATH = "/__nestguard/help"
REPORT_PATH = "/__nestguard/report"


@dataclass(frozen=True, slots=True)
class ReportsSettings:
    forward_url: str = ""  # accepted reports are POSTed here as JSON (optional)
    allow_loopback: bool = False  # tests only


def parse_reports(raw: object, key: str = "reports") -> ReportsSettings:
    """The `reports:` mapping; the forward URL follows the feed URL rules (as webhooks do)."""
    if raw is None:
        return ReportsSettings()
    if not isinstance(raw, dict):
        raise AlertConfigError(key, "expected a mapping of keys")
    for k in raw:
        if k not in ("forward_url", "allow_loopback"):
            raise AlertConfigError(f"{key}.{k}", "unknown key (known: forward_url)")
    loopback = raw.get("allow_loopback", False)
    if not isinstance(loopback, bool):
        raise AlertConfigError(f"{key}.allow_loopback", "expected true or false")
    url = raw.get("forward_url") or ""
    if not isinstance(url, str):
        raise AlertConfigError(f"{key}.forward_url", "expected an https:// address")
    if url:
        check_webhook_url(url, f"{key}.forward_url", allow_loopback=loopback)
    return ReportsSettings(forward_url=url, allow_loopback=loopback)


# -- parents ------------------------------------------------------------------------------------
def parse_report(raw: Mapping[str, object], categories: Mapping[str, Any]
                 ) -> tuple[str, str, str, str]:
    """(kind, domain, category, note) from a form; FormError names the field."""
    c = forms.Checker(raw)
    kind = str(raw.get("kind", ""))
    if kind not in KINDS:
        c.add("kind", "err.choice")
    domain = ""
    try:
        domain = forms.parse_domain(raw)
    except FormError as e:
        for f, (k, _params) in e.errors.items():
            c.add(f, k)
    category = c.text("category", max_len=40, required=False)
    if category and category not in categories:
        c.add("category", "err.choice")
    note = c.text("note", max_len=NOTE_MAX, required=False)
    c.done()
    return kind, domain, category, note


@routes.get("/reports/new")
async def report_new(request: web.Request) -> web.Response:
    return await report_form(request)


async def report_form(request: web.Request, form: dict[str, Any] | None = None,
                      status: int = 200) -> web.Response:
    svc = request.app[SERVICES]
    values = {"domain": request.query.get("domain", ""),
              "kind": request.query.get("kind", "harmful")}
    return await page(request, "report_new.html", {
        "form": form or {**form_state(request, "report", values, None), "id": "report"},
        "categories": _category_options(svc.categories, request),
        "kinds": KINDS,
    }, status=status)


@routes.post("/reports")
async def report_add(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    raw = form_fields(await request.post())
    try:
        kind, domain, category, note = parse_report(raw, svc.categories)
    except FormError as e:
        return await report_form(request, form_state(request, "report", raw, e), 400)
    p = principal(request)
    rep = await in_thread(svc.store.add_report, kind=kind, domain=domain, source="parent",
                          reporter=p.username, category=category, note=note)
    await in_thread(svc.store.audit, p.username, f"report.{kind}", f"#{rep.id} {domain}")
    raise see_other("/activity", "reported")


def _category_options(categories: Mapping[str, Any], request: web.Request
                      ) -> list[tuple[str, str]]:
    lang = request.get(LANG) or request.app[STATE].household_lang
    return sorted(((slug, c.names.get(lang) or slug) for slug, c in categories.items()),
                  key=lambda o: o[1].casefold())


# -- admins -------------------------------------------------------------------------------------
@routes.get("/reports/sites")
@admin_only
async def reports_list(request: web.Request) -> web.Response:
    return await reports_page(request)


@routes.get("/reports")
async def reports_root(request: web.Request) -> web.Response:
    """Reports: the site queue for admins (its own path, so the menu tells it apart from
    /reports/weekly), the weekly report for parents."""
    raise see_other("/reports/sites" if principal(request).is_admin else "/reports/weekly")


async def reports_page(request: web.Request, form: dict[str, Any] | None = None,
                       status: int = 200) -> web.Response:
    svc = request.app[SERVICES]
    open_ = await in_thread(svc.store.reports, status="open")
    decided = [r for r in await in_thread(svc.store.reports, limit=100) if r.status != "open"][:30]
    checks: dict[int, list[str]] = {}
    for r in open_:
        try:
            checks[r.id] = svc.check_name(r.domain) if svc.check_name else []
        except Exception as e:  # noqa: BLE001 - a name the lists cannot read: say so
            checks[r.id] = [str(e)]
    children = {c.id: c.name for c in await in_thread(svc.store.children)}
    return await page(request, "reports.html", {
        "open": open_, "decided": decided, "checks": checks, "children": children,
        "categories": _category_options(svc.categories, request),
        "ages": {slug: c.min_age for slug, c in svc.categories.items()},
        "can_list": svc.list_locally is not None,
        "form": form or form_state(request, "", {}, None),
        "today": svc.clock().date().isoformat(),
    }, status=status)


async def _open_report(request: web.Request) -> Report:
    svc = request.app[SERVICES]
    try:
        rep = await in_thread(svc.store.report, int(request.match_info["id"]))
    except NotFound:
        raise web.HTTPNotFound() from None
    if rep.status != "open":
        raise see_other("/reports/sites", "already")
    return rep


@routes.post("/reports/{id:\\d+}/list")
@admin_only
async def report_list(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    rep = await _open_report(request)
    raw = form_fields(await request.post())
    category = str(raw.get("category") or rep.category)
    errors: dict[str, forms.Msg] = {}
    if category not in svc.categories:
        errors["category"] = ("err.choice", {})
    age_text = str(raw.get("min_age", "")).strip()
    min_age: int | None = None
    if age_text:
        if not age_text.isdigit() or int(age_text) > NEVER:
            errors["min_age"] = ("err.number", {})
        else:
            min_age = int(age_text)
    if svc.list_locally is None:
        errors["category"] = ("err.no_local_list", {})
    if errors:
        err = FormError(errors)
        return await reports_page(request, {**form_state(request, f"list{rep.id}", raw, err)},
                                  400)
    if min_age is None:
        min_age = svc.categories[category].min_age
    assert svc.list_locally is not None
    note = f"reported by {rep.source}: {rep.note}" if rep.note else f"reported by {rep.source}"
    await svc.list_locally(rep.domain, category, min_age, note)
    p = principal(request)
    try:
        rep = await in_thread(svc.store.decide_report, rep.id, status="listed", by=p.username,
                              at=svc.clock(), category=category, min_age=min_age)
    except Conflict:
        raise see_other("/reports/sites", "already") from None
    await record(request, "report.listed", f"#{rep.id} {rep.domain} {category} {min_age}+")
    await _forward(request, rep)
    raise see_other("/reports/sites", "listed")


@routes.post("/reports/{id:\\d+}/except")
@admin_only
async def report_except(request: web.Request) -> web.StreamResponse:
    """A wrongly blocked site: allowed for the reporting child, or for every child."""
    svc = request.app[SERVICES]
    rep = await _open_report(request)
    children = [rep.child_id] if rep.child_id is not None else [
        c.id for c in await in_thread(svc.store.children)]
    for child_id in children:
        try:
            await in_thread(svc.store.add_rule, child_id, rep.domain, "allow")
        except (Conflict, NotFound):
            pass  # already allowed, or the child is gone
    p = principal(request)
    await in_thread(
        svc.store.decide_report, rep.id, status="excepted", by=p.username, at=svc.clock()
    )
    await record(request, "report.excepted", f"#{rep.id} {rep.domain}")
    raise see_other("/reports/sites", "allowed")


@routes.post("/reports/{id:\\d+}/dismiss")
@admin_only
async def report_dismiss(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    rep = await _open_report(request)
    p = principal(request)
    await in_thread(svc.store.decide_report, rep.id, status="dismissed", by=p.username,
                    at=svc.clock())
    await in_thread(svc.store.audit, p.username, "report.dismissed", f"#{rep.id} {rep.domain}")
    raise see_other("/reports/sites", "removed")


def parse_since(text: str) -> datetime | None:
    """YYYY-MM-DD (the household's midnight is close enough: UTC midnight) or ''."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: not a date, use YYYY-MM-DD") from None
    return datetime.combine(day, time(0)).astimezone()


def export_csv(reports: list[Report]) -> str:
    """Accepted reports as rating CSV (`domain,category,min_age,note`), oldest first."""
    rows = [(r.domain, r.category, r.min_age, r.note or f"reported by a {r.source}")
            for r in sorted(reports, key=lambda r: (r.decided_at or r.created, r.id))]
    return rating_csv(rows)


@routes.get("/reports/export.csv")
@admin_only
async def report_export(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    try:
        since = parse_since(request.query.get("since", ""))
    except ValueError:
        raise web.HTTPBadRequest(text="since: use YYYY-MM-DD\n") from None
    reports = await in_thread(svc.store.reports, status="listed", since=since, limit=100_000)
    name = f"nestguard-reports-{svc.clock().date().isoformat()}.csv"
    return web.Response(text=export_csv(reports), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def _forward(request: web.Request, rep: Report) -> None:
    """Queue an accepted report for reports.forward_url (the alert delivery queue retries
    it; the export has every accepted report anyway)."""
    alerts = request.app[SERVICES].alerts
    if alerts is None or not alerts.forward_url:
        return
    body = {"domain": rep.domain, "category": rep.category, "min_age": rep.min_age,
            "note": rep.note, "kind": rep.kind, "reported": rep.created.isoformat()}
    await in_thread(alerts.forward, f"report-{rep.id}", body)
