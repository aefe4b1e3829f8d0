"""One Feed validator and (de)serialiser (blocklists/feed.py) for the config, the web form and
API, the stored copy and the sync: the same body gives the same Feed or names the same field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklists.feed import (
    FORMATS,
    TRUSTED,
    BadFeed,
    Feed,
    UrlRules,
    feed_from_dict,
    feed_to_dict,
)
from resolver.config import ConfigError, load_config
from webui import forms

KEY_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"  # RFC 8032 test 1

FEEDS = st.builds(
    Feed,
    name=st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True),
    url=st.sampled_from(["https://lists.example/a.txt", "http://10.0.0.2/l", "/srv/l.txt"]),
    format=st.sampled_from(FORMATS),
    category=st.sampled_from(["adult", "gambling", "my-list"]),
    min_age=st.none() | st.integers(0, 99),
    refresh=st.integers(60, 30 * 86400).map(lambda s: timedelta(seconds=s)),
    sha256=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    signature=st.none() | st.just(KEY_HEX),
    max_bytes=st.integers(1, 10**10),
    max_entries=st.integers(1, 10**9),
    enabled=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(FEEDS)
def test_a_stored_feed_reads_back_the_same(feed: Feed) -> None:
    assert feed_from_dict(feed_to_dict(feed), rules=TRUSTED) == feed


BODIES = [
    ({"name": "A!", "url": "https://lists.example/x", "format": "domains",
      "category": "adult"}, "name"),
    ({"url": "https://lists.example/x", "format": "domains", "category": "adult"}, "name"),
    ({"name": "x", "url": "ftp://lists.example/x", "format": "domains",
      "category": "adult"}, "url"),
    ({"name": "x", "url": "https://lists.example/x", "format": "csv",
      "category": "adult"}, "format"),
    ({"name": "x", "url": "https://lists.example/x", "format": "hosts"}, "category"),
    ({"name": "x", "url": "https://lists.example/x", "format": "hosts", "category": "adult",
      "sha256": "abc"}, "sha256"),
    ({"name": "x", "url": "https://lists.example/x", "format": "hosts", "category": "adult",
      "signature": "abcd"}, "signature"),
]


def _config_field(tmp_path: Path, body: dict[str, object]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"dns": {"upstreams": ["192.0.2.1"]}, "feeds": [body]}))
    path.chmod(0o644)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return str(e.value).split("feeds[0].", 1)[1].split(":", 1)[0]


def _form_field(body: dict[str, object]) -> str:
    with pytest.raises(forms.FormError) as e:
        forms.parse_feed(body, categories={"adult"}, existing=(), allow_http=False,
                         allow_loopback=False)
    return e.value.field


@pytest.mark.parametrize(("body", "field"), BODIES)
def test_config_and_form_name_the_same_field(
    tmp_path: Path, body: dict[str, object], field: str
) -> None:
    assert _config_field(tmp_path, body) == field
    assert _form_field(body) == field
    with pytest.raises(BadFeed) as e:
        feed_from_dict(body, rules=TRUSTED)
    assert e.value.field == field


def test_config_and_form_read_a_good_feed_the_same(tmp_path: Path) -> None:
    body: dict[str, object] = {"name": "hagezi", "url": "https://lists.example/h.txt",
                               "format": "adblock", "category": "adult", "sha256": "AB" * 32,
                               "signature": KEY_HEX.upper()}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"dns": {"upstreams": ["192.0.2.1"]}, "feeds": [body]}))
    path.chmod(0o644)
    from_config = load_config(path).feeds[0]
    from_form = forms.parse_feed(body, categories={"adult"}, existing=(), allow_http=False,
                                 allow_loopback=False)
    assert from_config == from_form
    assert from_form.sha256 == "ab" * 32 and from_form.signature == KEY_HEX


@pytest.mark.parametrize("url", ["https://nas.lan/l.txt", "https://printer.local/x",
                                 "https://192.168.1.2/l", "https://[::1]/l", "file:///etc/x"])
def test_web_rules_refuse_home_network_and_files(url: str) -> None:
    with pytest.raises(BadFeed) as e:
        feed_from_dict({"name": "x", "url": url, "format": "rating"}, rules=UrlRules())
    assert e.value.field == "url"
    assert feed_from_dict({"name": "x", "url": url, "format": "rating"}, rules=TRUSTED).url == url
