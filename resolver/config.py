"""The operator's YAML config, read once at start-up into frozen dataclasses.

``load_config(path)`` reads the file with ``yaml.safe_load`` and checks every key. An unknown key,
a wrong type or an unparsable value stops start-up with one :class:`ConfigError` whose message
names the file and the key path, e.g. ``config.yaml: dns.upstreams[1]: 'x' is not host:port``.
``load_config(None)`` gives the built-in defaults. Defaults live on the dataclass fields; the
two that depend on the machine are filled in by ``load_config``:

- ``dns.upstreams``: the nameservers of /etc/resolv.conf (port 53); none there -> ConfigError.
- ``policy.timezone``: the system's zone name (TZ, /etc/timezone, /etc/localtime), else "UTC".

Durations are numbers of seconds or strings such as ``"500ms"``, ``"30s"``, ``"30m"``, ``"6h"``,
``"1d"``, ``"1w"`` or ``"1h30m"``. Relative paths in a file are taken relative to the file's
folder (the defaults, such as ``./.nestguard``, relative to the working directory). Host and port
pairs are ``"192.0.2.1:53"`` or ``"[2001:db8::1]:53"`` (quote them in YAML); an upstream without
a port means port 53. Hosts must be IP literals. An upstream that is one of nestguard's own
listen addresses (a wildcard listen covers every local address) is refused.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal, NoReturn, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from blocklists.feed import FEED_KEYS, TRUSTED, BadFeed, Feed, feed_from_dict
from policy.names import BadName, canonical_name
from webui.alerts import AlertConfigError, AlertSettings, parse_alerts
from webui.reports import ReportsSettings, parse_reports

log = logging.getLogger(__name__)

HostPort = tuple[str, int]
# Domains home routers give LAN devices (OpenWrt "lan", Fritz!Box "fritz.box", others "home",
# "localdomain"; ICANN reserved "internal" for private use): never sent to public upstreams.
DEFAULT_LOCAL_DOMAINS: tuple[str, ...] = ("lan", "home", "internal", "localdomain", "fritz.box")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
BlockAnswer = Literal["null", "nxdomain", "blockpage"]

RESOLV_CONF = Path("/etc/resolv.conf")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
BLOCK_ANSWERS: tuple[str, ...] = ("null", "nxdomain", "blockpage")

_LOOPBACK = ("127.0.0.0/8", "::1/128")
_RFC1918 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
_LINK_LOCAL = ("169.254.0.0/16", "fe80::/10")
_ULA = ("fc00::/7",)


def _networks(*groups: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n) for group in groups for n in group)


DEFAULT_ALLOW_NETWORKS = _networks(_LOOPBACK, _RFC1918, _LINK_LOCAL, _ULA)
# /metrics tells who asks how much and when: this machine only, unless the operator opens it
DEFAULT_METRICS_NETWORKS = _networks(_LOOPBACK)
DEFAULT_RATER_CATEGORIES = ("adult", "gambling", "dating", "drugs", "bypass")


class ConfigError(Exception):
    """The config file cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    queries: int = 1000
    per_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class CacheConfig:
    max_entries: int = 100_000
    max_bytes: int = 64 * 1024 * 1024  # answers' wire size, summed; oldest evicted beyond
    min_ttl: int = 0
    max_ttl: int = 86_400
    negative_max_ttl: int = 3_600
    stale_window: int = 86_400  # serve stale answers up to this long past expiry
    serve_stale_after: float = 1.8  # seconds without an upstream answer before serving stale
    # Names (and their subdomains) whose public answers may carry private addresses: the cache
    # otherwise drops such answers (DNS rebinding protection).
    rebind_allow: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DnsConfig:
    listen: tuple[HostPort, ...] = (("127.0.0.1", 1053),)
    upstreams: tuple[HostPort, ...] = ()  # load_config fills in /etc/resolv.conf's
    allow_networks: tuple[Network, ...] = DEFAULT_ALLOW_NETWORKS
    timeout: float = 2.0
    max_inflight: int = 150
    tcp_idle: float = 30.0
    tcp_max_clients: int = 100
    tcp_max_per_client: int = 10  # TCP connections from one address (slowloris)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    # The home router's DNS: asked for LAN names (local_domains, home.arpa, single-label names,
    # reverse lookups of private addresses), never sent to `upstreams` (RFC 6303, 8375). None: those
    # names are answered NXDOMAIN here.
    router: HostPort | None = None
    local_domains: tuple[str, ...] = DEFAULT_LOCAL_DOMAINS
    # Forwarders (the home router running dnsmasq with `add-mac`) whose queries carry the
    # asking device's MAC in EDNS option 65001. The option is believed only from these
    # addresses: any device can put a MAC in its own query, so from anyone else it is ignored.
    trusted_mac_sources: tuple[Network, ...] = ()
    # Worker processes serving DNS on the same ports (SO_REUSEPORT), each with its own cache;
    # the web UI and list sync stay in the main process. 1 = one process, as before.
    # Daily time budgets and alerts count every worker's queries (the workers report them to
    # the main process). 1 by default, not the number of cores: each worker is a whole Python
    # heap (~120 MB with its cache), too much for a small home box, and a home's few queries a
    # second never fill one core (README, Performance)
    workers: int = 1
    # Read and answer UDP queries in batches (recvmmsg/sendmmsg) with the listener compiled at
    # install (resolver/_dgram.c). false, or no compiled listener: one datagram per call
    # through the event loop, as before. Same answers either way; batches cost less CPU.
    udp_batch: bool = True


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    timezone: str = "UTC"  # load_config fills in the system's zone
    block_answer: BlockAnswer = "null"
    block_ttl: int = 10
    blockpage_ipv4: ipaddress.IPv4Address | None = None
    blockpage_ipv6: ipaddress.IPv6Address | None = None
    unknown_devices: str = "strictest"  # "strictest", "adults" or a child's name
    retention_days: int = 30
    log_queries: bool = True
    log_adults: bool = False
    leases_file: Path | None = None
    bypass_defence: bool = True


@dataclass(frozen=True, slots=True)
class WebConfig:
    listen: HostPort = ("127.0.0.1", 8080)
    metrics_networks: tuple[Network, ...] = DEFAULT_METRICS_NETWORKS
    allowed_hosts: tuple[str, ...] = ()
    secure_cookies: bool = False


@dataclass(frozen=True, slots=True)
class ListsConfig:
    catalogue: Path | None = None  # None = the shipped catalogue
    rater: bool = True
    rater_categories: tuple[str, ...] = DEFAULT_RATER_CATEGORIES
    education_set: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path = Path("./.nestguard")
    log_level: str = "info"
    dns: DnsConfig = field(default_factory=DnsConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    web: WebConfig = field(default_factory=WebConfig)
    lists: ListsConfig = field(default_factory=ListsConfig)
    feeds: tuple[Feed, ...] = ()
    alerts: AlertSettings = field(default_factory=AlertSettings)  # the Settings page's win
    reports: ReportsSettings = field(default_factory=ReportsSettings)
    source: Path | None = None  # the file it was read from


# -- public helpers ---------------------------------------------------------------------------


def load_config(path: Path | None, *, resolv_conf: Path = RESOLV_CONF) -> Config:
    """Read and check ``path`` (None: built-in defaults). Raises ConfigError."""
    if path is None:
        return _Loader("<defaults>", None, resolv_conf).build({})
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        mode = Path(path).stat().st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{name}: cannot read: {e}") from e
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        # Whoever can write it chooses the upstreams of every device in the house.
        log.warning(
            "%s is writable by group or others (mode %o); use chmod 644", name, mode & 0o777
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: not valid YAML: {_yaml_problem(e, text)}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: the top level must be a mapping of keys, not {_kind(data)}")
    return _Loader(name, Path(path).parent, resolv_conf).build(data)


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "500ms", "30s", "6h", "1d", "1h30m"."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(r"((\d+(\.\d+)?)(ms|s|m|h|d|w))+", text):
            seconds = sum(
                float(number) * _UNITS[unit]
                for number, _frac, unit in re.findall(r"(\d+(\.\d+)?)(ms|s|m|h|d|w)", text)
            )
        else:
            raise ValueError(f"{value!r} is not a duration (use seconds or e.g. '30s', '6h', '1d')")
    else:
        raise ValueError(f"{value!r} is not a duration")
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise ValueError(f"{value!r} is not a duration")
    return seconds


def parse_host_port(value: object, *, default_port: int | None = None) -> HostPort:
    """``"192.0.2.1:53"``, ``"[2001:db8::1]:53"`` (or a bare IP with ``default_port``)."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not host:port (quote it, e.g. '[::1]:53')")
    text = value.strip()
    host: str
    port_text: str | None
    if text.startswith("["):
        m = re.fullmatch(r"\[([^\]]+)\](?::(\d{1,5}))?", text)
        if not m:
            raise ValueError(f"{value!r} is not host:port")
        host, port_text = m.group(1), m.group(2)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None  # a bare IPv4 or IPv6 address
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r} is not host:port with an IP address") from None
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{value!r} has no port (write e.g. '{_join(str(address), 53)}')")
        port = default_port
    else:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{value!r} has no valid port (1-65535)")
        port = int(port_text)
    return (str(address), port)


def system_upstreams(resolv_conf: Path = RESOLV_CONF) -> tuple[HostPort, ...]:
    """The ``nameserver`` lines of resolv.conf as (ip, 53); unreadable -> ()."""
    try:
        lines = resolv_conf.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ()
    found: list[HostPort] = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1].split("%")[0])
            except ValueError:
                continue
            if (str(address), 53) not in found:
                found.append((str(address), 53))
    return tuple(found)


def system_timezone() -> str:
    """The local zone name from TZ, /etc/timezone or the /etc/localtime link; else "UTC"."""
    candidates: list[str] = []
    if tz := os.environ.get("TZ", "").lstrip(":"):
        candidates.append(tz)
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if _valid_zone(name):
            return name
    return "UTC"


# -- the loader -------------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

T = TypeVar("T")


def _kind(value: object) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
        type(None): "empty",
    }.get(type(value), type(value).__name__)


def _yaml_problem(e: yaml.YAMLError, text: str) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    if mark is None:
        return str(problem)
    where = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    lines = text.splitlines()
    if mark.line < len(lines) and "[" in lines[mark.line]:
        where += " (quote IPv6 addresses, e.g. '[::1]:53')"
    return where


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _valid_zone(name: str) -> bool:
    if not name or name.startswith("/") or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


class _Loader:
    def __init__(self, name: str, base: Path | None, resolv_conf: Path) -> None:
        self._name = name
        self._base = base
        self._resolv_conf = resolv_conf

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self._name}: {key}: {message}")

    # -- generic readers ---------------------------------------------------------------------

    def mapping(self, value: object, key: str, known: tuple[str, ...]) -> dict[str, object]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping of keys, not {_kind(value)}")
        for k in value:
            if not isinstance(k, str) or k not in known:
                path = f"{key}.{k}" if key else str(k)
                hint = difflib.get_close_matches(str(k), known, n=1)
                did = f"; did you mean '{hint[0]}'?" if hint else ""
                self.fail(path, f"unknown key{did} (known: {', '.join(known)})")
        return cast(dict[str, object], value)

    def get(
        self,
        section: Mapping[str, object],
        prefix: str,
        name: str,
        parse: Callable[[object], T],
        default: T,
    ) -> T:
        if name not in section:
            return default
        key = f"{prefix}.{name}" if prefix else name
        try:
            return parse(section[name])
        except (ValueError, TypeError) as e:
            self.fail(key, str(e))

    def listed(self, value: object, key: str, parse: Callable[[object], T]) -> tuple[T, ...]:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]  # a single item is a list of one
        if not isinstance(value, list):
            self.fail(key, f"expected a list, not {_kind(value)}")
        out: list[T] = []
        for i, item in enumerate(value):
            try:
                out.append(parse(item))
            except (ValueError, TypeError) as e:
                self.fail(f"{key}[{i}]", str(e))
        return tuple(out)

    def get_list(
        self,
        section: Mapping[str, object],
        prefix: str,
        name: str,
        parse: Callable[[object], T],
        default: tuple[T, ...],
    ) -> tuple[T, ...]:
        if name not in section:
            return default
        return self.listed(section[name], f"{prefix}.{name}" if prefix else name, parse)

    def optional_path(self, value: object) -> Path | None:
        return None if value is None else self.path(value)

    def path(self, value: object) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{value!r} is not a path")
        if "\n" in value or "\x00" in value:
            raise ValueError("a path cannot contain a newline or NUL")
        p = Path(value).expanduser()
        if not p.is_absolute() and self._base is not None:
            p = self._base / p
        return p

    # -- sections ----------------------------------------------------------------------------

    def build(self, data: Mapping[str, object]) -> Config:
        top = self.mapping(
            data, "",
            ("data_dir", "log_level", "dns", "policy", "web", "lists", "feeds", "alerts",
             "reports"),
        )
        defaults = Config()
        data_dir = self.get(top, "", "data_dir", self.path, defaults.data_dir)
        log_level = self.get(top, "", "log_level", _log_level, defaults.log_level)
        dns = self.dns(top.get("dns"))
        policy = self.policy(top.get("policy"))
        web = self.web(top.get("web"))
        if web.listen in dns.listen:
            self.fail("web.listen", f"{_join(*web.listen)} is also a dns.listen address")
        lists = self.lists(top.get("lists"))
        feeds = self.feeds(top.get("feeds"))
        try:
            alerts = parse_alerts(top.get("alerts"), base=self._base)
            reports = parse_reports(top.get("reports"))
        except AlertConfigError as e:
            self.fail(e.key, e.message)
        return Config(
            data_dir=data_dir,
            log_level=log_level,
            dns=dns,
            policy=policy,
            web=web,
            lists=lists,
            feeds=feeds,
            alerts=alerts,
            reports=reports,
            source=None if self._name == "<defaults>" else Path(self._name),
        )

    def dns(self, value: object) -> DnsConfig:
        s = self.mapping(
            value,
            "dns",
            (
                "listen",
                "upstreams",
                "allow_networks",
                "timeout",
                "max_inflight",
                "tcp_idle",
                "tcp_max_clients",
                "tcp_max_per_client",
                "rate_limit",
                "cache",
                "router",
                "local_domains",
                "trusted_mac_sources",
                "workers",
                "udp_batch",
            ),
        )
        d = DnsConfig()
        listen = self.get_list(s, "dns", "listen", parse_host_port, d.listen)
        if not listen:
            self.fail("dns.listen", "needs at least one address")
        for i, address in enumerate(listen):
            if address in listen[:i]:
                self.fail(f"dns.listen[{i}]", f"{_join(*address)} is listed twice")
        if "upstreams" in s:
            upstreams = self.listed(
                s["upstreams"], "dns.upstreams", lambda v: parse_host_port(v, default_port=53)
            )
            if not upstreams:
                self.fail("dns.upstreams", "needs at least one upstream resolver")
            origin = "dns.upstreams"
        else:
            upstreams = system_upstreams(self._resolv_conf)
            if not upstreams:
                self.fail(
                    "dns.upstreams",
                    f"not set and {self._resolv_conf} lists no nameserver; "
                    "set dns.upstreams, e.g. ['1.1.1.1:53', '9.9.9.9:53']",
                )
            origin = f"dns.upstreams (from {self._resolv_conf})"
        for i, upstream in enumerate(upstreams):
            if loop := _loops_to(upstream, listen):
                self.fail(
                    f"{origin}[{i}]",
                    f"{_join(*upstream)} is nestguard's own listen address "
                    f"{_join(*loop)}; queries would loop",
                )
        router = None
        if s.get("router") is not None:
            router = self.get(
                s, "dns", "router", lambda v: parse_host_port(v, default_port=53), None
            )
            if router is not None and (loop := _loops_to(router, listen)):
                self.fail(
                    "dns.router",
                    f"{_join(*router)} is nestguard's own listen address {_join(*loop)}; "
                    "set the router's own address (e.g. 192.168.1.1)",
                )
        local_domains = self.get_list(s, "dns", "local_domains", _local_domain, d.local_domains)
        rate = self.mapping(s.get("rate_limit"), "dns.rate_limit", ("queries", "per_seconds"))
        r = RateLimitConfig()
        rate_limit = RateLimitConfig(
            queries=self.get(rate, "dns.rate_limit", "queries", _int(1, 10**9), r.queries),
            per_seconds=self.get(
                rate, "dns.rate_limit", "per_seconds", _seconds(0.001, 86400), r.per_seconds
            ),
        )
        return DnsConfig(
            listen=listen,
            upstreams=upstreams,
            allow_networks=self.get_list(s, "dns", "allow_networks", _network, d.allow_networks),
            timeout=self.get(s, "dns", "timeout", _seconds(0.1, 30), d.timeout),
            max_inflight=self.get(s, "dns", "max_inflight", _int(1, 100_000), d.max_inflight),
            tcp_idle=self.get(s, "dns", "tcp_idle", _seconds(1, 3600), d.tcp_idle),
            tcp_max_clients=self.get(
                s, "dns", "tcp_max_clients", _int(1, 100_000), d.tcp_max_clients
            ),
            tcp_max_per_client=self.get(
                s, "dns", "tcp_max_per_client", _int(1, 100_000), d.tcp_max_per_client
            ),
            rate_limit=rate_limit,
            cache=self.cache(s.get("cache")),
            router=router,
            local_domains=local_domains,
            trusted_mac_sources=self.get_list(
                s, "dns", "trusted_mac_sources", _network, d.trusted_mac_sources
            ),
            workers=self.get(s, "dns", "workers", _int(1, 64), d.workers),
            udp_batch=self.get(s, "dns", "udp_batch", _bool, d.udp_batch),
        )

    def cache(self, value: object) -> CacheConfig:
        key = "dns.cache"
        s = self.mapping(
            value,
            key,
            (
                "max_entries",
                "max_bytes",
                "min_ttl",
                "max_ttl",
                "negative_max_ttl",
                "stale_window",
                "serve_stale_after",
                "rebind_allow",
            ),
        )
        c = CacheConfig()
        week = 7 * 86400
        min_ttl = self.get(s, key, "min_ttl", _whole_seconds(0, 86400), c.min_ttl)
        max_ttl = self.get(s, key, "max_ttl", _whole_seconds(0, week), c.max_ttl)
        if min_ttl > max_ttl:
            self.fail(f"{key}.min_ttl", f"{min_ttl} is above max_ttl ({max_ttl})")
        return CacheConfig(
            max_entries=self.get(s, key, "max_entries", _int(0, 10**8), c.max_entries),
            max_bytes=self.get(s, key, "max_bytes", _int(1024, 2**40), c.max_bytes),
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            negative_max_ttl=self.get(
                s, key, "negative_max_ttl", _whole_seconds(0, 86400), c.negative_max_ttl
            ),
            stale_window=self.get(s, key, "stale_window", _whole_seconds(0, week), c.stale_window),
            serve_stale_after=self.get(
                s, key, "serve_stale_after", _seconds(0.05, 30), c.serve_stale_after
            ),
            rebind_allow=self.get_list(s, key, "rebind_allow", _domain, c.rebind_allow),
        )

    def policy(self, value: object) -> PolicyConfig:
        key = "policy"
        s = self.mapping(
            value,
            key,
            (
                "timezone",
                "block_answer",
                "block_ttl",
                "blockpage_ipv4",
                "blockpage_ipv6",
                "unknown_devices",
                "retention_days",
                "log_queries",
                "log_adults",
                "leases_file",
                "bypass_defence",
            ),
        )
        p = PolicyConfig()
        block_answer = cast(
            BlockAnswer,
            self.get(s, key, "block_answer", _choice(BLOCK_ANSWERS), str(p.block_answer)),
        )
        v4 = self.get(s, key, "blockpage_ipv4", _ipv4, p.blockpage_ipv4)
        v6 = self.get(s, key, "blockpage_ipv6", _ipv6, p.blockpage_ipv6)
        if block_answer == "blockpage" and v4 is None and v6 is None:
            self.fail(
                "policy.block_answer",
                "'blockpage' needs policy.blockpage_ipv4 and/or policy.blockpage_ipv6",
            )
        timezone = self.get(s, key, "timezone", _timezone, None) or system_timezone()
        return PolicyConfig(
            timezone=timezone,
            block_answer=block_answer,
            block_ttl=self.get(s, key, "block_ttl", _whole_seconds(2, 3600), p.block_ttl),
            blockpage_ipv4=v4,
            blockpage_ipv6=v6,
            unknown_devices=self.get(s, key, "unknown_devices", _profile_name, p.unknown_devices),
            retention_days=self.get(s, key, "retention_days", _int(1, 3650), p.retention_days),
            log_queries=self.get(s, key, "log_queries", _bool, p.log_queries),
            log_adults=self.get(s, key, "log_adults", _bool, p.log_adults),
            leases_file=self.get(s, key, "leases_file", self.optional_path, p.leases_file),
            bypass_defence=self.get(s, key, "bypass_defence", _bool, p.bypass_defence),
        )

    def web(self, value: object) -> WebConfig:
        key = "web"
        s = self.mapping(
            value, key, ("listen", "metrics_networks", "allowed_hosts", "secure_cookies")
        )
        w = WebConfig()
        return WebConfig(
            listen=self.get(s, key, "listen", parse_host_port, w.listen),
            metrics_networks=self.get_list(
                s, key, "metrics_networks", _network, w.metrics_networks
            ),
            allowed_hosts=self.get_list(s, key, "allowed_hosts", _hostname, w.allowed_hosts),
            secure_cookies=self.get(s, key, "secure_cookies", _bool, w.secure_cookies),
        )

    def lists(self, value: object) -> ListsConfig:
        key = "lists"
        s = self.mapping(value, key, ("catalogue", "rater", "rater_categories", "education_set"))
        d = ListsConfig()
        return ListsConfig(
            catalogue=self.get(s, key, "catalogue", self.optional_path, d.catalogue),
            rater=self.get(s, key, "rater", _bool, d.rater),
            rater_categories=self.get_list(s, key, "rater_categories", _slug, d.rater_categories),
            education_set=self.get(s, key, "education_set", _bool, d.education_set),
        )

    def feeds(self, value: object) -> tuple[Feed, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("feeds", f"expected a list of feeds, not {_kind(value)}")
        feeds: list[Feed] = []
        seen: set[str] = set()
        for i, item in enumerate(value):
            feed = self.feed(item, f"feeds[{i}]")
            if feed.name in seen:
                self.fail(f"feeds[{i}].name", f"{feed.name!r} is used by an earlier feed")
            seen.add(feed.name)
            feeds.append(feed)
        return tuple(feeds)

    def feed(self, value: object, key: str) -> Feed:
        """One feed, by blocklists.feed.feed_from_dict (the operator's feeds are TRUSTED:
        local paths, file:// and private addresses allowed). The config adds its own syntax:
        durations for `refresh`, paths relative to the config file's folder."""
        s = dict(self.mapping(value, key, FEED_KEYS))
        if "refresh" in s:
            s["refresh"] = timedelta(seconds=self.get(s, key, "refresh", parse_duration, 0.0))
        url = s.get("url")
        if isinstance(url, str) and url.strip() and "://" not in url:
            s["url"] = str(self.get(s, key, "url", self.path, Path()))  # an operator's file
        try:
            return feed_from_dict(s, rules=TRUSTED)
        except BadFeed as e:
            self.fail(f"{key}.{e.field}", str(e))


# -- value parsers ----------------------------------------------------------------------------


def _int(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value.strip())
            else:
                raise ValueError(f"{value!r} is not a whole number")
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range ({low}-{high})")
        return value

    return parse


def _seconds(low: float, high: float) -> Callable[[object], float]:
    def parse(value: object) -> float:
        seconds = parse_duration(value)
        if not low <= seconds <= high:
            raise ValueError(f"{value!r} is out of range ({low:g}-{high:g} s)")
        return seconds

    return parse


def _whole_seconds(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        seconds = parse_duration(value)
        if seconds != int(seconds):
            raise ValueError(f"{value!r} is not a whole number of seconds")
        if not low <= seconds <= high:
            raise ValueError(f"{value!r} is out of range ({low}-{high} s)")
        return int(seconds)

    return parse




def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return value

    return parse


def _log_level(value: object) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return value.lower()


def _name(value: object, what: str, *, single_label: bool = False) -> str:
    """A domain name read by policy.names.canonical_name; ValueError naming `what`."""
    reason = "not text"
    if isinstance(value, str):
        try:
            return canonical_name(value, single_label=single_label)
        except BadName as e:
            reason = str(e)
    raise ValueError(f"{value!r} is not {what}: {reason}")


def _local_domain(value: object) -> str:
    return _name(value, "a domain name (e.g. 'lan' or 'fritz.box')", single_label=True)


def _network(value: object) -> Network:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a network (e.g. '192.168.1.0/24')")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a network (e.g. '192.168.1.0/24')") from None


def _ipv4(value: object) -> ipaddress.IPv4Address | None:
    if value is None:
        return None
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _ipv6(value: object) -> ipaddress.IPv6Address | None:
    if value is None:
        return None
    try:
        return ipaddress.IPv6Address(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv6 address") from None


def _timezone(value: object) -> str:
    if not isinstance(value, str) or not _valid_zone(value.strip()):
        raise ValueError(f"{value!r} is not a time zone name (e.g. 'Asia/Ho_Chi_Minh')")
    return value.strip()


def _profile_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise ValueError(f"{value!r} is not 'strictest', 'adults' or a child's name")
    if any(ord(c) < 32 for c in value):
        raise ValueError("a name cannot contain control characters")
    return value.strip()


def _hostname(value: object) -> str:
    return _name(value, "a host name", single_label=True)


def _domain(value: object) -> str:
    return _name(value, "a domain name")


def _slug(value: object) -> str:
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise ValueError(f"{value!r} is not a category slug ([a-z0-9_-], up to 64)")
    return value








# -- upstreams that would loop back to nestguard ----------------------------------------------


def _loops_to(upstream: HostPort, listen: tuple[HostPort, ...]) -> HostPort | None:
    """The listen address ``upstream`` would send queries back to, if any."""
    host, port = upstream
    address = ipaddress.ip_address(host)
    for listen_host, listen_port in listen:
        if listen_port != port:
            continue
        bound = ipaddress.ip_address(listen_host)
        if bound == address:
            return (listen_host, listen_port)
        if bound.is_unspecified and (address.is_loopback or _is_local(address)):
            return (listen_host, listen_port)
    return None


def _is_local(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether this machine owns ``address`` (it can bind a socket to it)."""
    if address.is_unspecified:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((str(address), 0))
    except OSError:
        return False
    return True
