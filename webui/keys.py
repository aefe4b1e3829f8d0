"""Typed keys for the web app's state (never string keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jinja2
from aiohttp import web

if TYPE_CHECKING:
    from webui.app import Services, WebState
    from webui.auth import Principal

SERVICES: web.AppKey[Services] = web.AppKey("nestguard_services")
STATE: web.AppKey[WebState] = web.AppKey("nestguard_state")
JINJA: web.AppKey[jinja2.Environment] = web.AppKey("nestguard_jinja")

# per request
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("nestguard_principal")
LANG: web.RequestKey[str] = web.RequestKey("nestguard_lang")
NONCE: web.RequestKey[str] = web.RequestKey("nestguard_nonce")
