"""The Settings page's alert sections: channels (admins), each parent's own address and quiet
hours, the test button per channel. Saved channels go to the store's `alerts` setting in the
YAML's shape and win over the YAML from then on (webui/alerts.py parses both)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from blocklists.feed import BadFeed, validate_feed_url
from policy.store import AlertPrefs
from webui import forms
from webui.alerts import (
    EVENTS,
    PRESETS,
    SECURITIES,
    AlertConfigError,
    Alerts,
    alerts_to_raw,
    check_email,
    parse_alerts,
    parse_quiet,
)
from webui.context import (
    admin_only,
    form_state,
    in_thread,
    principal,
    record,
    see_other,
    translator,
)
from webui.forms import FormError, form_fields
from webui.i18n import LANGS
from webui.keys import SERVICES
from webui.views import settings_page

routes = web.RouteTableDef()
Raw = Mapping[str, object]


def _hub(request: web.Request) -> Alerts:
    alerts = request.app[SERVICES].alerts
    if alerts is None:
        raise web.HTTPNotFound()
    return alerts


async def context(request: web.Request) -> dict[str, Any]:
    """What settings.html's alert sections show."""
    svc = request.app[SERVICES]
    alerts = svc.alerts
    if alerts is None:
        return {"alerts": None}
    p = principal(request)
    prefs = (await in_thread(svc.store.alert_prefs)).get(p.account_id, AlertPrefs(p.account_id))
    statuses = await in_thread(svc.store.channel_statuses)
    s = alerts.settings
    channels = [
        {"id": ch, "status": statuses.get(ch),
         "label": s.email.host if ch == "email" and s.email else ch.removeprefix("webhook:")}
        for ch in s.channels()
    ]
    return {
        "alerts": s,
        "alert_channels": channels,
        "alert_events": list(EVENTS),
        "alert_presets": list(PRESETS),
        "alert_securities": list(SECURITIES),
        "my_alerts": prefs,
    }


def _error_field(e: AlertConfigError) -> str:
    last = e.key.rsplit(".", 1)[-1]
    return {"from": "sender", "quiet_hours": "quiet"}.get(last.split("[")[0], last.split("[")[0])


def _fail(e: AlertConfigError) -> FormError:
    return forms.fail(_error_field(e), "err.alert_setting", message=e.message)


def _events(raw: Raw) -> list[str]:
    got = raw.get("events", [])
    values = got if isinstance(got, list) else [got]
    return [str(v) for v in values if v in EVENTS]


async def _save(request: web.Request, raw_settings: dict[str, object], what: str) -> None:
    alerts = _hub(request)
    try:
        new = parse_alerts(raw_settings)
    except AlertConfigError as e:
        raise _fail(e) from None
    await in_thread(request.app[SERVICES].store.set_setting, "alerts", alerts_to_raw(new))
    alerts.settings = new
    await record(request, "alerts", what)


async def save_email(request: web.Request, raw: Raw) -> None:
    alerts = _hub(request)
    current = alerts_to_raw(alerts.settings)
    old = current.get("email") if isinstance(current.get("email"), dict) else {}
    assert isinstance(old, dict)
    host = str(raw.get("host", "")).strip()
    if not host:  # an empty host turns e-mail alerts off
        current["email"] = None
        await _save(request, current, "e-mail off")
        return
    port = str(raw.get("port", "") or "587").strip()
    if not port.isdigit():
        raise forms.fail("port", "err.number")
    password = str(raw.get("password", ""))
    to = [a.strip() for a in str(raw.get("to", "")).replace(";", ",").split(",") if a.strip()]
    current["email"] = {
        "host": host, "port": int(port), "security": str(raw.get("security", "starttls")),
        "username": str(raw.get("username", "")).strip(),
        "password": password or old.get("password", ""),  # blank: keep the saved one
        "password_file": old.get("password_file"),
        "from": str(raw.get("sender", "")).strip(), "to": to, "events": _events(raw),
        "quiet_hours": str(raw.get("quiet", "")).strip(),
    }
    await _save(request, current, f"e-mail via {host}")


async def add_webhook(request: web.Request, raw: Raw) -> None:
    alerts = _hub(request)
    url = str(raw.get("url", "")).strip()
    preset = str(raw.get("preset", "json"))
    if url or preset != "telegram":  # the feed URL rules, with the parent's words
        try:
            validate_feed_url(url, allow_http=False, allow_loopback=alerts.settings.allow_loopback)
        except BadFeed as e:
            if not (alerts.settings.allow_loopback and url.startswith("http://127.")):
                raise forms.fail("url", e.key) from None
    current = alerts_to_raw(alerts.settings)
    hooks = current["webhooks"]
    assert isinstance(hooks, list)
    hooks.append({
        "name": str(raw.get("name", "")).strip(), "url": url, "preset": preset,
        "token": str(raw.get("token", "")).strip(), "chat_id": str(raw.get("chat_id", "")).strip(),
        "events": _events(raw), "quiet_hours": str(raw.get("quiet", "")).strip(),
    })
    await _save(request, current, f"webhook {raw.get('name', '')}")


async def save_mine(request: web.Request, raw: Raw) -> None:
    svc = request.app[SERVICES]
    p = principal(request)
    address = str(raw.get("email", "")).strip()
    if address and not forms_email(address):
        raise forms.fail("email", "err.email")
    lang = str(raw.get("lang", ""))
    if lang and lang not in LANGS:
        raise forms.fail("lang", "err.choice")
    start, end = str(raw.get("quiet_start", "")).strip(), str(raw.get("quiet_end", "")).strip()
    if start or end:
        try:
            parse_quiet(f"{start}-{end}")
        except ValueError:
            raise forms.fail("quiet_start", "err.time") from None
    await in_thread(svc.store.save_alert_prefs, AlertPrefs(p.account_id, address, lang, start, end))
    await in_thread(svc.store.audit, p.username, "alerts.mine", address or "–")


def forms_email(value: str) -> bool:
    try:
        check_email(value, "email")
    except AlertConfigError:
        return False
    return True


async def _form(request: web.Request, form_id: str, action: Any) -> web.StreamResponse:
    raw = form_fields(await request.post())
    raw = {**raw, "events": (await request.post()).getall("events", [])}
    try:
        await action(request, raw)
    except FormError as e:
        return await settings_page(request, form_state(request, form_id, raw, e), 400)
    raise see_other("/settings#alerts", "saved")


@routes.post("/settings/alerts/email")
@admin_only
async def email_save(request: web.Request) -> web.StreamResponse:
    return await _form(request, "alert_email", save_email)


@routes.post("/settings/alerts/webhooks")
@admin_only
async def webhook_add(request: web.Request) -> web.StreamResponse:
    return await _form(request, "alert_hook", add_webhook)


@routes.post("/settings/alerts/webhooks/{name}/delete")
@admin_only
async def webhook_delete(request: web.Request) -> web.StreamResponse:
    alerts = _hub(request)
    name = request.match_info["name"]
    current = alerts_to_raw(alerts.settings)
    hooks = current["webhooks"]
    assert isinstance(hooks, list)
    current["webhooks"] = [h for h in hooks if h.get("name") != name]
    await _save(request, current, f"webhook {name} removed")
    raise see_other("/settings#alerts", "removed")


@routes.post("/settings/alerts/mine")
async def mine_save(request: web.Request) -> web.StreamResponse:
    return await _form(request, "alert_mine", save_mine)


@routes.post("/settings/alerts/test")
async def channel_test(request: web.Request) -> web.StreamResponse:
    alerts = _hub(request)
    raw = form_fields(await request.post())
    channel = str(raw.get("channel", ""))
    p = principal(request)
    if channel not in alerts.settings.channels() or (channel != "email" and not p.is_admin):
        raise web.HTTPNotFound()
    svc = request.app[SERVICES]
    mine = (await in_thread(svc.store.alert_prefs)).get(p.account_id)
    to = mine.email if channel == "email" and mine is not None else ""
    error = await alerts.test(channel, translator(request).lang, to=to)
    if error:
        err = forms.fail("channel", "err.alert_test", message=error)
        return await settings_page(request, form_state(request, "alert_test", raw, err), 400)
    raise see_other("/settings#alerts", "alert_test")
