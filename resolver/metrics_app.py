"""A tiny aiohttp app: /metrics (prometheus text) and /healthz, served on web.listen when
there is no web UI (no store, or a bare resolver)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from resolver.metrics import METRICS


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    status = "degraded" if METRICS.degraded else "ok"
    return web.json_response({"status": status})


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    return app
