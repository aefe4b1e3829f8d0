"""Every entry point reads a domain or a device identifier the same way (policy/names.py):
the web form and JSON API (webui/forms.py), the store, the CLI, the list parsers, the config.

Hypothesis draws names with IDN labels (ß, ü, 例, full-width letters), trailing dots, mixed
case, labels ending in a hyphen, IP literals; and identifiers as IPv4, IPv6 in several
spellings, MACs with colons, dashes, dots or none. For each input, every entry point either
gives the same canonical text or refuses it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from blocklists.feed import FeedError
from blocklists.parse import parse
from blocklists.sync import explain_matches
from policy.names import BadName, canonical_name, device_identifier, typed_domain
from policy.store import Store, StoreError
from resolver.cli import UsageError, parse_identifier
from resolver.config import ConfigError, load_config
from tests.policy.conftest import DictIndex
from webui import forms

REFUSED = "refused"
Outcome = str  # the canonical text, or REFUSED

LABEL = st.text(alphabet="abcXYZ09-_ßüé例ａ", min_size=1, max_size=8)
NAMES = st.one_of(
    st.builds(
        lambda labels, dot: ".".join(labels) + ("." if dot else ""),
        st.lists(LABEL, min_size=1, max_size=4),
        st.booleans(),
    ),
    st.ip_addresses().map(str),
)


def _mac(value: int, style: int, upper: bool) -> str:
    digits = f"{value:012x}"
    pairs = [digits[i : i + 2] for i in range(0, 12, 2)]
    text = [":".join(pairs), "-".join(pairs), ".".join(digits[i : i + 4] for i in (0, 4, 8)),
            digits][style]
    return text.upper() if upper else text


IDENTIFIERS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).flatmap(
        lambda a: st.sampled_from([str(a), a.exploded, a.exploded.upper(), f"[{a}]"])
    ),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
    st.builds(_mac, st.integers(0, 2**48 - 1), st.integers(0, 3), st.booleans()),
    st.text(alphabet="0123456789abcdefABCDEF:.-", max_size=20),
)


def outcome(fn: Callable[[str], str], text: str, *errors: type[Exception]) -> Outcome:
    try:
        return fn(text)
    except errors:
        return REFUSED


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store.open(tmp_path_factory.mktemp("names") / "nestguard.db")
    yield s
    s.close()


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config")


def _form(text: str) -> str:
    return forms.parse_domain({"domain": text})


def _store_rule(store: Store) -> Callable[[str], str]:
    child = next(iter(store.children()), None) or store.add_child("Minh", date(2016, 5, 1))

    def add(text: str) -> str:
        rule = store.add_rule(child.id, text, "deny")
        store.remove_rule(rule.id)
        return rule.domain

    return add


def _list_line(text: str) -> str:
    result = parse(text + "\n", "domains")
    if not result.entries:
        raise ValueError(result.rejected[0].reason if result.rejected else "skipped")
    return result.entries[0].name


def _config(folder: Path) -> Callable[[str], str]:
    path = folder / "config.yaml"

    def read(text: str) -> str:
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        path.write_text(
            "dns:\n  upstreams: ['192.0.2.1']\n  cache:\n"
            f'    rebind_allow: ["{quoted}"]\n',
            encoding="utf-8",
        )
        path.chmod(0o644)
        return load_config(path).dns.cache.rebind_allow[0]

    return read


def _cli_check(text: str) -> str:
    """`nestguard lists check NAME`: refuses exactly the names canonical_name refuses."""
    explain_matches(DictIndex(), text)
    return canonical_name(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=NAMES)
@example(text="straße.de")
@example(text="Foo-.Example.COM.")
@example(text="_dmarc.example")
@example(text="例え.テスト")
@example(text="ａｂｃ.com")
@example(text="com")
@example(text="192.0.2.1")
@example(text="-a.b")
def test_every_entry_point_reads_a_domain_the_same_way(
    text: str, store: Store, config_dir: Path
) -> None:
    want = outcome(typed_domain, text, BadName)
    assert outcome(canonical_name, text, BadName) == want  # no URL or wildcard drawn here
    assert outcome(_form, text, forms.FormError) == want
    assert outcome(_store_rule(store), text, StoreError) == want
    assert outcome(_config(config_dir), text, ConfigError) == want
    assert outcome(_cli_check, text, FeedError) == want
    listed = outcome(_list_line, text, ValueError)
    # Lists also refuse public suffixes ("co.uk") and a few reserved names; nothing else.
    assert listed == want or (listed == REFUSED and want != REFUSED)
    if want != REFUSED and listed == REFUSED:
        result = parse(text + "\n", "domains")
        assert result.rejected or result.skipped, text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=IDENTIFIERS)
@example(text="AA-BB-CC-DD-EE-0F")
@example(text="aabb.ccdd.ee0f")
@example(text="AABBCCDDEE0F")
@example(text="2001:DB8:0:0::1")
@example(text="::ffff:192.168.1.7")
@example(text="fe80::1%eth0")
def test_every_entry_point_reads_a_device_identifier_the_same_way(
    text: str, store: Store
) -> None:
    want = outcome(device_identifier, text, BadName)
    if want != REFUSED:
        assert want == device_identifier(want)  # the canonical form is a fixed point
    assert outcome(forms.parse_address, text, forms.FormError) == want
    assert outcome(parse_identifier, text, UsageError) == want

    def stored(t: str) -> str:
        device = store.upsert_device(t)
        store.delete_device(device.id)
        return device.identifiers[0]

    assert outcome(stored, text, StoreError) == want


def test_mac_spellings_and_ipv6_forms_name_one_device() -> None:
    macs = ["aa:bb:cc:dd:ee:0f", "AA-BB-CC-DD-EE-0F", "aabb.ccdd.ee0f", "AABBCCDDEE0F"]
    assert {forms.parse_address(m) for m in macs} == {"aa:bb:cc:dd:ee:0f"}
    assert {parse_identifier(m) for m in macs} == {"aa:bb:cc:dd:ee:0f"}
    v6 = ipaddress.ip_address("2001:db8::1")
    spellings = [str(v6), v6.exploded, v6.exploded.upper(), f"[{v6}]"]
    assert {device_identifier(s) for s in spellings} == {"2001:db8::1"}


def test_a_url_and_a_wildcard_typed_by_a_parent_are_the_site() -> None:
    for typed in ("https://www.Straße.de/path?q=1", "*.www.straße.de", "www.straße.de/x"):
        assert typed_domain(typed) == "www.xn--strae-oqa.de"
        assert forms.parse_domain({"domain": typed}) == "www.xn--strae-oqa.de"
