"""Every translation key a template uses exists in vi.json and en.json, including the keys
templates build from a value (t('format.' + f)): each such prefix is listed here with the
values it can take, so a new value (a feed format, a rule kind) without words fails here
instead of showing `format.wildcard` to a parent."""

from __future__ import annotations

import re
from pathlib import Path

import webui
from blocklists.feed import FORMATS
from policy.store import REPORT_KINDS, RULE_KINDS
from webui.alerts import EVENTS, PRESETS, SECURITIES
from webui.app import BLOCK_MODES
from webui.auth import ROLES
from webui.forms import APPROVAL_MINUTES
from webui.i18n import LANGS, load_catalogues

TEMPLATES = Path(webui.__file__).parent / "templates"

# prefix -> the values a template may append to it
DYNAMIC: dict[str, tuple[str, ...]] = {
    "format.": FORMATS,
    "rule.": RULE_KINDS,
    "role.": ROLES,
    "lang.": LANGS,
    "block_mode.": tuple(BLOCK_MODES),
    "status.": ("pending", "approved", "declined"),
    "kind.": ("bedtime", "school"),
    "day.short.%d": tuple(str(d) for d in range(7)),
    "duration.%d": tuple(str(m) for m in APPROVAL_MINUTES if m in (0, 30, 60, 1440)),
    "alerts.channel.": ("email", "webhook"),
    "alerts.event.": tuple(EVENTS),
    "alerts.preset.": PRESETS,
    "alerts.security.": SECURITIES,
    "report.kind.": REPORT_KINDS,
    "reports.by.": ("child", "parent"),
    "reports.status.": ("open", "listed", "excepted", "dismissed"),
    # the audit page falls back to the action's own name (t.has), so it is not listed
}
GUARDED = {"audit."}

STATIC_RE = re.compile(r"""\bt\(\s*'([a-z_]+(?:\.[a-z_0-9]+)+)'\s*[,)]""")
DYNAMIC_RE = re.compile(r"""\bt\(\s*'([a-z_.%d]+)'\s*[+%]""")


def _used() -> tuple[set[str], set[str]]:
    static: set[str] = set()
    dynamic: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text()
        static |= set(STATIC_RE.findall(text))
        dynamic |= set(DYNAMIC_RE.findall(text))
    return static, dynamic


def test_every_template_key_exists_in_both_languages() -> None:
    cats = load_catalogues()
    static, dynamic = _used()
    assert static, "no keys found: the pattern no longer matches the templates"
    unknown = sorted(dynamic - set(DYNAMIC) - GUARDED)
    assert not unknown, f"list the values of these built keys in DYNAMIC: {unknown}"
    wanted = set(static)
    for prefix in dynamic - GUARDED:
        for value in DYNAMIC[prefix]:
            wanted.add(prefix % int(value) if "%d" in prefix else prefix + value)
    for lang in ("vi", "en"):
        missing = sorted(k for k in wanted if k not in cats[lang])
        assert not missing, f"{lang}.json lacks {missing}"


def test_the_feed_formats_have_words() -> None:
    """The Lists page's format choice showed `format.wildcard`, `format.dnsmasq` raw."""
    cats = load_catalogues()
    for fmt in ("wildcard", "dnsmasq", "unbound"):
        assert f"format.{fmt}" in cats["vi"] and f"format.{fmt}" in cats["en"]
