"""Server-side validation of every form field and API body (one place, both paths).

Each `parse_*` takes the raw fields (a form or a JSON object, as a plain mapping) and returns
typed values or raises `FormError` with a message key per field. Views show the messages next to
the fields; the API answers 400 {error, field}. Nothing is written before everything is valid.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, time
from typing import Any

from multidict import MultiDictProxy

from blocklists.feed import BadFeed, Feed, UrlRules, feed_from_dict
from policy.names import BadName, device_identifier, typed_domain

Raw = Mapping[str, object]
Msg = tuple[str, dict[str, object]]

USERNAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
HHMM_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
PASSWORD_MIN = 12
PASSWORD_MAX = 256
APPROVAL_MINUTES = (30, 60, 120, 1440, 0)  # 0 = always
MAX_MINUTES = 60 * 24 * 365


class FormError(Exception):
    """field -> (message key, parameters). The first field is the one the API names."""

    def __init__(self, errors: Mapping[str, Msg]) -> None:
        super().__init__(", ".join(f"{k}: {v[0]}" for k, v in errors.items()))
        self.errors = dict(errors)

    @property
    def field(self) -> str:
        return next(iter(self.errors))


def fail(field: str, key: str, **params: object) -> FormError:
    return FormError({field: (key, params)})


def form_fields(post: MultiDictProxy[Any]) -> dict[str, object]:
    """A submitted form as a plain dict: repeated keys (checkboxes) become lists."""
    out: dict[str, object] = {}
    for key in post:
        values = [v for v in post.getall(key) if isinstance(v, str)]
        if key.endswith("[]"):
            out[key[:-2]] = values
        elif values:
            out[key] = values[0]
    return out


class Checker:
    """Collects errors across fields so a form shows all its messages at once."""

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        self.errors: dict[str, Msg] = {}

    def add(self, field: str, key: str, **params: object) -> None:
        self.errors.setdefault(field, (key, params))

    def text(self, field: str, *, max_len: int = 100, required: bool = True) -> str:
        value = self.raw.get(field)
        if value is None:
            value = ""
        if not isinstance(value, str):
            self.add(field, "err.text")
            return ""
        value = value.strip()
        if CONTROL_RE.search(value):
            self.add(field, "err.control")
            return ""
        if required and not value:
            self.add(field, "err.required")
        elif len(value) > max_len:
            self.add(field, "err.too_long", n=max_len)
        return value

    def done(self) -> None:
        if self.errors:
            raise FormError(self.errors)


def _flag(raw: Raw, field: str) -> bool:
    value = raw.get(field)
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.lower() in ("1", "on", "true", "yes")


def _list(raw: Raw, field: str) -> list[str]:
    value = raw.get(field)
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


# accounts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


def parse_new_account(raw: Raw, *, with_role: bool = False) -> tuple[Credentials, str]:
    c = Checker(raw)
    username = c.text("username", max_len=32)
    if username and not USERNAME_RE.match(username):
        c.add("username", "err.username")
    password = raw.get("password")
    if not isinstance(password, str) or not password:
        c.add("password", "err.required")
        password = ""
    elif len(password) < PASSWORD_MIN:
        c.add("password", "err.password_short", n=PASSWORD_MIN)
    elif len(password) > PASSWORD_MAX:
        c.add("password", "err.too_long", n=PASSWORD_MAX)
    elif password.lower() == username.lower():
        c.add("password", "err.password_is_name")
    confirm = raw.get("confirm")
    if confirm is not None and confirm != password and "password" not in c.errors:
        c.add("confirm", "err.password_mismatch")
    role = "admin"
    if with_role:
        role_raw = raw.get("role", "parent")
        role = role_raw if isinstance(role_raw, str) else ""
        if role not in ("parent", "admin"):
            c.add("role", "err.choice")
    c.done()
    return Credentials(username, password), role


def parse_login(raw: Raw) -> Credentials:
    username = raw.get("username")
    password = raw.get("password")
    c = Checker(raw)
    if not isinstance(username, str) or not username.strip():
        c.add("username", "err.required")
    if not isinstance(password, str) or not password:
        c.add("password", "err.required")
    c.done()
    assert isinstance(username, str) and isinstance(password, str)
    if len(username) > 64 or len(password) > PASSWORD_MAX:
        raise fail("password", "err.bad_login")
    return Credentials(username.strip(), password)


def parse_password_change(raw: Raw, username: str) -> tuple[str, str]:
    errors: dict[str, Msg] = {}
    old = raw.get("old")
    if not isinstance(old, str) or not old:
        errors["old"] = ("err.required", {})
    try:
        creds, _ = parse_new_account({"username": username, "password": raw.get("new"),
                                      "confirm": raw.get("confirm")})
    except FormError as e:
        for f, msg in e.errors.items():
            errors.setdefault("new" if f == "password" else f, msg)
    if errors:
        raise FormError(errors)
    assert isinstance(old, str)
    return old, creds.password


# children ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChildForm:
    name: str
    born: date
    lang: str


def parse_date(c: Checker, field: str) -> date | None:
    value = c.text(field, max_len=10)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        c.add(field, "err.date")
        return None


def parse_child(raw: Raw, today: date) -> ChildForm:
    c = Checker(raw)
    name = c.text("name", max_len=40)
    born = parse_date(c, "born")
    if born is not None:
        if born > today:
            c.add("born", "err.born_future")
        elif today.year - born.year > 25:
            c.add("born", "err.born_old")
    lang_raw = raw.get("lang", "vi")
    lang = lang_raw if isinstance(lang_raw, str) and lang_raw else "vi"
    if lang not in ("vi", "en"):
        c.add("lang", "err.choice")
    c.done()
    assert born is not None
    return ChildForm(name, born, lang)


def canonical_domain(value: str) -> str:
    """A site as a parent types it ('https://www.Example.com/x', 'bücher.de') -> canonical name,
    by policy.names.typed_domain. Raises ValueError with a message key."""
    try:
        return typed_domain(value)
    except BadName as e:
        raise ValueError("err.domain_ip" if e.address else "err.domain") from None


def parse_domain(raw: Raw, field: str = "domain") -> str:
    value = raw.get(field)
    if not isinstance(value, str) or not value.strip():
        raise fail(field, "err.required")
    try:
        return canonical_domain(value)
    except ValueError as e:
        raise fail(field, str(e)) from None


def parse_rule(raw: Raw) -> tuple[str, str]:
    domain = parse_domain(raw)
    kind = raw.get("kind", "allow")
    if kind not in ("allow", "deny", "always"):
        raise fail("kind", "err.choice")
    assert isinstance(kind, str)
    return domain, kind


def parse_minutes(raw: Raw, field: str = "minutes") -> int:
    value = raw.get(field)
    if isinstance(value, bool):
        raise fail(field, "err.number")
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            raise fail(field, "err.number")
        value = int(value)
    if not isinstance(value, int) or value < 0 or value > MAX_MINUTES:
        raise fail(field, "err.minutes")
    return value


def parse_budget(slug: object, school_days: object, weekends: object) -> tuple[str, int, int]:
    """A budget from a form or the API: policy/budgets.check_budget, its errors by field."""
    from policy.budgets import check_budget
    from policy.model import PolicyError

    for field, value in (("school_days", school_days), ("weekends", weekends)):
        if value is None or value == "":
            raise fail(field, "err.required")
        if isinstance(value, bool) or not str(value).strip().isdigit():
            raise fail(field, "err.number")
    try:
        return check_budget(str(slug), school_days, weekends)
    except PolicyError as e:
        field = str(e).split(":", 1)[0]
        raise fail(field, "err.choice" if field == "slug" else "err.budget_minutes") from None


@dataclass(frozen=True, slots=True)
class SettingsForm:
    blocked: frozenset[str]
    allowed: frozenset[str]
    safe_search: bool
    youtube: str
    services: frozenset[str]
    mode: str


def parse_child_settings(
    raw: Raw, categories: Collection[str], services: Collection[str]
) -> SettingsForm:
    """Per-category choice: cat_<slug> = 'age' (follow the age) | 'block' | 'allow'."""
    c = Checker(raw)
    blocked: set[str] = set()
    allowed: set[str] = set()
    for slug in categories:
        choice = raw.get(f"cat_{slug}", "age")
        if choice == "block":
            blocked.add(slug)
        elif choice == "allow":
            allowed.add(slug)
        elif choice != "age":
            c.add(f"cat_{slug}", "err.choice")
    youtube = raw.get("youtube", "moderate")
    if youtube not in ("off", "moderate", "strict"):
        c.add("youtube", "err.choice")
    mode = raw.get("mode", "auto")
    if mode not in ("auto", "normal", "allowlist"):
        c.add("mode", "err.choice")
    chosen = set(_list(raw, "services"))
    if not chosen <= set(services):
        c.add("services", "err.choice")
    c.done()
    return SettingsForm(
        frozenset(blocked),
        frozenset(allowed),
        _flag(raw, "safe_search"),
        str(youtube),
        frozenset(chosen),
        str(mode),
    )


def parse_learning_games(raw: Raw) -> bool:
    """The child page's "learning games stay open" switch (its own form: unticked = off)."""
    return _flag(raw, "learning_games")


@dataclass(frozen=True, slots=True)
class ScheduleForm:
    name: str
    kind: str
    weekdays: frozenset[int]
    start: time
    end: time
    categories: frozenset[str]


def _time(c: Checker, field: str) -> time | None:
    value = c.text(field, max_len=5)
    if not value:
        return None
    m = HHMM_RE.match(value)
    if not m:
        c.add(field, "err.time")
        return None
    return time(int(m.group(1)), int(m.group(2)))


def parse_schedule(raw: Raw, categories: Collection[str]) -> ScheduleForm:
    c = Checker(raw)
    name = c.text("name", max_len=40)
    kind = raw.get("kind", "bedtime")
    if kind not in ("bedtime", "school"):
        c.add("kind", "err.choice")
    days: set[int] = set()
    for d in _list(raw, "weekdays"):
        if d.isdigit() and 0 <= int(d) <= 6:
            days.add(int(d))
        else:
            c.add("weekdays", "err.choice")
    if not days:
        c.add("weekdays", "err.weekdays")
    start, end = _time(c, "start"), _time(c, "end")
    if start is not None and end is not None and start == end:
        c.add("end", "err.same_time")
    cats = set(_list(raw, "categories"))
    if not cats <= set(categories):
        c.add("categories", "err.choice")
    if kind == "school" and not cats:
        c.add("categories", "err.school_categories")
    c.done()
    assert start is not None and end is not None
    return ScheduleForm(name, str(kind), frozenset(days), start, end, frozenset(cats))


@dataclass(frozen=True, slots=True)
class ExceptionForm:
    name: str
    first_day: date
    last_day: date
    child_ids: frozenset[int]


def parse_exception(raw: Raw, child_ids: Collection[int]) -> ExceptionForm:
    c = Checker(raw)
    name = c.text("name", max_len=40)
    first = parse_date(c, "first_day")
    last = parse_date(c, "last_day")
    if first is not None and last is not None:
        if last < first:
            c.add("last_day", "err.date_order")
        elif (last - first).days > 366:
            c.add("last_day", "err.date_range")
    ids: set[int] = set()
    for v in _list(raw, "children"):
        if v.isdigit() and int(v) in child_ids:
            ids.add(int(v))
        else:
            c.add("children", "err.choice")
    c.done()
    assert first is not None and last is not None
    return ExceptionForm(name, first, last, frozenset(ids))


# devices -------------------------------------------------------------------------------


def parse_owner(raw: Raw, child_ids: Collection[int]) -> int | str | None:
    """'adults', a child id, or '' (not assigned). JSON may send {child: id} or {adults: true}."""
    if _flag(raw, "adults"):
        return "adults"
    field = "owner" if "owner" in raw else "child"
    value = raw.get(field)
    if value is None or value == "":
        return None
    if value == "adults":
        return "adults"
    if isinstance(value, bool):
        raise fail(field, "err.choice")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or value not in child_ids:
        raise fail(field, "err.no_child")
    return value


def parse_device_name(raw: Raw) -> str:
    c = Checker(raw)
    name = c.text("name", max_len=60)
    c.done()
    return name


def parse_address(value: str) -> str:
    """A device identifier (IP, IPv6 /64, MAC in any usual spelling) by
    policy.names.device_identifier, as the store keeps it."""
    try:
        return device_identifier(value)
    except BadName:
        raise fail("address", "err.address") from None


# feeds ---------------------------------------------------------------------------------


def parse_feed(
    raw: Raw,
    *,
    categories: Collection[str],
    existing: Collection[str],
    allow_http: bool,
    allow_loopback: bool,
) -> Feed:
    """A feed added in the web UI or API, by blocklists.feed.feed_from_dict (the same checks
    as the operator's YAML, with the web UI's URL rules); the first bad field is named."""
    c = Checker(raw)
    fields: dict[str, object] = {}
    for name in ("name", "url", "format", "category", "sha256", "signature"):
        value = c.text(name, max_len=2000, required=False)
        if value:
            fields[name] = value
    c.done()
    rules = UrlRules(allow_http=allow_http, allow_loopback=allow_loopback)
    try:
        feed = feed_from_dict(fields, rules=rules, categories=categories)
    except BadFeed as e:
        raise fail(e.field, e.key) from None
    if feed.name in existing:
        raise fail("name", "err.feed_exists")
    return feed


# settings ------------------------------------------------------------------------------


def parse_unknown_devices(raw: Raw, child_names: Collection[str]) -> str | None:
    """What new/unassigned devices get: 'strictest', 'adults' or a child's name.
    None when the field is absent (keep the current choice)."""
    if "unknown_devices" not in raw:
        return None
    value = raw.get("unknown_devices")
    if value in ("strictest", "adults") or (isinstance(value, str) and value in child_names):
        return str(value)
    raise fail("unknown_devices", "err.choice")


def parse_household(raw: Raw, modes: Collection[str]) -> tuple[str, int, str]:
    c = Checker(raw)
    mode = raw.get("block_answer", "")
    if mode not in modes:
        c.add("block_answer", "err.choice")
    days_raw = raw.get("retention_days", "")
    days = 0
    if isinstance(days_raw, int) and not isinstance(days_raw, bool):
        days = days_raw
    elif isinstance(days_raw, str) and days_raw.strip().isdigit():
        days = int(days_raw.strip())
    else:
        c.add("retention_days", "err.number")
    if "retention_days" not in c.errors and not 1 <= days <= 365:
        c.add("retention_days", "err.retention")
    lang = raw.get("lang", "vi")
    if lang not in ("vi", "en"):
        c.add("lang", "err.choice")
    c.done()
    return str(mode), days, str(lang)


def parse_token_name(raw: Raw) -> str:
    c = Checker(raw)
    name = c.text("name", max_len=40)
    c.done()
    return name
