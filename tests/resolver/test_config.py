"""load_config: defaults, every kind of error naming file and key, IPv6, durations, feeds, loops."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from resolver.config import (
    Config,
    ConfigError,
    load_config,
    parse_duration,
    parse_host_port,
    system_timezone,
)

REPO = Path(__file__).resolve().parents[2]
ED25519_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"  # RFC 8032 test 1


@pytest.fixture
def resolv(tmp_path: Path) -> Path:
    path = tmp_path / "resolv.conf"
    path.write_text("# test\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions edns0\n")
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, resolv: Path) -> Config:
    return load_config(write(tmp_path, text), resolv_conf=resolv)


def error(tmp_path: Path, text: str, resolv: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, resolv)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "config.yaml") + ": "), message
    return message


def test_defaults_without_a_file(resolv: Path) -> None:
    config = load_config(None, resolv_conf=resolv)
    assert config.dns.listen == (("127.0.0.1", 1053),)
    assert config.dns.upstreams == (("192.0.2.53", 53), ("2001:db8::53", 53))
    assert config.dns.timeout == 2.0 and config.dns.max_inflight == 150
    assert config.dns.rate_limit.queries == 1000 and config.dns.rate_limit.per_seconds == 60
    assert config.dns.cache.max_ttl == 86400 and config.dns.cache.serve_stale_after == 1.8
    assert any(ipaddress.ip_address("192.168.1.20") in net for net in config.dns.allow_networks)
    assert not any(ipaddress.ip_address("8.8.8.8") in net for net in config.dns.allow_networks)
    assert config.policy.block_answer == "null" and config.policy.block_ttl == 10
    assert config.policy.timezone == system_timezone()
    assert config.web.listen == ("127.0.0.1", 8080)
    assert config.lists.rater_categories == ("adult", "gambling", "dating", "drugs", "bypass")
    assert config.feeds == ()
    assert config.data_dir == Path(".nestguard")


def test_empty_file_is_all_defaults(tmp_path: Path, resolv: Path) -> None:
    assert load(tmp_path, "", resolv).dns == load_config(None, resolv_conf=resolv).dns


def test_no_upstreams_anywhere_asks_for_dns_upstreams(tmp_path: Path) -> None:
    empty = tmp_path / "resolv.conf"
    empty.write_text("search lan\n")
    with pytest.raises(ConfigError, match=r"dns\.upstreams: not set .* set dns\.upstreams"):
        load_config(None, resolv_conf=empty)


def test_a_full_file(tmp_path: Path, resolv: Path) -> None:
    config = load(
        tmp_path,
        """
data_dir: state
log_level: DEBUG
dns:
  listen: ["0.0.0.0:53", "[::]:53", "[::1]:1053"]
  upstreams: ["1.1.1.1", "[2606:4700:4700::1111]:53", "9.9.9.9:5353"]
  allow_networks: [192.168.1.7/24, "fd00::/8"]
  timeout: 1500ms
  tcp_idle: 1m
  rate_limit: {queries: 50, per_seconds: 1s}
  cache: {max_ttl: 1d, negative_max_ttl: 15m, serve_stale_after: 1.5}
policy:
  timezone: Asia/Ho_Chi_Minh
  block_answer: blockpage
  blockpage_ipv4: 192.168.1.2
  block_ttl: 5
  unknown_devices: An
  leases_file: /var/lib/misc/dnsmasq.leases
web:
  listen: "[::1]:8080"
  allowed_hosts: [NestGuard.lan]
""",
        resolv,
    )
    assert config.data_dir == tmp_path / "state"  # relative to the file
    assert config.log_level == "debug"
    assert config.dns.listen == (("0.0.0.0", 53), ("::", 53), ("::1", 1053))
    assert config.dns.upstreams == (
        ("1.1.1.1", 53),
        ("2606:4700:4700::1111", 53),
        ("9.9.9.9", 5353),
    )
    assert config.dns.allow_networks == (
        ipaddress.ip_network("192.168.1.0/24"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert config.dns.timeout == 1.5 and config.dns.tcp_idle == 60
    assert config.dns.rate_limit.queries == 50 and config.dns.rate_limit.per_seconds == 1
    assert config.dns.cache.max_ttl == 86400 and config.dns.cache.negative_max_ttl == 900
    assert config.dns.cache.min_ttl == 0  # untouched keys keep their defaults
    assert config.policy.timezone == "Asia/Ho_Chi_Minh"
    assert config.policy.blockpage_ipv4 == ipaddress.IPv4Address("192.168.1.2")
    assert config.policy.unknown_devices == "An"
    assert config.web.listen == ("::1", 8080)
    assert config.web.allowed_hosts == ("nestguard.lan",)


@pytest.mark.parametrize(
    ("text", "key", "detail"),
    [
        ("dns:\n  upsteams: ['1.1.1.1']\n", "dns.upsteams", "did you mean 'upstreams'"),
        ("colour: blue\n", "colour", "unknown key"),
        ("dns:\n  upstreams: ['1.1.1.1', 'x']\n", r"dns\.upstreams\[1\]", "'x' is not host:port"),
        ("dns:\n  listen: ['127.0.0.1']\n", r"dns\.listen\[0\]", "has no port"),
        ("dns:\n  listen: ['127.0.0.1:70000']\n", r"dns\.listen\[0\]", "valid port"),
        ("dns:\n  timeout: soon\n", "dns.timeout", "not a duration"),
        ("dns:\n  timeout: 60\n", "dns.timeout", "out of range"),
        ("dns:\n  max_inflight: many\n", "dns.max_inflight", "not a whole number"),
        ("dns:\n  max_inflight: true\n", "dns.max_inflight", "not a whole number"),
        ("dns:\n  allow_networks: [10.0.0.0/33]\n", r"dns\.allow_networks\[0\]", "network"),
        ("dns:\n  trusted_mac_sources: [router]\n", r"dns\.trusted_mac_sources\[0\]", "network"),
        ("dns:\n  rate_limit: {queries: 0}\n", "dns.rate_limit.queries", "out of range"),
        ("dns:\n  cache: {min_ttl: 60, max_ttl: 30}\n", "dns.cache.min_ttl", "above max_ttl"),
        ("dns:\n  cache: {stale: 1}\n", "dns.cache.stale", "unknown key"),
        ("dns: [1, 2]\n", "dns", "expected a mapping"),
        ("policy:\n  timezone: Mars/Base\n", "policy.timezone", "not a time zone"),
        ("policy:\n  block_answer: sinkhole\n", "policy.block_answer", "not one of"),
        ("policy:\n  block_answer: blockpage\n", "policy.block_answer", "needs policy.blockpage"),
        ("policy:\n  block_ttl: 1\n", "policy.block_ttl", r"out of range \(2-3600"),
        ("policy:\n  log_queries: maybe\n", "policy.log_queries", "not true or false"),
        ("policy:\n  blockpage_ipv6: 1.2.3.4\n", "policy.blockpage_ipv6", "not an IPv6"),
        ("web:\n  listen: localhost:80\n", "web.listen", "IP address"),
        ("web:\n  allowed_hosts: ['bad host']\n", r"web\.allowed_hosts\[0\]", "not a host"),
        ("lists:\n  rater_categories: [Adult]\n", r"lists\.rater_categories\[0\]", "slug"),
        ("log_level: loud\n", "log_level", "not one of"),
        ("feeds: {name: x}\n", "feeds", "expected a list"),
    ],
)
def test_errors_name_the_file_and_the_key(
    tmp_path: Path, resolv: Path, text: str, key: str, detail: str
) -> None:
    message = error(tmp_path, text, resolv)
    assert re.search(f": {key}: .*{detail}", message), message


def test_yaml_syntax_error_names_line_and_hints_at_ipv6(tmp_path: Path, resolv: Path) -> None:
    message = error(tmp_path, "dns:\n  listen:\n    - [::1]:1053\n", resolv)
    assert "line 3" in message and "quote IPv6" in message


def test_top_level_must_be_a_mapping(tmp_path: Path, resolv: Path) -> None:
    assert "top level must be a mapping" in error(tmp_path, "- a\n- b\n", resolv)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_ipv6_listen_and_upstreams(tmp_path: Path, resolv: Path) -> None:
    config = load(
        tmp_path,
        "dns:\n  listen: '[::1]:1053'\n  upstreams: ['2001:db8::1', '[2001:DB8::2]:5300']\n",
        resolv,
    )
    assert config.dns.listen == (("::1", 1053),)
    assert config.dns.upstreams == (("2001:db8::1", 53), ("2001:db8::2", 5300))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("45", 45.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("30m", 1800.0),
        ("6h", 21600.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        (" 2 h ", 7200.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "6x", "-5", "1.2.3s", True, None, [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1:53", ("192.0.2.1", 53)),
        ("[::1]:1053", ("::1", 1053)),
        ("[2001:0DB8::1]:53", ("2001:db8::1", 53)),
    ],
)
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


def test_feeds(tmp_path: Path, resolv: Path) -> None:
    (tmp_path / "lists").mkdir()
    config = load(
        tmp_path,
        f"""
feeds:
  - name: ut1-gambling
    url: https://raw.githubusercontent.com/olbat/ut1-blacklists/master/blacklists/gambling/domains
    format: domains
    category: gambling
    refresh: 12h
  - name: local_adult
    url: lists/adult.txt
    format: hosts
    category: adult
    min_age: 18
    sha256: {"AB" * 32}
    signature: {ED25519_HEX}
    max_bytes: 1000000
    max_entries: 5000
    enabled: false
  - name: national
    url: file:///srv/rating.txt
    format: rating
    refresh: 3600
""",
        resolv,
    )
    first, local, national = config.feeds
    assert first.name == "ut1-gambling" and first.category == "gambling"
    assert first.refresh == timedelta(hours=12)
    assert local.url == str(tmp_path / "lists" / "adult.txt")
    assert local.min_age == 18 and local.sha256 == "ab" * 32 and not local.enabled
    assert local.signature == ED25519_HEX
    assert local.max_bytes == 1_000_000 and local.max_entries == 5000
    assert national.category is None and national.refresh == timedelta(hours=1)
    assert national.refresh == timedelta(seconds=3600)
    assert first.max_bytes == 50 * 1024 * 1024  # Feed's own default


def test_feed_signature_in_base64_and_der(tmp_path: Path, resolv: Path) -> None:
    import base64

    raw = bytes.fromhex(ED25519_HEX)
    der = bytes.fromhex("302a300506032b6570032100") + raw
    for text in (base64.b64encode(raw).decode(), base64.b64encode(der).decode()):
        config = load(
            tmp_path,
            f"feeds:\n  - {{name: a, url: 'https://x.example/l', format: domains, "
            f"category: ads, signature: '{text}'}}\n",
            resolv,
        )
        assert config.feeds[0].signature == ED25519_HEX


@pytest.mark.parametrize(
    ("feed", "key", "detail"),
    [
        ("{url: 'https://x.example/l', format: domains, category: c}", "name", "required"),
        ("{name: a, format: domains, category: c}", "url", "required"),
        ("{name: A!, url: 'https://x.example/l', format: domains, category: c}", "name", "feed n"),
        ("{name: a, url: 'ftp://x.example/l', format: domains, category: c}", "url", "only http"),
        ("{name: a, url: 'https://x.example/l', format: csv, category: c}", "format", "not one"),
        ("{name: a, url: 'https://x.example/l', format: hosts}", "category", "required for"),
        (
            "{name: a, url: 'https://x.example/l', format: hosts, category: c, min_age: 120}",
            "min_age",
            "out of range",
        ),
        (
            "{name: a, url: 'https://x.example/l', format: hosts, category: c, refresh: 10s}",
            "refresh",
            "out of range",
        ),
        (
            "{name: a, url: 'https://x.example/l', format: hosts, category: c, refresh: often}",
            "refresh",
            "not a duration",
        ),
        (
            "{name: a, url: 'https://x.example/l', format: hosts, category: c, sha256: abc}",
            "sha256",
            "64 hex",
        ),
        (
            "{name: a, url: 'https://x.example/l', format: hosts, category: c, signature: abcd}",
            "signature",
            "Ed25519",
        ),
        (
            "{name: a, url: 'https://x.example/l', format: hosts, category: c, colour: red}",
            "colour",
            "unknown key",
        ),
        (
            "{name: a, url: 'https://x.example/l', format: hosts, category: c, enabled: 1}",
            "enabled",
            "true or false",
        ),
    ],
)
def test_feed_errors(tmp_path: Path, resolv: Path, feed: str, key: str, detail: str) -> None:
    message = error(
        tmp_path, f"feeds:\n  - {{name: ok, url: /x, format: rating}}\n  - {feed}\n", resolv
    )
    assert f": feeds[1].{key}: " in message and detail in message, message


def test_duplicate_feed_names(tmp_path: Path, resolv: Path) -> None:
    message = error(
        tmp_path,
        "feeds:\n  - {name: a, url: /x, format: rating}\n  - {name: a, url: /y, format: rating}\n",
        resolv,
    )
    assert ": feeds[1].name: 'a' is used by an earlier feed" in message


@pytest.mark.parametrize(
    ("listen", "upstream"),
    [
        ("127.0.0.1:53", "127.0.0.1:53"),
        ("[::1]:53", "[::1]:53"),
        ("0.0.0.0:53", "127.0.0.1"),  # a wildcard listen covers loopback
        ("[::]:5353", "[::1]:5353"),
    ],
)
def test_upstream_equal_to_a_listen_address_is_refused(
    tmp_path: Path, resolv: Path, listen: str, upstream: str
) -> None:
    """An upstream that is our own listener (dnsmasq's --dns-loop-detect), at start-up."""
    message = error(
        tmp_path,
        f"dns:\n  listen: ['{listen}']\n  upstreams: ['192.0.2.1', '{upstream}']\n",
        resolv,
    )
    assert ": dns.upstreams[1]: " in message and "loop" in message


def test_same_address_other_port_is_no_loop(tmp_path: Path, resolv: Path) -> None:
    config = load(
        tmp_path, "dns:\n  listen: ['127.0.0.1:1053']\n  upstreams: ['127.0.0.1']\n", resolv
    )
    assert config.dns.upstreams == (("127.0.0.1", 53),)


def test_loop_through_resolv_conf_is_refused(tmp_path: Path) -> None:
    own = tmp_path / "resolv.conf"
    own.write_text("nameserver 127.0.0.1\n")
    message = error(tmp_path, "dns:\n  listen: ['127.0.0.1:53']\n", own)
    assert f"dns.upstreams (from {own})[0]" in message and "loop" in message


# -- the shipped example and unit never rot ---------------------------------------------------


def test_example_config_loads(resolv: Path) -> None:
    config = load_config(REPO / "systemd" / "config.example.yaml", resolv_conf=resolv)
    assert ("0.0.0.0", 53) in config.dns.listen and ("::", 53) in config.dns.listen
    assert config.dns.upstreams and config.feeds
    assert all(feed.url.startswith("https://") for feed in config.feeds)
    assert config.data_dir == Path("/var/lib/nestguard")


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = REPO / "systemd" / "nestguard.service"
    text = unit.read_text()
    for line in (
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=nestguard",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "UMask=0077",
    ):
        assert line in text
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    copy = tmp_path / "nestguard.service"
    # verify checks that ExecStart exists; point it at a binary that does.
    copy.write_text(text.replace("/opt/nestguard/.venv/bin/nestguard", "/bin/true"))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0 and "nestguard.service" not in result.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()[:200]}")
    # verify exits 0 on unknown keys but prints "Unknown key ..., ignoring": fail on those too.
    problems = [
        line
        for line in result.stderr.splitlines()
        if "nestguard.service" in line
        and any(word in line for word in ("Unknown", "Invalid", "ignoring", "not executable"))
    ]
    assert result.returncode == 0 and not problems, result.stderr


def test_duplicate_listen_address(tmp_path: Path, resolv: Path) -> None:
    message = error(tmp_path, "dns:\n  listen: ['127.0.0.1:53', '127.0.0.1:53']\n", resolv)
    assert ": dns.listen[1]: 127.0.0.1:53 is listed twice" in message


def test_web_listen_on_a_dns_address(tmp_path: Path, resolv: Path) -> None:
    message = error(
        tmp_path, "dns: {listen: '127.0.0.1:8053'}\nweb: {listen: '127.0.0.1:8053'}\n", resolv
    )
    assert ": web.listen: 127.0.0.1:8053 is also a dns.listen address" in message


def test_world_writable_config_is_warned_about(
    tmp_path: Path, resolv: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "log_level: info\n")
    path.chmod(0o666)
    load_config(path, resolv_conf=resolv)
    assert "writable by group or others" in caplog.text
    caplog.clear()
    path.chmod(0o644)
    load_config(path, resolv_conf=resolv)
    assert "writable" not in caplog.text
