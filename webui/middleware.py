"""Security middleware: Host check (against DNS rebinding), login and roles, CSRF and Origin,
error pages, and the headers every response carries (strict CSP).

Order (outermost first): errors → hosts → authenticate → csrf → handler.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from policy.store import Conflict, NotFound, StoreError, StoreUnavailable
from webui import auth, blockpage
from webui.context import host_name, render, translator
from webui.i18n import pick_lang
from webui.keys import LANG, PRINCIPAL, SERVICES, STATE

log = logging.getLogger(__name__)

# Routes reachable without a session or token (an explicit allowlist, checked by a test).
PUBLIC_ROUTES = frozenset(
    {
        "/setup",  # only until the first account exists (the view answers 404 after)
        "/login",
        "/healthz",
        "/static/{name}",
        "/lang/{code}",
        "/api/v1/setup",  # only until the first account exists
        "/api/v1/login",
    }
)
METRICS_ROUTE = "/metrics"  # open to config.metrics_networks, else needs a login
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def allowed_host(request: web.Request) -> bool:
    allowed = request.app[SERVICES].allowed_hosts
    name = host_name(request.headers.get("Host", ""))
    return bool(name) and name in {h.lower() for h in allowed}


def json_error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, object] = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


ERROR_KEYS = {
    400: "error.400",
    401: "error.401",
    403: "error.403",
    404: "error.404",
    405: "error.405",
    409: "error.409",
    413: "error.413",
    421: "error.421",
    429: "error.429",
    500: "error.500",
    503: "error.503",
}


def error_response(request: web.Request, status: int, message: str = "") -> web.Response:
    """JSON for the API, a small page in the user's language for the rest."""
    t = translator(request)
    text = message or t(ERROR_KEYS.get(status, "error.500"))
    if is_api(request):
        return json_error(status, text)
    if status == 421:  # never render the UI for a foreign Host
        return web.Response(status=421, text="421 Misdirected Request\n")
    try:
        return render(request, "error.html", {"status": status, "message": text}, status=status)
    except Exception:  # the error page itself failed: plain text
        log.exception("error page failed")
        return web.Response(status=status, text=f"{status}\n")


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
    if request.app[SERVICES].secure_cookies:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects (raised by handlers after POST), with their cookies
            resp = web.Response(status=exc.status, headers=exc.headers)
            for morsel in exc.cookies.values():
                resp.cookies[morsel.key] = morsel
            return resp
        return error_response(request, exc.status)
    except asyncio.CancelledError:
        raise
    except NotFound:
        return error_response(request, 404)
    except Conflict:
        return error_response(request, 409)
    except StoreUnavailable as e:  # a full or failing disk: say so, never the file's path
        log.warning("cannot save %s %s: %s", request.method, request.path, e)
        return error_response(request, 503)
    except StoreError as e:  # the store refused a value the forms let through
        log.warning("store refused %s %s: %s", request.method, request.path, e)
        return error_response(request, 400)
    except Exception:
        log.exception("web handler failed: %s %s", request.method, request.path)
        return error_response(request, 500)


@web.middleware
async def hosts(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only our own names reach the UI (no DNS rebinding). In block-page mode any other Host is a
    blocked name the resolver pointed at us: it gets the block page, nothing else."""
    state = request.app[STATE]
    request[LANG] = pick_lang(request.cookies.get(auth.LANG_COOKIE), state.household_lang,
                              request.headers.get("Accept-Language", ""))
    request[PRINCIPAL] = None
    if allowed_host(request):
        return await handler(request)
    if state.block_answer == "blockpage" and request.headers.get("Host"):
        return await blockpage.serve(request)
    return web.Response(status=421, text="421 Misdirected Request\n")


def remote_ip(request: web.Request) -> str:
    return request.remote or ""


def _in_networks(ip: str, request: web.Request) -> bool:
    nets = request.app[SERVICES].metrics_networks
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in nets)


async def resolve_principal(request: web.Request) -> auth.Principal | None:
    svc, state = request.app[SERVICES], request.app[STATE]
    header = request.headers.get("Authorization", "")
    if header:
        return await asyncio.to_thread(auth.token_principal, svc.store, header)
    raw = request.cookies.get(auth.SESSION_COOKIE, "")
    if raw:
        return await asyncio.to_thread(
            auth.session_principal, svc.store, raw, svc.clock(), state.session_policy
        )
    return None


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None:  # no such route (or method): 404/405, no hints
        return error_response(request, match.http_exception.status)
    resource = match.route.resource
    canonical = resource.canonical if resource is not None else ""
    principal = await resolve_principal(request)
    request[PRINCIPAL] = principal
    if canonical in PUBLIC_ROUTES:
        return await handler(request)
    if canonical == METRICS_ROUTE and _in_networks(remote_ip(request), request):
        return await handler(request)
    if principal is None:
        state = request.app[STATE]
        if is_api(request):
            if request.headers.get("Authorization"):
                return json_error(401, "invalid or revoked API token")
            msg = "setup required" if not state.has_accounts else "login required"
            return json_error(401, msg)
        if not state.has_accounts:
            raise web.HTTPSeeOther("/setup")
        target = request.rel_url.path_qs if request.method == "GET" else "/"
        raise web.HTTPSeeOther("/login?next=" + quote(target, safe="/"))
    role = getattr(match.handler, "nestguard_role", "parent")
    if role == "admin" and not principal.is_admin:
        return error_response(request, 403)
    return await handler(request)


def _origin_ok(request: web.Request) -> bool:
    """An unsafe request must come from our own page (Origin, or Referer without one)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        if referer is None:
            return True  # not a browser form (curl, API client): the token check still applies
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme == request.scheme and parts.netloc.lower() == request.host.lower()


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in SAFE_METHODS:
        return await handler(request)
    if not _origin_ok(request):
        log.warning("cross-origin %s %s refused", request.method, request.path)
        return error_response(request, 403)
    principal = request[PRINCIPAL]
    resource = request.match_info.route.resource
    public = resource is not None and resource.canonical in PUBLIC_ROUTES
    # login and setup carry no token (there is no session yet); the Origin check applies
    if principal is not None and principal.session is not None and not public:
        sent = request.headers.get("X-CSRF-Token", "")
        if not sent and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            form = await request.post()
            value = form.get("csrf", "")
            sent = value if isinstance(value, str) else ""
        if not sent or not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
            log.warning("missing or wrong CSRF token on %s %s", request.method, request.path)
            return error_response(request, 403)
    return await handler(request)
