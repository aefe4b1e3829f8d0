"""Alerts: what parents hear about without opening the UI, by e-mail and webhooks.

Flow: an event source calls `Alerts.emit(AlertEvent)` (never blocks, never raises: the DNS
path's activity sink, the block page's "ask", the watchers below). The alert loop folds repeats
(one alert per (kind, device) per hour, the rest counted into the next one: "and 14 more"),
renders one message per recipient in their language, and writes it to the delivery queue in
the store (`alert_outbox`). The same loop delivers due rows: SMTP in a worker thread, webhooks
over aiohttp with the feed fetcher's address guard; a failed try is retried with backoff and
the channel's last error is kept for the Settings page. Nothing of an alert's text is logged.

Adding an event kind (e.g. the budgets issue's "budget spent") is one line in `EVENTS` plus its
texts in both i18n catalogues: `alert.<kind>.title`, `alert.<kind>.body` and the Settings
switch `alerts.event.<kind>`; then call
`alerts.emit(AlertEvent("budget", device_id=..., child_id=..., name=...))`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import html
import logging
import re
import smtplib
import ssl
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from blocklists.feed import FeedError, UrlRules, check_url
from blocklists.sync import GuardedResolver
from policy.model import QueryEvent
from policy.store import AlertPrefs, OutboxRow, Store, StoreError
from webui.i18n import LANGS, Translator

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventKind:
    admins_only: bool = False  # household-technical events go to admin accounts only
    link: str = "/"  # where in the UI the alert points ({device} is replaced)


# One line per kind. Texts: alert.<kind>.title, alert.<kind>.body, alerts.event.<kind>.
EVENTS: dict[str, EventKind] = {
    "security": EventKind(link="/activity?device={device}"),  # malware, phishing, scam
    "bypass": EventKind(link="/activity?device={device}"),  # on a child's device
    "new_device": EventKind(link="/devices"),
    "request": EventKind(link="/requests"),  # a child's "ask for access"
    "budget": EventKind(link="/"),  # a daily time budget spent (Home answers "more time")
    "feed_failing": EventKind(admins_only=True, link="/lists"),  # no sync for over a day
    "feed_integrity": EventKind(admins_only=True, link="/lists"),  # signature / pin mismatch
}
TEST_KIND = "test"
FORWARD_CHANNEL = "forward"  # accepted site reports to reports.forward_url
FOLD_WINDOW = timedelta(hours=1)
FEED_FAILING_AFTER = timedelta(days=1)
KEEP_SENT = timedelta(days=7)  # delivered and given-up alerts, for the Settings page
SECURITIES = ("starttls", "tls", "none")
PRESETS = ("json", "ntfy", "telegram")
TELEGRAM_API = "https://api.telegram.org"
EMAIL_RE = re.compile(r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,253}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
TOKEN_RE = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{20,100}$")
CHAT_RE = re.compile(r"^(-?\d{1,20}|@[A-Za-z0-9_]{4,64})$")
QUIET_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
USER_AGENT = "nestguard-alerts/0.1"


class AlertConfigError(ValueError):
    """A bad `alerts:` value; `key` is its path ("alerts.webhooks[0].url")."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


# -- settings -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Quiet:
    """Quiet hours: alerts wait until the end (start > end runs overnight)."""

    start: time
    end: time

    def until(self, now: datetime) -> datetime | None:
        """The end of the quiet window `now` is in, or None when `now` is not quiet."""
        t = now.timetz().replace(tzinfo=None)
        start, end = self.start, self.end
        inside = start <= t < end if start < end else (t >= start or t < end)
        if not inside:
            return None
        day = now.date() if t < end else now.date() + timedelta(days=1)
        return datetime.combine(day, end, tzinfo=now.tzinfo)

    def text(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_quiet(value: object) -> Quiet | None:
    """'22:00-07:00' (or '' / None: no quiet hours). ValueError says what is wrong."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value.count("-") != 1:
        raise ValueError(f"{value!r} is not a time range like 22:00-07:00")
    a, b = (p.strip() for p in value.split("-"))
    if not QUIET_RE.match(a) or not QUIET_RE.match(b):
        raise ValueError(f"{value!r} is not a time range like 22:00-07:00")
    start, end = time.fromisoformat(a), time.fromisoformat(b)
    if start == end:
        raise ValueError(f"{value!r}: the end must differ from the start")
    return Quiet(start, end)


@dataclass(frozen=True, slots=True)
class EmailChannel:
    host: str
    port: int = 587
    security: str = "starttls"  # starttls | tls | none (none only to a loopback host)
    username: str = ""
    password_file: Path | None = None
    password: str = ""  # set in the Settings page (kept in the database), else the file's
    sender: str = ""
    to: tuple[str, ...] = ()  # for accounts that have no address of their own
    events: frozenset[str] = frozenset(EVENTS)
    quiet: Quiet | None = None  # for the `to` addresses (parents have their own)
    timeout: float = 20.0

    def password_now(self) -> str:
        if self.password:
            return self.password
        if self.password_file is None:
            return ""
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise DeliveryError(f"cannot read password_file: {e.strerror}") from None


@dataclass(frozen=True, slots=True)
class Webhook:
    name: str
    url: str
    preset: str = "json"  # json | ntfy | telegram
    token: str = ""  # telegram: the bot's token
    chat_id: str = ""  # telegram: the chat to write to
    events: frozenset[str] = frozenset(EVENTS)
    quiet: Quiet | None = None

    @property
    def channel(self) -> str:
        return f"webhook:{self.name}"


@dataclass(frozen=True, slots=True)
class AlertSettings:
    email: EmailChannel | None = None
    webhooks: tuple[Webhook, ...] = ()
    ui_url: str = ""  # links in alerts (default: the web UI's listen address)
    allow_loopback: bool = False  # tests only: webhooks to 127.0.0.1

    def channels(self) -> list[str]:
        return (["email"] if self.email else []) + [w.channel for w in self.webhooks]


_TOP_KEYS = ("email", "webhooks", "ui_url", "allow_loopback")
_EMAIL_KEYS = ("host", "port", "security", "username", "password_file", "password", "from",
               "to", "events", "quiet_hours")
_HOOK_KEYS = ("name", "url", "preset", "token", "chat_id", "events", "quiet_hours")


def parse_alerts(raw: object, *, base: Path | None = None, key: str = "alerts"
                 ) -> AlertSettings:
    """The `alerts:` mapping (YAML, or the JSON the Settings page stores) -> AlertSettings.

    The one validator for both entry points; AlertConfigError names the key path. Webhook URLs
    follow the web UI's feed URL rules (blocklists.sync.check_url): https only, no LAN or
    loopback targets (loopback by the tests' `allow_loopback` only)."""
    if raw is None:
        return AlertSettings()
    top = _mapping(raw, key, _TOP_KEYS)
    loopback = _bool(top.get("allow_loopback", False), f"{key}.allow_loopback")
    email = None
    if top.get("email") is not None:
        email = _parse_email(top["email"], f"{key}.email", base)
    hooks_raw = top.get("webhooks") or []
    if not isinstance(hooks_raw, list):
        raise AlertConfigError(f"{key}.webhooks", "expected a list of webhooks")
    hooks: list[Webhook] = []
    for i, item in enumerate(hooks_raw):
        hook = _parse_webhook(item, f"{key}.webhooks[{i}]", loopback)
        if any(h.name == hook.name for h in hooks):
            raise AlertConfigError(f"{key}.webhooks[{i}].name", f"{hook.name!r} is used twice")
        hooks.append(hook)
    ui_url = str(top.get("ui_url") or "")
    if ui_url:
        parts = urlsplit(ui_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AlertConfigError(f"{key}.ui_url", f"{ui_url!r} is not an http(s) address")
    return AlertSettings(email=email, webhooks=tuple(hooks), ui_url=ui_url.rstrip("/"),
                         allow_loopback=loopback)


def alerts_to_raw(s: AlertSettings) -> dict[str, object]:
    """The inverse of parse_alerts (what the Settings page stores)."""
    out: dict[str, object] = {"webhooks": [], "allow_loopback": s.allow_loopback}
    if s.ui_url:
        out["ui_url"] = s.ui_url
    if s.email is not None:
        e = s.email
        out["email"] = {
            "host": e.host, "port": e.port, "security": e.security, "username": e.username,
            "password_file": str(e.password_file) if e.password_file else None,
            "password": e.password, "from": e.sender, "to": list(e.to),
            "events": sorted(e.events), "quiet_hours": e.quiet.text() if e.quiet else "",
        }
    out["webhooks"] = [
        {"name": w.name, "url": w.url, "preset": w.preset, "token": w.token,
         "chat_id": w.chat_id, "events": sorted(w.events),
         "quiet_hours": w.quiet.text() if w.quiet else ""}
        for w in s.webhooks
    ]
    return out


def _mapping(raw: object, key: str, known: tuple[str, ...]) -> Mapping[str, object]:
    if not isinstance(raw, dict):
        raise AlertConfigError(key, "expected a mapping of keys")
    for k in raw:
        if k not in known:
            raise AlertConfigError(f"{key}.{k}", f"unknown key (known: {', '.join(known)})")
    return raw


def _bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise AlertConfigError(key, f"expected true or false, not {value!r}")
    return value


def _text(s: Mapping[str, object], name: str, key: str, *, required: bool = False,
          max_len: int = 200) -> str:
    value = s.get(name)
    if value is None or value == "":
        if required:
            raise AlertConfigError(f"{key}.{name}", "required")
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise AlertConfigError(f"{key}.{name}", f"expected text, not {value!r}")
    text = str(value).strip()
    if len(text) > max_len or any(ord(c) < 32 for c in text):
        raise AlertConfigError(f"{key}.{name}", "too long or has control characters")
    return text


def _events(s: Mapping[str, object], key: str) -> frozenset[str]:
    value = s.get("events")
    if value is None:
        return frozenset(EVENTS)
    if not isinstance(value, list):
        raise AlertConfigError(f"{key}.events", "expected a list of event kinds")
    for i, v in enumerate(value):
        if v not in EVENTS:
            raise AlertConfigError(
                f"{key}.events[{i}]", f"unknown event {v!r} (known: {', '.join(EVENTS)})"
            )
    return frozenset(str(v) for v in value)


def _quiet(s: Mapping[str, object], key: str) -> Quiet | None:
    try:
        return parse_quiet(s.get("quiet_hours"))
    except ValueError as e:
        raise AlertConfigError(f"{key}.quiet_hours", str(e)) from None


def check_email(value: str, key: str) -> str:
    if not EMAIL_RE.match(value):
        raise AlertConfigError(key, f"{value!r} is not an e-mail address")
    return value


def _loopback_host(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_email(raw: object, key: str, base: Path | None) -> EmailChannel:
    s = _mapping(raw, key, _EMAIL_KEYS)
    host = _text(s, "host", key, required=True, max_len=253).lower()
    port = s.get("port", 587)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise AlertConfigError(f"{key}.port", f"{port!r} is not a port number")
    security = s.get("security", "starttls")
    if security not in SECURITIES:
        raise AlertConfigError(f"{key}.security", f"{security!r}: use {', '.join(SECURITIES)}")
    if security == "none" and not _loopback_host(host):
        raise AlertConfigError(
            f"{key}.security", "none (no encryption) is allowed only to a loopback host"
        )
    pw_file = _text(s, "password_file", key, max_len=4096)
    path = None
    if pw_file:
        path = Path(pw_file).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
    sender = check_email(_text(s, "from", key, required=True), f"{key}.from")
    to_raw = s.get("to") or []
    if isinstance(to_raw, str):
        to_raw = [to_raw]
    if not isinstance(to_raw, list):
        raise AlertConfigError(f"{key}.to", "expected a list of e-mail addresses")
    to = tuple(check_email(str(a).strip(), f"{key}.to[{i}]") for i, a in enumerate(to_raw))
    return EmailChannel(
        host=host, port=port, security=str(security), username=_text(s, "username", key),
        password_file=path, password=_text(s, "password", key, max_len=500), sender=sender,
        to=to, events=_events(s, key), quiet=_quiet(s, key),
    )


def webhook_rules(url: str, *, allow_loopback: bool) -> UrlRules:
    """The web UI's feed URL rules. The tests' opt-in admits loopback receivers, and plain
    http:// to them only (a test server has no certificate a client would trust)."""
    host = (urlsplit(url).hostname or "").lower()
    return UrlRules(allow_loopback=allow_loopback,
                    allow_http=allow_loopback and _loopback_host(host))


def check_webhook_url(url: str, key: str, *, allow_loopback: bool) -> str:
    """A webhook URL obeys the web UI's feed URL rules (one rule: blocklists.sync)."""
    try:
        check_url(url, webhook_rules(url, allow_loopback=allow_loopback))
    except FeedError as e:
        raise AlertConfigError(key, str(e).removeprefix("feed URL: ")) from None
    return url


def _parse_webhook(raw: object, key: str, loopback: bool) -> Webhook:
    s = _mapping(raw, key, _HOOK_KEYS)
    name = _text(s, "name", key, required=True, max_len=40)
    if not NAME_RE.match(name):
        raise AlertConfigError(f"{key}.name", "use lower-case letters, digits, - and _")
    preset = s.get("preset", "json")
    if preset not in PRESETS:
        raise AlertConfigError(f"{key}.preset", f"{preset!r}: use {', '.join(PRESETS)}")
    url = _text(s, "url", key, required=preset != "telegram", max_len=2000)
    token = _text(s, "token", key, max_len=120)
    chat = _text(s, "chat_id", key, max_len=80)
    if preset == "telegram":
        url = url or TELEGRAM_API
        if not TOKEN_RE.match(token):
            raise AlertConfigError(f"{key}.token", "a Telegram bot token looks like 123:ABC...")
        if not CHAT_RE.match(chat):
            raise AlertConfigError(f"{key}.chat_id", "a chat id is a number or @channel")
    if preset == "ntfy" and not urlsplit(url).path.strip("/"):
        raise AlertConfigError(f"{key}.url", "an ntfy URL ends with the topic")
    check_webhook_url(url, f"{key}.url", allow_loopback=loopback)
    return Webhook(name=name, url=url, preset=str(preset), token=token, chat_id=chat,
                   events=_events(s, key), quiet=_quiet(s, key))


# -- events -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertEvent:
    kind: str  # a key of EVENTS
    device_id: int | None = None
    child_id: int | None = None
    name: str = ""  # the site, the feed, the device's address...
    detail: str = ""  # the category, the child's message, the feed's error
    at: datetime | None = None

    @property
    def fold_key(self) -> tuple[str, object]:
        return (self.kind, self.device_id if self.device_id is not None else self.name)


def events_of(rows: Iterable[QueryEvent]) -> list[AlertEvent]:
    """What the DNS path's activity rows hold for parents: security blocks on any device,
    bypass attempts on a child's device."""
    out = []
    for e in rows:
        reason = e.reason
        if e.action != "block":
            continue
        if reason.startswith("security:"):
            out.append(AlertEvent("security", e.device_id, e.child_id, e.qname,
                                  reason.split(":")[1], e.at))
        elif reason.startswith("bypass:") and e.child_id is not None:
            out.append(AlertEvent("bypass", e.device_id, e.child_id, e.qname,
                                  reason.split(":", 1)[1], e.at))
    return out


class DeliveryError(Exception):
    """A try failed; `permanent` means retrying cannot help (e.g. HTTP 400)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(slots=True)
class _Recipient:
    channel: str
    address: str  # e-mail address, '' for webhooks
    lang: str
    quiet: Quiet | None


# -- the hub ------------------------------------------------------------------------------------
@dataclass(slots=True)
class Alerts:
    """One per process. `run()` is the alert loop; the rest is called by the UI and sources."""

    store: Store
    settings: AlertSettings
    clock: Callable[[], datetime]  # aware, the household's zone
    catalogues: Mapping[str, Mapping[str, str]]
    household_lang: Callable[[], str] = lambda: "vi"
    retry_base: float = 30.0  # seconds; doubles per try
    retry_max: float = 3600.0
    max_attempts: int = 30  # about a day of tries
    tick: float = 1.0
    watch_every: float = 5.0
    max_queued: int = 10_000
    default_ui_url: str = "http://nestguard.home.arpa"  # the web UI's address, for links
    forward_url: str = ""  # reports.forward_url: accepted reports are POSTed there (queued)
    forward_loopback: bool = False  # tests only
    _queue: collections.deque[AlertEvent] = field(default_factory=collections.deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _last: dict[tuple[str, object], datetime] = field(default_factory=dict)
    _folded: dict[tuple[str, object], int] = field(default_factory=dict)
    _last_watch: float = 0.0
    _last_purge: datetime | None = None
    _marks: set[str] = field(default_factory=set)
    dropped: int = 0

    # sources ---------------------------------------------------------------------------
    def emit(self, event: AlertEvent) -> None:
        """Queue an event (never blocks; the oldest are dropped past max_queued)."""
        if event.kind not in EVENTS:
            raise ValueError(f"unknown alert kind {event.kind!r}")
        if len(self._queue) >= self.max_queued:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        self._wake.set()

    def observe(self, rows: Sequence[QueryEvent]) -> None:
        for ev in events_of(rows):
            self.emit(ev)

    async def load(self) -> None:
        """Settings changed in the UI (stored in the database) win over the YAML."""
        raw = await asyncio.to_thread(self.store.get_setting, "alerts", None)
        if raw is None:
            return
        try:
            self.settings = parse_alerts(raw)
        except AlertConfigError as e:
            log.error("stored alert settings ignored (the YAML's are used): %s", e)

    # the loop --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert loop step failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)

    async def step(self) -> None:
        """Watch, fold and queue new events, then deliver what is due."""
        loop_now = asyncio.get_running_loop().time()
        if loop_now - self._last_watch >= self.watch_every:
            self._last_watch = loop_now
            for ev in await asyncio.to_thread(self._watch):
                self.emit(ev)
        events = list(self._queue)
        self._queue.clear()
        if events:
            await asyncio.to_thread(self._queue_events, events)
        await self.deliver_due()

    def _queue_events(self, events: Sequence[AlertEvent]) -> None:
        now = self.clock()
        rows: list[tuple[str, str, str, Mapping[str, object], datetime]] = []
        for ev in events:
            key = ev.fold_key
            last = self._last.get(key)
            if last is not None and now - last < FOLD_WINDOW:
                self._folded[key] = self._folded.get(key, 0) + 1
                continue
            self._last[key] = now
            more = self._folded.pop(key, 0)
            rows.extend(self._rows_for(ev, more, now))
        if len(self._last) > 50_000:  # bounded memory: forget windows that ended
            self._last = {k: t for k, t in self._last.items() if now - t < FOLD_WINDOW}
        if rows:
            self.store.enqueue_alerts(rows)

    def _recipients(self, kind: str) -> list[_Recipient]:
        s = self.settings
        out: list[_Recipient] = []
        household = self.household_lang()
        email = s.email
        if email is not None and (kind == TEST_KIND or kind in email.events):
            admins_only = EVENTS[kind].admins_only if kind in EVENTS else False
            prefs = self.store.alert_prefs()
            seen: set[str] = set()
            fallback = False
            for acc in self.store.accounts():
                if admins_only and acc.role != "admin":
                    continue
                p = prefs.get(acc.id)
                if p is None or not p.email:
                    fallback = True
                    continue
                if p.email.lower() in seen:
                    continue
                seen.add(p.email.lower())
                out.append(_Recipient("email", p.email, _lang(p, household), _prefs_quiet(p)))
            if fallback or not seen:
                for addr in email.to:
                    if addr.lower() not in seen:
                        seen.add(addr.lower())
                        out.append(_Recipient("email", addr, household, email.quiet))
        for hook in s.webhooks:
            if kind == TEST_KIND or kind in hook.events:
                out.append(_Recipient(hook.channel, "", household, hook.quiet))
        return out

    def _rows_for(self, ev: AlertEvent, more: int, now: datetime
                  ) -> list[tuple[str, str, str, Mapping[str, object], datetime]]:
        rows: list[tuple[str, str, str, Mapping[str, object], datetime]] = []
        names = self._names(ev)
        for r in self._recipients(ev.kind):
            payload = self.render(ev, r.lang, more=more, names=names)
            when = (r.quiet.until(now) if r.quiet else None) or now
            rows.append((r.channel, r.address, ev.kind, payload, when))
        return rows

    def _names(self, ev: AlertEvent) -> dict[str, str]:
        child = device = ""
        if ev.child_id is not None:
            with contextlib.suppress(StoreError):
                child = self.store.child(ev.child_id).name
        if ev.device_id is not None:
            with contextlib.suppress(StoreError):
                d = self.store.device(ev.device_id)
                device = d.name or (d.identifiers[0] if d.identifiers else "")
        return {"child": child, "device": device}

    def render(self, ev: AlertEvent, lang: str, *, more: int = 0,
               names: Mapping[str, str] | None = None) -> dict[str, object]:
        """Subject, plain text, HTML and link of one alert in one language."""
        t = Translator(lang if lang in LANGS else "vi", self.catalogues)
        names = names or {"child": "", "device": ""}
        params = {
            "child": names.get("child") or t("alert.nobody"),
            "device": names.get("device") or t("alert.unknown_device"),
            "name": ev.name,
            "detail": ev.detail,
        }
        title = t(f"alert.{ev.kind}.title", **params)
        body = t(f"alert.{ev.kind}.body", **params)
        if more:
            body += " " + t("alert.more", n=more)
        spec = EVENTS.get(ev.kind, EventKind())
        link = self.ui_url() + spec.link.format(device=ev.device_id or "")
        at = (ev.at or self.clock()).astimezone(self.clock().tzinfo)
        when = at.strftime("%Y-%m-%d %H:%M")
        text = f"{body}\n\n{t('alert.when')}: {when}\n{t('alert.open')}: {link}\n"
        page = (
            f'<!doctype html><html lang="{t.lang}"><body style="font-family:sans-serif">'
            f"<p>{html.escape(body)}</p><p>{html.escape(t('alert.when'))}: {when}</p>"
            f'<p><a href="{html.escape(link)}">{html.escape(t("alert.open"))}</a></p>'
            "</body></html>"
        )
        return {"id": uuid.uuid4().hex, "kind": ev.kind, "lang": t.lang, "title": title,
                "text": text, "body": body, "html": page, "link": link,
                "child": names.get("child", ""), "device": names.get("device", ""),
                "more": more, "at": at.isoformat()}

    def ui_url(self) -> str:
        return self.settings.ui_url or self.default_ui_url

    # watchers: new devices, feeds ----------------------------------------------------------
    def _watch(self) -> list[AlertEvent]:
        """New devices and feed trouble, each alerted once (marks in the store; the marks
        this process made are remembered so a quiet house costs reads, not writes)."""
        now = self.clock()
        out: list[AlertEvent] = []
        if self._last_purge is None or now - self._last_purge > timedelta(hours=1):
            self._last_purge = now
            self.store.purge_alerts(now - KEEP_SENT)
        for d in self.store.devices():
            if d.new and self._mark_once(f"new_device:{d.id}", now):
                ident = d.identifiers[0] if d.identifiers else ""
                out.append(AlertEvent("new_device", d.id, None, ident, "", now))
        for st in self.store.feed_statuses():
            since_key = f"feed_fail_since:{st.name}"
            if not st.error:
                if since_key in self._marks or self.store.marked(since_key) is not None:
                    self.store.unmark(since_key)
                    self._marks.discard(since_key)
                continue
            err = st.error.lower()
            if "sha256 mismatch" in err or "signature" in err:
                stamp = int(st.last_try.timestamp()) if st.last_try else 0
                if self._mark_once(f"feed_integrity:{st.name}:{stamp}", now):
                    out.append(AlertEvent("feed_integrity", None, None, st.name, st.error, now))
            # failing since the last good sync, or since we first saw it fail (never synced)
            self._mark_once(since_key, st.last_try or now)
            since = st.last_success or self.store.marked(since_key) or now
            if now - since > FEED_FAILING_AFTER:
                key = f"feed_failing:{st.name}:{int(since.timestamp())}"
                if self._mark_once(key, now):
                    out.append(AlertEvent("feed_failing", None, None, st.name, st.error, now))
        return out

    def _mark_once(self, key: str, at: datetime) -> bool:
        if key in self._marks:
            return False
        if len(self._marks) > 100_000:
            self._marks.clear()
        self._marks.add(key)
        return self.store.mark(key, at)

    # delivery ------------------------------------------------------------------------------
    async def deliver_due(self) -> int:
        """Try every due row once; returns how many were delivered."""
        now = self.clock()
        rows = await asyncio.to_thread(self.store.due_alerts, now)
        done = 0
        for row in rows:
            if await self._try(row):
                done += 1
        return done

    async def _try(self, row: OutboxRow) -> bool:
        try:
            await self.send(row.channel, row.recipient, row.payload)
        except DeliveryError as e:
            attempts = row.attempts + 1
            give_up = e.permanent or attempts >= self.max_attempts
            delay = min(self.retry_base * 2 ** (attempts - 1), self.retry_max)
            now = self.clock()
            retry = None if give_up else now + timedelta(seconds=delay)
            await asyncio.to_thread(
                self.store.alert_failed, row.id, row.channel, str(e), now, retry_at=retry
            )
            log.warning("alert %d on %s: try %d failed%s", row.id, row.channel, attempts,
                        ", given up" if give_up else f", next in {delay:g} s")
            return False
        await asyncio.to_thread(self.store.alert_done, row.id, row.channel, self.clock())
        log.debug("alert %d delivered on %s", row.id, row.channel)
        return True

    async def send(self, channel: str, recipient: str, payload: Mapping[str, Any]) -> None:
        s = self.settings
        if channel == FORWARD_CHANNEL:
            if not self.forward_url:
                raise DeliveryError("reports.forward_url is not set any more", permanent=True)
            await post_json(self.forward_url, payload, allow_loopback=self.forward_loopback,
                            key=recipient)
            return
        if channel == "email":
            if s.email is None:
                raise DeliveryError("e-mail is not configured", permanent=True)
            await asyncio.to_thread(send_email, s.email, recipient, payload)
            return
        hook = next((w for w in s.webhooks if w.channel == channel), None)
        if hook is None:
            raise DeliveryError(f"{channel} is not configured any more", permanent=True)
        await post_webhook(hook, payload, allow_loopback=s.allow_loopback)

    def forward(self, key: str, body: Mapping[str, object]) -> None:
        """Queue a JSON document for reports.forward_url (retried like alerts; blocking)."""
        if self.forward_url:
            self.store.enqueue_alerts([(FORWARD_CHANNEL, key, "report", body, self.clock())])
            self._wake.set()

    async def test(self, channel: str, lang: str, *, to: str = "") -> str:
        """Send a test alert on one channel now; '' on success, else the error."""
        ev = AlertEvent(TEST_KIND, at=self.clock())
        payload = self.render(ev, lang)
        recipient = to
        if channel == "email" and not recipient:
            everyone = await asyncio.to_thread(self._recipients, TEST_KIND)
            recipients = [r for r in everyone if r.channel == "email"]
            if not recipients:
                return "no e-mail address to send to"
            recipient = recipients[0].address
        now = self.clock()
        try:
            await self.send(channel, recipient, payload)
        except DeliveryError as e:
            await asyncio.to_thread(self._record_test, channel, now, str(e))
            return str(e)
        await asyncio.to_thread(self._record_test, channel, now, "")
        return ""

    def _record_test(self, channel: str, now: datetime, error: str) -> None:
        [row_id] = self.store.enqueue_alerts([(channel, "", TEST_KIND, {}, now)])
        if error:
            self.store.alert_failed(row_id, channel, error, now, retry_at=None)
        else:
            self.store.alert_done(row_id, channel, now)


def _lang(p: AlertPrefs, household: str) -> str:
    return p.lang if p.lang in LANGS else household


def _prefs_quiet(p: AlertPrefs) -> Quiet | None:
    if not p.quiet_start or not p.quiet_end:
        return None
    try:
        return parse_quiet(f"{p.quiet_start}-{p.quiet_end}")
    except ValueError:
        return None


# -- channels -----------------------------------------------------------------------------------
def send_email(cfg: EmailChannel, to: str, payload: Mapping[str, Any]) -> None:
    """One message with a plain text and an HTML part (blocking: run it in a thread)."""
    msg = EmailMessage()
    msg["Subject"] = str(payload.get("title", "nestguard"))
    msg["From"] = cfg.sender
    msg["To"] = to
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(str(payload.get("id", "")) or None, domain="nestguard")
    msg["Content-Language"] = str(payload.get("lang", "vi"))
    msg.set_content(str(payload.get("text", "")))
    if payload.get("html"):
        msg.add_alternative(str(payload["html"]), subtype="html")
    context = ssl.create_default_context()
    try:
        smtp: smtplib.SMTP
        if cfg.security == "tls":
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        with smtp:
            if cfg.security == "starttls":
                smtp.starttls(context=context)
            if cfg.username:
                smtp.login(cfg.username, cfg.password_now())
            smtp.send_message(msg)
    except smtplib.SMTPResponseException as e:
        text = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) \
            else str(e.smtp_error)
        raise DeliveryError(f"SMTP {e.smtp_code} {text}", permanent=500 <= e.smtp_code < 600
                            and e.smtp_code not in (535, 554)) from None
    except smtplib.SMTPRecipientsRefused as e:
        codes = ", ".join(f"{a}: {c} {m.decode(errors='replace')}"
                          for a, (c, m) in e.recipients.items())
        raise DeliveryError(f"SMTP refused {codes}", permanent=True) from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
        raise DeliveryError(f"SMTP {cfg.host}:{cfg.port}: {e}") from None


def webhook_request(hook: Webhook, payload: Mapping[str, Any]) -> tuple[str, dict[str, object]]:
    """(URL, JSON body) for a webhook preset."""
    title, body, link = payload.get("title", ""), payload.get("body", ""), payload.get("link", "")
    if hook.preset == "ntfy":
        parts = urlsplit(hook.url)
        root = f"{parts.scheme}://{parts.netloc}/"
        return root, {"topic": parts.path.strip("/"), "title": title, "message": body,
                      "click": link, "tags": ["nestguard", str(payload.get("kind", ""))]}
    if hook.preset == "telegram":
        url = f"{hook.url.rstrip('/')}/bot{hook.token}/sendMessage"
        return url, {"chat_id": hook.chat_id, "text": f"{title}\n{body}\n{link}",
                     "disable_web_page_preview": True}
    keep = ("id", "kind", "lang", "title", "body", "link", "child", "device", "more", "at")
    return hook.url, {k: payload.get(k) for k in keep}


async def post_webhook(hook: Webhook, payload: Mapping[str, Any], *, allow_loopback: bool
                       ) -> None:
    url, body = webhook_request(hook, payload)
    await post_json(url, body, allow_loopback=allow_loopback, key=str(payload.get("id", "")),
                    secret=hook.token)


async def post_json(url: str, body: Mapping[str, object], *, allow_loopback: bool,
                    key: str = "", secret: str = "") -> None:
    """POST a JSON document under the feed URL rules (each connection's address checked);
    DeliveryError on any failure. `secret` never appears in the error text."""
    rules = webhook_rules(url, allow_loopback=allow_loopback)
    try:
        check_url(url, rules)
    except FeedError as e:
        raise DeliveryError(str(e).removeprefix("feed URL: "), permanent=True) from None
    timeout = aiohttp.ClientTimeout(total=20, sock_connect=10)
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(rules), limit=2)
    headers = {"User-Agent": USER_AGENT}
    if key:
        headers["Idempotency-Key"] = key
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector,
                                         headers=headers) as session:
            async with session.post(url, json=body, allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return
                permanent = 400 <= resp.status < 500 and resp.status not in (408, 429)
                raise DeliveryError(f"HTTP {resp.status} {resp.reason or ''}".rstrip(),
                                    permanent=permanent)
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        # the message names the host, never the URL (a Telegram URL holds the bot's token)
        host = urlsplit(url).netloc
        raise DeliveryError(f"{host}: {type(e).__name__}: {_short(e, secret)}") from None


def _short(e: BaseException, secret: str) -> str:
    text = str(e) or type(e).__name__
    return text.replace(secret, "…") if secret else text


__all__ = [
    "EVENTS", "AlertConfigError", "AlertEvent", "AlertSettings", "Alerts", "EmailChannel",
    "Webhook", "parse_alerts",
]
