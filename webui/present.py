"""Turning policy data into words a parent (or a child) reads: reasons, profiles, sites."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import tldextract

from policy.model import NEVER, Category, Child, Grant, Profile, Schedule, Verdict
from policy.schedule import active_windows, window_end
from policy.store import ActivityRow, ChildSettings, Rule
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
    text = _reason_text(reason, t, categories, source)
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


def _reason_text(
    reason: str, t: Translator, categories: Mapping[str, Category], source: str
) -> str:
    if not reason:
        return ""
    kind, _, rest = reason.partition(":")
    if kind == "learning":
        return learning_text(source, t)
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
    if kind == "budget":
        return t("why.budget", name=budget_name(rest, t))
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


def learning_text(source: str, t: Translator) -> str:
    """A "learning:<list>" verdict's source, 'education:40 coolmathgames.com' (policy/decide.py
    step 9), as 'Let through as a learning site: coolmathgames.com (education list, line 40)'."""
    where, _, entry = source.partition(" ")
    name, _, line = where.rpartition(":")
    if not name or not line.isdigit():
        name, line = where, "?"
    return t("why.learning", entry=entry or "?", list=name, line=line)


def in_force_text(verdict: Verdict, profile: Profile, now: datetime, t: Translator) -> str:
    """What blocks now, with its end: 'Bedtime until 06:30', 'Internet paused until 18:00';
    the plain reason when it has no end."""
    kind, _, rest = verdict.reason.partition(":")
    if kind == "schedule":
        name = rest.partition(":")[0]
        for w in active_windows(profile, now):
            if w.name == name:
                end = window_end(w, now)
                return t("when.until", what=name, time=end.strftime("%H:%M"))
    if kind == "paused" and profile.paused_until is not None:
        if profile.paused_until.year < 9000:  # not "until resumed"
            until = profile.paused_until.astimezone(now.tzinfo)
            return t("when.paused_until", time=until.strftime("%H:%M"))
    return reason_text(verdict.reason, t, {})


def in_force_now(profile: Profile, now: datetime, t: Translator) -> str:
    """What holds the child's internet right now, with its end ('Bedtime until 06:30'), or
    "" (the child's page and Home)."""
    parts = []
    if profile.paused_until is not None and profile.paused_until > now:
        if profile.paused_until.year < 9000:
            until = profile.paused_until.astimezone(now.tzinfo)
            parts.append(t("when.paused_until", time=until.strftime("%H:%M")))
        else:
            parts.append(t("why.paused"))
    for w in active_windows(profile, now):
        parts.append(t("when.until", what=w.name, time=window_end(w, now).strftime("%H:%M")))
    return " · ".join(parts)


def child_summary(
    settings: ChildSettings, categories: Sequence[CategoryRow], rules: Sequence[Rule],
    schedules: Sequence[Schedule], grants: Sequence[Grant], service_names: Mapping[str, str],
    t: Translator,
) -> dict[str, str]:
    """One line per section of the child's page, shown at the top and on each fold."""
    blocked = sum(1 for r in categories if r.blocked_now and not r.security)
    cats = t("summary.categories", n=blocked)
    if settings.safe_search:
        cats += " · " + t("summary.safe_search")
    services = sorted(service_names.get(s, s) for s in settings.services)
    kinds = [r.kind for r in rules]
    sites = t("summary.sites", allow=kinds.count("allow") + kinds.count("always"),
              deny=kinds.count("deny"), grants=len(grants))
    sched = ", ".join(f"{s.name} {s.start.strftime('%H:%M')}–{s.end.strftime('%H:%M')}"
                      for s in schedules) or t("summary.no_schedules")
    return {
        "cats": cats,
        "services": t("summary.services", names=", ".join(services)) if services
        else t("summary.no_services"),
        "sites": sites,
        "sched": sched,
    }


def shown_name(name: str) -> str:
    """A name as a parent reads it: IDN labels in Unicode ('xn--v-d-rma6749a.vn' -> 'ví-dụ.vn')."""
    if "xn--" not in name:
        return name
    try:
        return name.encode("ascii").decode("idna")
    except UnicodeError:
        return name


def saved_rule(
    query: Mapping[str, str], rules: Sequence[Rule], tld: tldextract.TLDExtract, t: Translator
) -> dict[str, str] | None:
    """After the site form: what was saved (the stored site, in Unicode), the opposite rule
    it replaced, and the whole site to offer when the stored name is a part of one
    (www.youtube.com -> youtube.com). Only for a rule that exists."""
    site, kind = query.get("site", ""), query.get("kind", "")
    if not any(r.domain == site and r.kind == kind for r in rules):
        return None
    whole = registrable(site, tld)
    have_whole = any(r.domain == whole and r.kind == kind for r in rules)
    replaced = query.get("replaced", "")
    return {
        "site": shown_name(site),
        "kind": kind,
        "text": t("saved.rule", rule=t("rule." + kind), site=shown_name(site)),
        "replaced": t("saved.replaced", rule=t("rule." + replaced)) if replaced in (
            "allow", "deny") else "",
        "whole": whole if whole != site and not have_whole else "",
        "whole_shown": shown_name(whole),
    }


def window_ends(verdict: Verdict, profile: Profile, now: datetime) -> datetime | None:
    """The end of the schedule window behind a 'schedule:<name>' verdict, if in force."""
    kind, _, rest = verdict.reason.partition(":")
    if kind != "schedule":
        return None
    name = rest.partition(":")[0]
    for w in active_windows(profile, now):
        if w.name == name:
            return window_end(w, now)
    return None


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
    learning: str = ""  # let through as a learning site: which allow-set entry (newest row)
    child_id: int | None = None
    device_ids: set[int] = field(default_factory=set)
    clients: set[str] = field(default_factory=set)  # addresses of rows with no device yet
    source: str = ""  # which list line, parent rule or rater reading blocked it
    cannot_allow: str = ""  # an i18n key saying why no allow is offered ("" = offer it)
    rewritten: int = 0  # answered with the engine's safe-search front end


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
    categories: Mapping[str, Category], device_of: Mapping[str, int] | None = None,
) -> list[SiteGroup]:
    """Rows grouped by site and by child: an unassigned device's lookups (child None) are a
    group of their own, never credited to a child. `device_of` maps an address to its device
    for rows logged before the device was known (its first lookups)."""
    groups: dict[tuple[str, int | None], SiteGroup] = {}
    device_of = device_of or {}
    for row in rows:  # newest first
        ev = row.event
        site = registrable(ev.qname, tld)
        g = groups.get((site, ev.child_id))
        if g is None:
            g = groups[(site, ev.child_id)] = SiteGroup(site=site, last=ev.at,
                                                        child_id=ev.child_id)
        g.count += 1
        device_id = ev.device_id if ev.device_id is not None else device_of.get(ev.client)
        if device_id is not None:
            g.device_ids.add(device_id)
        else:
            g.clients.add(ev.client)
        if ev.qname not in g.names and len(g.names) < 5:
            g.names.append(ev.qname)
        if not g.learning and ev.reason.startswith("learning:"):
            g.learning = learning_text(ev.source, t)
        if ev.action == "rewrite":
            g.rewritten += 1
        if ev.action == "block":
            g.blocked += 1
            if not g.reason:
                g.reason = ev.reason
                g.why = reason_text(ev.reason, t, categories, source=ev.source)
                # a rater block's words are in `why` already
                g.source = "" if rater_evidence(ev.source) else source_text(ev.source, t)
                g.cannot_allow = cannot_allow(ev.reason)
    return list(groups.values())


def budget_name(slug: str, t: Translator) -> str:
    """A budget's name for parents: the service's name, the category's, or "all together"."""
    from policy.budgets import OVERALL
    from policy.services import BUDGET_CATEGORIES, default_services

    if slug == OVERALL:
        return t("budget.overall")
    if slug in BUDGET_CATEGORIES:
        return t(f"budget.cat_{slug}")
    svc = default_services().get(slug)
    return svc.name(t.lang) if svc is not None else slug


def budget_choices(t: Translator) -> list[tuple[str, str]]:
    """(slug, name) of everything a budget may name: categories and overall first."""
    from policy.budgets import OVERALL
    from policy.services import BUDGET_CATEGORIES, default_services

    first = [(c, budget_name(c, t)) for c in (*BUDGET_CATEGORIES, OVERALL)]
    services = sorted(
        ((s.slug, s.name(t.lang)) for s in default_services().values() if s.activity),
        key=lambda kv: kv[1].casefold(),
    )
    return first + services


# Names the resolver answers itself whatever the lists say (policy/decide.py step 1): an
# allow rule cannot change their answer.
RESOLVER_ANSWERS = ("bypass:",)
# A list of encrypted-DNS services (category "bypass"): allowing one lets the device send
# its lookups there, past every filter.
BYPASS_CATEGORY = "bypass"


def cannot_allow(reason: str) -> str:
    """The i18n key saying why 'allow' is not offered for a block with this reason, or ""."""
    if reason.startswith(RESOLVER_ANSWERS):
        return "activity.cannot_allow_probe"
    if reason.startswith("security:"):
        return "activity.cannot_allow_security"
    if reason_category(reason) == BYPASS_CATEGORY:
        return "activity.cannot_allow_bypass"
    return ""


def source_text(source: str, t: Translator) -> str:
    """Which list line, parent choice or rater reading blocked a name, in words:
    'ut1-adult:1234' -> 'list ut1-adult, line 1234'; 'name-rater: contains "xxx"' ->
    'guessed from the name: contains "xxx"'; 'parent' -> 'your choice'."""
    if not source:
        return ""
    if source == "parent":
        return t("source.parent")
    if source.startswith("name-rater"):
        _, _, evidence = source.partition(":")
        return t("source.rater", evidence=evidence.strip() or "?")
    name, _, line = source.rpartition(":")
    if name and line.isdigit():
        return t("source.list_line", name=name, line=line)
    return t("source.list", name=source)
