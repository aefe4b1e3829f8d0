"""Typed keys for the web app's state (never string keys)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

if TYPE_CHECKING:
    from webui.app import Services, WebState
    from webui.auth import Principal

SERVICES: web.AppKey[Services] = web.AppKey("nestguard_services")
STATE: web.AppKey[WebState] = web.AppKey("nestguard_state")
JINJA: web.AppKey[jinja2.Environment] = web.AppKey("nestguard_jinja")
# Parts of the Settings page that other modules own (the alert channels): each gives the page
# more template values. Registered by app.py, so views.py needs no import of them.
SettingsPart = Callable[[web.Request], Awaitable[dict[str, Any]]]
SETTINGS_PARTS: web.AppKey[tuple[SettingsPart, ...]] = web.AppKey("nestguard_settings_parts")

# per request
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("nestguard_principal")
LANG: web.RequestKey[str] = web.RequestKey("nestguard_lang")
NONCE: web.RequestKey[str] = web.RequestKey("nestguard_nonce")
