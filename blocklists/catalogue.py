"""The category catalogue: slug -> Category (names in vi/en, description, default minimum age).

    catalogue = load_catalogue()            # the shipped blocklists/categories.yaml
    catalogue["games"].min_age              # 12
    load_catalogue_info()["games"].basis    # where that default comes from

Errors name the file and the key: `CatalogueError("categories.yaml: categories.games.min_age:
must be a whole number 0-99, got 'twelve'")`. The catalogue is read at start (and on reload);
a bad file must not replace a good one, so callers keep the old dict on CatalogueError.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from blocklists.feed import FeedError
from policy.model import NEVER, SECURITY_CATEGORIES, Category

log = logging.getLogger(__name__)

DEFAULT_PATH = Path(__file__).with_name("categories.yaml")
BYPASS_BUILTIN = Path(__file__).parent / "data" / "bypass-builtin.txt"
LANGUAGES = ("vi", "en")

_SLUG = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_KEYS = frozenset({"names", "description", "min_age", "security", "allow", "basis"})
_REQUIRED = ("names", "description", "min_age", "basis")


class CatalogueError(FeedError):
    """The category catalogue file is missing or wrong (the message names file and key).

    A FeedError, so `except FeedError` keeps covering every blocklists error (one error
    family per package); callers keep the last good catalogue."""


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    """A category plus what only the catalogue knows."""

    category: Category
    basis: str  # where the default age comes from (one line, English)
    allow: bool = False  # an allow set: its list entries are exceptions (education)


def load_catalogue(path: Path | None = None) -> dict[str, Category]:
    """slug -> Category from the YAML catalogue (default: the shipped categories.yaml)."""
    return {slug: info.category for slug, info in load_catalogue_info(path).items()}


def load_catalogue_info(path: Path | None = None) -> dict[str, CategoryInfo]:
    """slug -> CategoryInfo (the Category, its age basis and whether it is an allow set)."""
    path = DEFAULT_PATH if path is None else path
    where = path.name if path == DEFAULT_PATH else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogueError(f"{where}: cannot read: {e}") from e
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CatalogueError(f"{where}: not valid YAML: {e}") from e
    if not isinstance(doc, Mapping) or "categories" not in doc:
        raise CatalogueError(f"{where}: expected a mapping with a 'categories' key")
    if doc.get("version", 1) != 1:
        raise CatalogueError(f"{where}: version: unsupported {doc.get('version')!r} (want 1)")
    cats = doc["categories"]
    if not isinstance(cats, Mapping) or not cats:
        raise CatalogueError(f"{where}: categories: expected a non-empty mapping")
    out: dict[str, CategoryInfo] = {}
    for slug, spec in cats.items():
        out[str(slug)] = _category(where, slug, spec)
    missing = SECURITY_CATEGORIES - out.keys()
    if missing:
        raise CatalogueError(f"{where}: categories: missing {', '.join(sorted(missing))}")
    log.debug("catalogue %s: %d categories", where, len(out))
    return out


def _category(where: str, slug: object, spec: object) -> CategoryInfo:
    at = f"{where}: categories.{slug}"
    if not isinstance(slug, str) or _SLUG.fullmatch(slug) is None:
        raise CatalogueError(f"{at}: slug must be [a-z][a-z0-9_-]{{0,31}}")
    if not isinstance(spec, Mapping):
        raise CatalogueError(f"{at}: expected a mapping")
    unknown = set(spec) - _KEYS
    if unknown:
        raise CatalogueError(f"{at}: unknown key {sorted(map(str, unknown))[0]!r}")
    for key in _REQUIRED:
        if key not in spec:
            raise CatalogueError(f"{at}: missing '{key}'")
    names = _texts(f"{at}.names", spec["names"])
    description = _texts(f"{at}.description", spec["description"])
    min_age = spec["min_age"]
    if isinstance(min_age, bool) or not isinstance(min_age, int) or not 0 <= min_age <= NEVER:
        raise CatalogueError(f"{at}.min_age: must be a whole number 0-99, got {min_age!r}")
    security = _flag(f"{at}.security", spec.get("security", False))
    allow = _flag(f"{at}.allow", spec.get("allow", False))
    basis = spec["basis"]
    if not isinstance(basis, str) or not basis.strip():
        raise CatalogueError(f"{at}.basis: must say where the default age comes from")
    if security and min_age != NEVER:
        raise CatalogueError(f"{at}.min_age: a security category must be {NEVER} (never)")
    if slug in SECURITY_CATEGORIES and not security:
        raise CatalogueError(f"{at}.security: {slug} must be a security category")
    if allow and (security or min_age != 0):
        raise CatalogueError(f"{at}.allow: an allow set must have min_age 0 and no security")
    category = Category(
        slug=slug, names=names, min_age=min_age, description=description, security=security
    )
    return CategoryInfo(category=category, basis=basis.strip(), allow=allow)


def _texts(at: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise CatalogueError(f"{at}: expected a mapping of language -> text")
    out = {}
    for lang in LANGUAGES:
        text = value.get(lang)
        if not isinstance(text, str) or not text.strip():
            raise CatalogueError(f"{at}.{lang}: missing or empty")
        out[lang] = text.strip()
    extra = set(value) - set(LANGUAGES)
    if extra:
        raise CatalogueError(f"{at}: unknown language {sorted(map(str, extra))[0]!r}")
    return out


def _flag(at: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise CatalogueError(f"{at}: must be true or false, got {value!r}")
    return value
