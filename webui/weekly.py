"""The weekly report: per child, what happened last week; as a page (`/reports/weekly`), as a
Monday-morning e-mail per parent (HTML and plain text, vi or en) and on the command line
(`nestguard report weekly [--send]`).

One builder (`build_week`), two renderers (`render_html`: the page's and the e-mail's HTML, one
template with inline styles so mail clients show it; `render_text`). The chart is CSS bars:
no JavaScript, no images. Days are whole 24 h days from the household's Monday midnight.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import jinja2
import tldextract
from aiohttp import web

from policy.model import Category, Child, Device
from policy.store import AccessRequest, Store
from webui.alerts import Alerts
from webui.context import category_name, in_thread, page, translator
from webui.i18n import LANGS, Translator
from webui.keys import SERVICES, STATE
from webui.present import reason_text, registrable

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
TOP = 5
SEND_AFTER = time(7, 0)  # Monday morning, household time
WEEKLY_KIND = "weekly"
TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Site:
    name: str
    count: int = 0
    reason: str = ""  # the commonest block reason (raw Verdict reason)
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class ChildWeek:
    child: Child
    devices: list[str] = field(default_factory=list)
    queries: int = 0
    blocked: int = 0
    days: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in range(7)])
    categories: dict[str, int] = field(default_factory=dict)
    allowed_sites: dict[str, Site] = field(default_factory=dict)
    blocked_sites: dict[str, Site] = field(default_factory=dict)
    bypass: int = 0
    requests: list[AccessRequest] = field(default_factory=list)

    def top_allowed(self) -> list[Site]:
        return sorted(self.allowed_sites.values(), key=lambda s: (-s.count, s.name))[:TOP]

    def top_blocked(self) -> list[Site]:
        out = sorted(self.blocked_sites.values(), key=lambda s: (-s.count, s.name))[:TOP]
        for s in out:
            s.reason = max(s.reasons.items(), key=lambda kv: (kv[1], kv[0]))[0]
        return out

    def top_categories(self) -> list[tuple[str, int]]:
        return sorted(self.categories.items(), key=lambda kv: (-kv[1], kv[0]))

    def peak(self) -> int:
        return max((a + b for a, b in self.days), default=0) or 1


@dataclass
class Week:
    start: datetime  # Monday 00:00, household time
    children: list[ChildWeek]
    new_devices: list[Device]

    @property
    def days(self) -> list[date]:
        return [(self.start + timedelta(days=i)).date() for i in range(7)]

    @property
    def last_day(self) -> date:
        return (self.start + timedelta(days=6)).date()


def bundled_tld() -> tldextract.TLDExtract:
    """The bundled public suffix list only (never fetched), as the web UI uses."""
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None,
                                 include_psl_private_domains=True)


def week_start(day: date, tz: object) -> datetime:
    """The Monday 00:00 (household time) of the week holding `day`."""
    monday = day - timedelta(days=day.weekday())
    return datetime.combine(monday, time(0), tzinfo=tz)  # type: ignore[arg-type]


def last_week(now: datetime) -> datetime:
    return week_start(now.date(), now.tzinfo) - timedelta(days=7)


def build_week(store: Store, start: datetime, tld: tldextract.TLDExtract | None) -> Week:
    """Everything the report shows for the week from `start` (blocking: run in a thread)."""
    end = start + timedelta(days=7)
    children = {c.id: ChildWeek(c) for c in store.children()}
    devices = store.devices()
    for d in devices:
        if isinstance(d.owner, int) and d.owner in children:
            children[d.owner].devices.append(d.name or ", ".join(d.identifiers))
    for child_id, day, action, reason, qname, n in store.activity_counts(start, end):
        cw = children.get(child_id) if child_id is not None else None
        if cw is None or not 0 <= day < 7:
            continue
        site = registrable(qname, tld) if tld is not None else qname
        cw.queries += n
        if action == "block":
            cw.blocked += n
            cw.days[day][1] += n
            s = cw.blocked_sites.setdefault(site, Site(site))
            s.count += n
            s.reasons[reason] = s.reasons.get(reason, 0) + n
            kind, _, rest = reason.partition(":")
            if kind in ("category", "security"):
                slug = rest.split(":")[0]
                cw.categories[slug] = cw.categories.get(slug, 0) + n
            if kind == "bypass":
                cw.bypass += n
        else:
            cw.days[day][0] += n
            s = cw.allowed_sites.setdefault(site, Site(site))
            s.count += n
    for r in store.requests():
        if r.child_id in children and start <= r.created < end:
            children[r.child_id].requests.append(r)
    new_ids = set(store.devices_created(start, end))
    return Week(start, list(children.values()), [d for d in devices if d.id in new_ids])


# -- rendering ----------------------------------------------------------------------------------
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )


_ENV: jinja2.Environment | None = None


def render_html(week: Week, t: Translator, categories: Mapping[str, Category], *,
                link: str = "") -> str:
    """The e-mail's whole HTML document (the page includes the same body partial), with the
    styles inlined: mail clients drop <style> blocks and linked sheets."""
    global _ENV
    _ENV = _ENV or _env()
    return inline_styles(_ENV.get_template("weekly_email.html").render(
        **_context(week, t, categories), link=link))


_FONT = "-apple-system,'Segoe UI',Roboto,Arial,sans-serif"
# The e-mail's looks, class by class (the page's are in static/style.css under the same names).
MAIL_STYLES: dict[str, str] = {
    "wk-mail": f"margin:0;padding:12px;background:#f6f6f4;font-family:{_FONT};color:#222;"
               "line-height:1.45",
    "wk-wrap": "max-width:640px;margin:0 auto",
    "wk-card": "border:1px solid #ddd;border-radius:10px;padding:12px 14px;margin:14px 0;"
               "background:#fff",
    "wk-h1": "font-size:1.4em;margin:0 0 .2em",
    "wk-h2": "font-size:1.2em;margin:0 0 .3em",
    "wk-h3": "font-size:1em;margin:.8em 0 .3em",
    "wk-p": "margin:.2em 0",
    "wk-muted": "color:#555",
    "wk-list": "margin:.2em 0;padding-left:1.4em",
    "wk-day": "margin:2px 0;font-size:.85em;white-space:nowrap",
    "wk-dayname": "display:inline-block;width:3.2em;color:#555",
    "wk-track": "display:inline-block;width:calc(100% - 8em);max-width:480px;height:12px;"
                "vertical-align:middle;background:#f1f1f1;border-radius:3px;overflow:hidden",
    "bar-allowed": "display:inline-block;height:12px;vertical-align:top;background:#3a8f5c",
    "bar-blocked": "display:inline-block;height:12px;vertical-align:top;background:#c4442f",
    "wk-key-allowed": "display:inline-block;width:10px;height:10px;background:#3a8f5c",
    "wk-key-blocked": "display:inline-block;width:10px;height:10px;background:#c4442f",
    "wk-count": "display:inline-block;width:4.5em;text-align:right;color:#555",
    "wk-red": "color:#c4442f",
    "wk-legend": "font-size:.8em;color:#555;margin:.3em 0",
    "wk-link": "color:#1b5e9e",
    **{f"w{n}": f"width:{n}%" for n in range(0, 101, 5)},
}
_CLASS = re.compile(r'class="([^"]*)"')


def inline_styles(html: str) -> str:
    """Add each element's MAIL_STYLES as a style attribute next to its classes."""

    def one(m: re.Match[str]) -> str:
        styles = [MAIL_STYLES[c] for c in m.group(1).split() if c in MAIL_STYLES]
        return m.group(0) + (f' style="{";".join(styles)}"' if styles else "")

    return _CLASS.sub(one, html)


def pct(part: int, whole: int) -> int:
    """A bar's width in 5 % steps (the CSS classes w0 ... w100)."""
    return min(100, 5 * round(20 * part / whole)) if whole else 0


def _context(week: Week, t: Translator, categories: Mapping[str, Category]
             ) -> dict[str, object]:
    def why(reason: str) -> str:
        return reason_text(reason, t, categories)

    def cat(slug: str) -> str:
        return category_name(categories.get(slug), slug, t.lang)

    def weekday(d: date) -> str:
        return t(f"weekly.day.{d.weekday()}")

    return {"week": week, "t": t, "lang": t.lang, "why": why, "cat": cat, "weekday": weekday,
            "pct": pct}


def render_text(week: Week, t: Translator, categories: Mapping[str, Category], *,
                link: str = "") -> str:
    ctx = _context(week, t, categories)
    why, cat, weekday = ctx["why"], ctx["cat"], ctx["weekday"]
    assert callable(why) and callable(cat) and callable(weekday)
    lines = [t("weekly.title", start=week.start.date().isoformat(),
               end=week.last_day.isoformat()), ""]
    for cw in week.children:
        lines += [f"== {cw.child.name} ==",
                  t("weekly.devices") + ": " + (", ".join(cw.devices) or "-"),
                  t("weekly.totals", queries=cw.queries, blocked=cw.blocked)]
        lines.append(t("weekly.chart") + ":")
        for d, (allowed, blocked) in zip(week.days, cw.days, strict=True):
            lines.append(f"  {weekday(d)} {d:%d/%m}: {allowed} / {blocked}")
        if cw.categories:
            lines.append(t("weekly.by_category") + ": " + ", ".join(
                f"{cat(s)} {n}" for s, n in cw.top_categories()))
        if cw.allowed_sites:
            lines.append(t("weekly.top_allowed") + ":")
            lines += [f"  {s.name} ({s.count})" for s in cw.top_allowed()]
        if cw.blocked_sites:
            lines.append(t("weekly.top_blocked") + ":")
            lines += [f"  {s.name} ({s.count}): {why(s.reason)}" for s in cw.top_blocked()]
        if cw.requests:
            lines.append(t("weekly.requests") + ":")
            lines += [f"  {r.domain}: {t('status.' + r.status)}"
                      + (f" ({r.answered_by})" if r.answered_by else "") for r in cw.requests]
        lines.append(t("weekly.bypass", n=cw.bypass))
        lines.append("")
    if week.new_devices:
        lines.append(t("weekly.new_devices") + ": " + ", ".join(
            d.name or ", ".join(d.identifiers) for d in week.new_devices))
    if link:
        lines += ["", f"{t('alert.open')}: {link}"]
    return "\n".join(lines) + "\n"


# -- sending ------------------------------------------------------------------------------------
def _recipients(store: Store, alerts: Alerts, household: str) -> list[tuple[str, str]]:
    """(address, lang) per parent: their own address, else alerts.email.to (once each)."""
    email = alerts.settings.email
    if email is None:
        return []
    prefs = store.alert_prefs()
    out: dict[str, str] = {}
    fallback = False
    for acc in store.accounts():
        p = prefs.get(acc.id)
        if p is not None and p.email:
            out.setdefault(p.email.lower(), p.lang if p.lang in LANGS else household)
        else:
            fallback = True
    if fallback or not out:
        for addr in email.to:
            out.setdefault(addr.lower(), household)
    return list(out.items())


def queue_weekly(store: Store, alerts: Alerts, start: datetime,
                 categories: Mapping[str, Category], tld: tldextract.TLDExtract | None,
                 household: str) -> int:
    """Put one e-mail per parent in the alert delivery queue (retries included); returns
    how many. Blocking: run in a thread."""
    week = build_week(store, start, tld)
    link = f"{alerts.ui_url()}/reports/weekly?week={start.date().isoformat()}"
    rows = []
    for address, lang in _recipients(store, alerts, household):
        t = Translator(lang, alerts.catalogues)
        payload = {
            "title": t("weekly.subject", start=start.date().strftime("%d/%m"),
                       end=week.last_day.strftime("%d/%m")),
            "text": render_text(week, t, categories, link=link),
            "html": render_html(week, t, categories, link=link),
            "lang": lang, "kind": WEEKLY_KIND, "id": f"weekly-{start.date()}-{address}",
        }
        rows.append(("email", address, WEEKLY_KIND, payload, alerts.clock()))
    if rows:
        store.enqueue_alerts(rows)
    return len(rows)


async def weekly_loop(store: Store, alerts: Alerts, categories: Mapping[str, Category],
                      tld: tldextract.TLDExtract | None, household: Callable[[], str],
                      stop: asyncio.Event, *, every: float = 300.0) -> None:
    """Every Monday from 07:00 household time, last week's report, once (a store mark)."""
    while not stop.is_set():
        try:
            now = alerts.clock()
            if now.weekday() == 0 and now.time() >= SEND_AFTER:
                start = last_week(now)
                key = f"weekly:{start.date().isoformat()}"
                if alerts.settings.email is not None and await asyncio.to_thread(
                    store.mark, key, now
                ):
                    n = await asyncio.to_thread(queue_weekly, store, alerts, start, categories,
                                                tld, household())
                    log.info("weekly report queued for %d parent(s)", n)
        except Exception:
            log.exception("weekly report failed")
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass


# -- the page -----------------------------------------------------------------------------------
@routes.get("/reports/weekly")
async def weekly_page(request: web.Request) -> web.Response:

    svc, state = request.app[SERVICES], request.app[STATE]
    now = svc.clock()
    start = last_week(now)
    asked = request.query.get("week", "")
    if asked:
        try:
            start = week_start(date.fromisoformat(asked), now.tzinfo)
        except ValueError:
            raise web.HTTPBadRequest(text="week: use YYYY-MM-DD\n") from None
    week = await in_thread(build_week, svc.store, start, state.tld)
    t = translator(request)
    return await page(request, "weekly.html", {
        **_context(week, t, svc.categories),
        "prev": (start - timedelta(days=7)).date().isoformat(),
        "next": (start + timedelta(days=7)).date().isoformat() if start + timedelta(
            days=7) <= last_week(now) else "",
    })


__all__: Sequence[str] = ("build_week", "queue_weekly", "render_html", "render_text", "routes")
