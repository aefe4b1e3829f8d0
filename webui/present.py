"""Turning policy data into words a parent (or a child) reads: reasons, profiles, sites."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import tldextract

from policy.model import NEVER, Category, Child
from policy.store import ActivityRow, ChildSettings
from webui.context import category_name
from webui.i18n import Translator

ADULT_AGE = 18
# what parents ask about first, in this order (then the catalogue's order)
FIRST = ("adult", "gambling", "dating", "violence", "drugs", "weapons", "social", "chat",
         "games")


def reason_text(
    reason: str, t: Translator, categories: Mapping[str, Category], *, source: str = ""
) -> str:
    """'category:gambling:18+' -> 'Gambling (18+)'; every Verdict reason in plain words.

    With the verdict's `source`, a name-rater block also says which words of the name made
    it ("Adult (from age 18) · words in the name: 'escort' 0.8 + 'cams' 0.6, confidence 0.91")."""
    text = _reason_text(reason, t, categories)
    evidence = rater_evidence(source)
    if text and evidence is not None:
        words, confidence = evidence
        text += " · " + t("why.rater_words", words=words, confidence=confidence)
    return text


_RATER_WORD = re.compile(r"'[^']*' \d+\.\d")
_RATER_CONFIDENCE = re.compile(r"\(confidence (\d\.\d\d)\)")


def rater_evidence(source: str) -> tuple[str, str] | None:
    """("'escort' 0.8 + 'cams' 0.6", "0.91") from a name-rater verdict source, else None."""
    if not source.startswith("name-rater:"):
        return None
    words = _RATER_WORD.findall(source)
    if not words:
        return None
    sure = _RATER_CONFIDENCE.search(source)
    return " + ".join(words), sure.group(1) if sure else "-"


def _reason_text(reason: str, t: Translator, categories: Mapping[str, Category]) -> str:
    if not reason:
        return ""
    kind, _, rest = reason.partition(":")
    lang = t.lang
    if kind == "category":
        slug, _, age = rest.partition(":")
        name = category_name(categories.get(slug), slug, lang)
        age = age.rstrip("+")
        if age.isdigit() and int(age) < NEVER:
            return t("why.category_age", category=name, age=age)
        return t("why.category", category=name)
    if kind == "security":
        return t("why.security", category=category_name(categories.get(rest), rest, lang))
    if kind == "schedule":
        return t("why.schedule", name=rest)
    if kind == "service":
        return t("why.service", name=rest)
    if kind == "bypass":
        return t("why.bypass")
    simple = {
        "parent": "why.parent_deny",
        "paused": "why.paused",
        "allowlist": "why.parent_allow",
        "safe-search": "why.safe_search",
        "allowlist-mode": "why.allowlist_mode",
        "mode": "why.allowlist_mode",
        "grant": "why.grant",
        "rater": "why.rater",
        "default": "why.default",
    }
    if reason in ("parent:deny",):
        return t("why.parent_deny")
    if reason in ("parent:allow",):
        return t("why.parent_allow")
    if kind in simple:
        return t(simple[kind])
    return t("why.other", reason=reason)


def reason_category(reason: str) -> str:
    kind, _, rest = reason.partition(":")
    if kind in ("category", "security"):
        return rest.partition(":")[0]
    return ""


@dataclass(frozen=True, slots=True)
class CategoryRow:
    slug: str
    name: str
    min_age: int
    choice: str  # "age" | "block" | "allow"
    blocked_now: bool
    security: bool


def category_rows(
    categories: Mapping[str, Category], settings: ChildSettings, age: int, lang: str
) -> list[CategoryRow]:
    rows = []
    def order(kv: tuple[str, Category]) -> tuple[int, int, int]:
        slug, cat = kv
        first = FIRST.index(slug) if slug in FIRST else len(FIRST)
        return (not cat.security, -cat.min_age, first)

    for slug, cat in sorted(categories.items(), key=order):
        choice = "age"
        if slug in settings.blocked:
            choice = "block"
        elif slug in settings.allowed:
            choice = "allow"
        if cat.security:
            choice = "block"
        blocked = choice == "block" or (choice == "age" and age < cat.min_age)
        rows.append(
            CategoryRow(slug, category_name(cat, slug, lang), cat.min_age, choice, blocked,
                        cat.security)
        )
    return rows


def profile_words(
    child: Child, settings: ChildSettings, categories: Mapping[str, Category],
    today: date, t: Translator,
) -> str:
    """'For Minh, 9: blocked — adult, gambling, dating, violence; social networks until 13'."""
    age = child.age_on(today)
    rows = category_rows(categories, settings, age, t.lang)
    plain = [r.name for r in rows if r.blocked_now and not r.security
             and (r.choice == "block" or r.min_age >= ADULT_AGE)]
    until = [t("profile.until", category=r.name, age=r.min_age) for r in rows
             if r.blocked_now and not r.security and r.choice == "age" and r.min_age < ADULT_AGE]
    parts = plain + until
    blocked = (", ".join(plain) + ("; " if plain and until else "") + ", ".join(until)) if parts \
        else t("profile.nothing")
    text = t("profile.words", name=child.name, age=age, blocked=blocked)
    if settings.mode == "allowlist" or (settings.mode == "auto" and age < 6):
        text += " " + t("profile.allowlist")
    if settings.paused_until is not None:
        text += " " + t("profile.paused")
    return text


@dataclass(slots=True)
class SiteGroup:
    site: str
    count: int = 0
    blocked: int = 0
    last: datetime | None = None
    names: list[str] = field(default_factory=list)
    why: str = ""
    reason: str = ""
    child_id: int | None = None
    device_ids: set[int] = field(default_factory=set)


def registrable(name: str, tld: tldextract.TLDExtract) -> str:
    """The site a name belongs to ('a.b.casino.co.uk' -> 'casino.co.uk'), from the bundled
    suffix list; odd names (escapes, single labels) group under their last two labels."""
    if all(ch.isalnum() or ch in ".-_" for ch in name):
        site = tld.extract_str(name).top_domain_under_public_suffix
        if site and name.endswith(site):
            return site
    labels = name.split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 else name


def group_by_site(
    rows: Sequence[ActivityRow], tld: tldextract.TLDExtract, t: Translator,
    categories: Mapping[str, Category],
) -> list[SiteGroup]:
    groups: dict[str, SiteGroup] = {}
    for row in rows:  # newest first
        ev = row.event
        site = registrable(ev.qname, tld)
        g = groups.get(site)
        if g is None:
            g = groups[site] = SiteGroup(site=site, last=ev.at, child_id=ev.child_id)
        g.count += 1
        if ev.device_id is not None:
            g.device_ids.add(ev.device_id)
        if ev.qname not in g.names and len(g.names) < 5:
            g.names.append(ev.qname)
        if ev.action == "block":
            g.blocked += 1
            if not g.reason:
                g.reason = ev.reason
                g.why = reason_text(ev.reason, t, categories, source=ev.source)
                if ev.child_id is not None:
                    g.child_id = ev.child_id
    return list(groups.values())
