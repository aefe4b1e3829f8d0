"""The service catalogue: a parent blocks "TikTok", not a list of domains.

`load_services()` -> {slug: Service} from data/services.yaml (or a given file).
`service_domains()` -> {domain: (slug, ...)}: the lookup `decide` uses, one dict probe per
suffix of the name (a domain covers its subdomains; a domain may belong to two services).
`activity_service(qname)` -> the slug whose *activity* names cover the name, or None: the
names that mark real use (video, feed, game-session hosts), not the ones apps poll in the
background (push, telemetry, login). The most specific listed name wins, so a background
name under an activity name is background. Daily time budgets count from these
(policy/budgets.py).
Errors name the file and the entry: PolicyError("services.yaml: tiktok.domains[2]: ...").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from policy.model import PolicyError
from policy.names import BadName, typed_domain

CATEGORIES = frozenset({"social", "video", "chat", "games", "streaming"})
BUDGET_CATEGORIES = ("games", "social", "video")  # categories a daily time budget may cover


@dataclass(frozen=True, slots=True)
class Service:
    slug: str
    names: Mapping[str, str]  # lang -> name
    category: str
    domains: frozenset[str]
    activity: frozenset[str] = frozenset()  # names asked only while in use (budgets count)
    background: frozenset[str] = frozenset()  # names polled without use (never counted)

    def name(self, lang: str) -> str:
        return self.names.get(lang) or self.names.get("en") or self.slug


def load_services(path: Path | None = None) -> dict[str, Service]:
    """Read and check the catalogue. PolicyError names the file and the entry."""
    if path is None:
        where = "services.yaml"
        text = resources.files("policy").joinpath("data/services.yaml").read_text("utf-8")
    else:
        where = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeError) as e:
            raise PolicyError(f"{where}: cannot read: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"{where}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise PolicyError(f"{where}: expected a mapping of service slugs")
    out: dict[str, Service] = {}
    for slug, entry in data.items():
        at = f"{where}: {slug}"
        if not isinstance(slug, str) or not slug.replace("_", "").isalnum() or not slug.islower():
            raise PolicyError(f"{at}: slug must be lower-case letters, digits and '_'")
        if not isinstance(entry, dict):
            raise PolicyError(f"{at}: expected a mapping with names, category, domains")
        names = entry.get("names")
        if not isinstance(names, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in names.items()
        ) or "en" not in names:
            raise PolicyError(f"{at}.names: expected {{vi: ..., en: ...}}")
        category = entry.get("category")
        if category not in CATEGORIES:
            raise PolicyError(f"{at}.category: {category!r} is not one of {sorted(CATEGORIES)}")
        domains = entry.get("domains")
        if not isinstance(domains, list) or not domains:
            raise PolicyError(f"{at}.domains: expected a non-empty list")
        canon = set()
        for i, d in enumerate(domains):
            try:
                canon.add(typed_domain(d))
            except BadName as e:
                raise PolicyError(f"{at}.domains[{i}]: {e}") from e
        activity = _names(entry, "activity", at)
        background = _names(entry, "background", at)
        if both := activity & background:
            raise PolicyError(f"{at}: {sorted(both)[0]} is both activity and background")
        out[slug] = Service(
            slug, dict(names), str(category), frozenset(canon), activity, background
        )
    return out


def _names(entry: Mapping[str, object], key: str, at: str) -> frozenset[str]:
    raw = entry.get(key, [])
    if not isinstance(raw, list):
        raise PolicyError(f"{at}.{key}: expected a list of names")
    out = set()
    for i, d in enumerate(raw):
        try:
            out.add(typed_domain(str(d)))
        except BadName as e:
            raise PolicyError(f"{at}.{key}[{i}]: {e}") from e
    return frozenset(out)


def index_domains(services: Mapping[str, Service]) -> dict[str, tuple[str, ...]]:
    """domain -> the slugs of the services it belongs to."""
    idx: dict[str, tuple[str, ...]] = {}
    for slug, svc in services.items():
        for d in svc.domains:
            idx[d] = (*idx.get(d, ()), slug)
    return idx


@lru_cache(maxsize=1)
def default_services() -> dict[str, Service]:
    return load_services()


@lru_cache(maxsize=1)
def service_domains() -> dict[str, tuple[str, ...]]:
    """The shipped catalogue's domain -> slugs map (built once)."""
    return index_domains(default_services())


@lru_cache(maxsize=1)
def _activity_index() -> dict[str, str | None]:
    """name -> slug for activity names, None for background names (most specific wins)."""
    idx: dict[str, str | None] = {}
    for slug, svc in default_services().items():
        for d in svc.activity:
            idx[d] = slug
    for svc in default_services().values():
        for d in svc.background:
            idx[d] = None
    return idx


@lru_cache(maxsize=16384)
def activity_service(qname: str) -> str | None:
    """The service whose activity names cover `qname` (canonical), or None (module docstring)."""
    idx = _activity_index()
    name = qname
    while True:
        if name in idx:
            return idx[name]
        dot = name.find(".")
        if dot < 0:
            return None
        name = name[dot + 1 :]


def budget_services(category: str) -> tuple[str, ...]:
    """The shipped services of a category that a budget can count (with activity names)."""
    return tuple(
        s.slug for s in default_services().values() if s.category == category and s.activity
    )
