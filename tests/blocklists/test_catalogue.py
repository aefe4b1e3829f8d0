"""The shipped category catalogue and its validation; the built-in bypass list."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from blocklists.catalogue import (
    BYPASS_BUILTIN,
    DEFAULT_PATH,
    CatalogueError,
    load_catalogue,
    load_catalogue_info,
)
from blocklists.parse import parse_file
from policy.model import NEVER, SECURITY_CATEGORIES, Category

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("NESTGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))


def test_shipped_catalogue_has_the_agreed_default_ages() -> None:
    cat = load_catalogue()
    ages = {slug: c.min_age for slug, c in cat.items()}
    assert ages == {
        "adult": 18,
        "gambling": 18,
        "dating": 18,
        "drugs": 18,
        "weapons": 18,
        "violence": 16,
        "social": 13,
        "chat": 13,
        "games": 12,
        "bypass": 18,
        "malware": NEVER,
        "phishing": NEVER,
        "scam": NEVER,
        "education": 0,
        "kids": 0,
        "piracy": 18,
        "nosafesearch": 18,
        "fakenews": 0,
    }
    assert {s for s, c in cat.items() if c.security} == SECURITY_CATEGORIES
    assert all(isinstance(c, Category) and c.slug == s for s, c in cat.items())


def test_every_category_speaks_vietnamese_and_english() -> None:
    for slug, c in load_catalogue().items():
        assert set(c.names) == {"vi", "en"}, slug
        assert set(c.description) == {"vi", "en"}, slug
        assert c.names["vi"] != c.names["en"], slug
    cat = load_catalogue()
    # proper diacritics, not ASCII-folded Vietnamese
    assert cat["gambling"].names["vi"] == "Cờ bạc"
    assert cat["social"].names["vi"] == "Mạng xã hội"
    assert cat["games"].names["vi"] == "Trò chơi trực tuyến"


def test_each_default_age_says_where_it_comes_from() -> None:
    info = load_catalogue_info()
    assert "COPPA" in info["social"].basis
    assert "147/2024" in info["games"].basis and "12+" in info["games"].basis
    assert all(i.basis for i in info.values())
    # the allow sets policy/decide.py lets through in allow-list mode
    assert {s for s, i in info.items() if i.allow} == {"education", "kids"}


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "cats.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def shipped() -> dict[str, object]:
    doc = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "min_age",
            "twelve",
            "categories.games.min_age: must be a whole number 0-99, got 'twelve'",
        ),
        ("min_age", 100, "categories.games.min_age: must be a whole number 0-99, got 100"),
        ("min_age", True, "categories.games.min_age: must be a whole number 0-99, got True"),
        ("names", {"en": "Games"}, "categories.games.names.vi: missing or empty"),
        (
            "names",
            {"vi": "x", "en": "y", "fr": "z"},
            "categories.games.names: unknown language 'fr'",
        ),
        ("basis", "", "categories.games.basis: must say where the default age comes from"),
        ("security", "yes", "categories.games.security: must be true or false, got 'yes'"),
        ("security", True, "categories.games.min_age: a security category must be 99 (never)"),
        ("min_ages", 12, "categories.games: unknown key 'min_ages'"),
    ],
)
def test_bad_catalogue_names_file_and_key(
    tmp_path: Path, key: str, value: object, message: str
) -> None:
    doc = shipped()
    cats = doc["categories"]
    assert isinstance(cats, dict)
    cats["games"][key] = value
    path = write(tmp_path, doc)
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    assert str(info.value) == f"{path}: {message}"


def test_missing_key_and_missing_security_category(tmp_path: Path) -> None:
    doc = shipped()
    cats = doc["categories"]
    assert isinstance(cats, dict)
    del cats["games"]["basis"]
    with pytest.raises(CatalogueError, match=r"categories\.games: missing 'basis'"):
        load_catalogue(write(tmp_path, doc))
    doc = shipped()
    cats = doc["categories"]
    assert isinstance(cats, dict)
    del cats["phishing"]
    with pytest.raises(CatalogueError, match="categories: missing phishing"):
        load_catalogue(write(tmp_path, doc))
    doc = shipped()
    cats = doc["categories"]
    assert isinstance(cats, dict)
    cats["malware"]["security"] = False
    with pytest.raises(CatalogueError, match="malware must be a security category"):
        load_catalogue(write(tmp_path, doc))


def test_unreadable_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=f"{bad}: not valid YAML"):
        load_catalogue(bad)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="expected a mapping with a 'categories' key"):
        load_catalogue(bad)
    bad.write_text("categories:\n  Bad Slug:\n    min_age: 3\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"categories\.Bad Slug: slug must be"):
        load_catalogue(bad)


# --------------------------------------------------------------------------- built-in bypass list


def test_builtin_bypass_list_parses_cleanly_with_the_bootstrap_names() -> None:
    r = parse_file(BYPASS_BUILTIN, "domains")
    assert r.rejected == [] and r.duplicates == 0
    names = {e.name for e in r.entries}
    for must in (
        "dns.google",
        "cloudflare-dns.com",
        "dns.quad9.net",
        "doh.opendns.com",
        "dns.nextdns.io",
        "dns.adguard-dns.com",
    ):
        assert must in names
    # service host names only: the providers' own web sites stay reachable
    assert "quad9.net" not in names and "mullvad.net" not in names
    assert not any(e.exception or e.subdomains_only for e in r.entries)


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data absent: {DATA}")
def test_every_builtin_bypass_name_is_known_to_public_doh_lists() -> None:
    known: set[str] = set()
    for rel in (
        "dibdot-doh/doh-domains_overall.txt",
        "hagezi-fork-gaby/domains/doh.txt",
        "ut1/blacklists/doh/domains",
    ):
        known |= {e.name for e in parse_file(DATA / rel, "domains").entries}

    def covered(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[i:]) in known for i in range(len(parts) - 1))

    missing = [e.name for e in parse_file(BYPASS_BUILTIN, "domains").entries if not covered(e.name)]
    assert missing == []
