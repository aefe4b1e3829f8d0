"""Safe-search table and the service catalogue (shipped data and its checks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.model import PolicyError
from policy.safesearch import SEARCH_TARGETS, safe_search_target
from policy.services import index_domains, load_services, service_domains


@pytest.mark.parametrize(
    ("qname", "search", "youtube", "target"),
    [
        ("www.google.com", True, "off", "forcesafesearch.google.com"),
        ("www.google.com.vn", True, "off", "forcesafesearch.google.com"),
        ("google.co.uk", True, "off", "forcesafesearch.google.com"),
        ("www.google.de", True, "off", "forcesafesearch.google.com"),
        ("www.google.com", False, "strict", None),
        ("maps.google.com", True, "strict", None),
        ("www.google.example", True, "strict", None),
        ("bing.com", True, "off", "strict.bing.com"),
        ("duckduckgo.com", True, "off", "safe.duckduckgo.com"),
        ("www.youtube.com", False, "strict", "restrict.youtube.com"),
        ("www.youtube-nocookie.com", True, "moderate", "restrictmoderate.youtube.com"),
        ("youtube.googleapis.com", True, "off", None),
        ("youtube.com", True, "strict", None),  # only the front-end names
    ],
)
def test_safe_search_target(qname: str, search: bool, youtube: str, target: str | None) -> None:
    assert safe_search_target(qname, search=search, youtube=youtube) == target


def test_google_list_is_complete_enough() -> None:
    google = {n for n, t in SEARCH_TARGETS.items() if t == "forcesafesearch.google.com"}
    assert len(google) >= 2 * 190
    assert {"www.google.com.vn", "google.com.vn", "www.google.co.jp", "www.google.cat"} <= google


def test_shipped_services() -> None:
    services = load_services()
    for slug in ("youtube", "tiktok", "facebook", "instagram", "messenger", "zalo", "roblox",
                 "fortnite", "minecraft", "discord", "snapchat", "twitch", "netflix", "steam",
                 "free_fire", "lien_quan", "whatsapp", "telegram", "x_twitter", "reddit"):
        assert slug in services, slug
        assert services[slug].names["vi"] and services[slug].names["en"]
    assert services["lien_quan"].name("vi") == "Liên Quân Mobile (Garena)"
    idx = service_domains()
    assert idx["tiktokcdn.com"] == ("tiktok",)
    assert set(idx["garena.vn"]) == {"free_fire", "lien_quan"}


def test_bad_catalogue_names_entry(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("tiktok:\n  names: {en: TikTok}\n  category: social\n"
                 "  domains: [tiktok.com, 'bad domain']\n")
    with pytest.raises(PolicyError, match=r"tiktok\.domains\[1\]"):
        load_services(f)
    f.write_text("x: [1, 2]\n")
    with pytest.raises(PolicyError, match="x: expected a mapping"):
        load_services(f)
    f.write_text(": : :\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_services(f)
    with pytest.raises(PolicyError, match="cannot read"):
        load_services(tmp_path / "missing.yaml")


def test_index_domains_shared() -> None:
    s = load_services()
    assert index_domains({"a": s["youtube"]})["youtu.be"] == ("a",)
