"""nestguard's web UI for parents (aiohttp, server-rendered, Vietnamese and English).

    from webui.app import Services, create_app
    app = create_app(Services(store=..., live_policy=..., categories=..., nudge=..., clock=...))

Modules: app (Services, create_app), keys (AppKeys), middleware (Host check, login, roles,
CSRF, error pages, security headers), auth (scrypt, sessions, tokens, throttling), forms
(validation), actions (what pages and API do), views (HTML pages), api (/api/v1 JSON),
blockpage (the child's page under a blocked Host), present (reasons and profiles in words),
i18n (+ i18n/vi.json, i18n/en.json), static (assets from memory), templates/, static/.

Store settings the UI writes (JSON values, read by the resolver side):
  block_answer ("null" | "nxdomain" | "blockpage"), retention_days (1-365), ui_lang ("vi" |
  "en"), unknown_devices ("strictest" | "adults" | a child's name).
"""
