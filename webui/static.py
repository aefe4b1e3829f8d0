"""Static assets, served from memory (a fixed set of names; anything else is 404).

No CDN, no build step: the few files under webui/static/ are read once at import."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).parent / "static"
TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


def _load() -> dict[str, tuple[bytes, str, str]]:
    files: dict[str, tuple[bytes, str, str]] = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file() and not path.is_symlink() and path.suffix in TYPES:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            files[path.name] = (body, TYPES[path.suffix], etag)
    return files


FILES = _load()


def serve(name: str, if_none_match: str = "") -> web.Response:
    entry = FILES.get(name)
    if entry is None:
        raise web.HTTPNotFound()
    body, ctype, etag = entry
    headers = {"Content-Type": ctype, "ETag": etag, "Cache-Control": "public, max-age=3600"}
    if if_none_match == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers)
