"""Safe search: which names are answered with a CNAME to the engine's restricted front end.

`safe_search_target(qname, search=True, youtube="moderate")` -> "forcesafesearch.google.com"
for "www.google.com.vn", None for names that are not a search front end. One dict lookup.

- Google: www.google.<d> and google.<d> for every Google search domain in
  data/google_domains.txt (Google's supported_domains list) -> forcesafesearch.google.com.
- Bing: www.bing.com, bing.com -> strict.bing.com.
- DuckDuckGo: duckduckgo.com, www., start. -> safe.duckduckgo.com.
- YouTube (its own switch, `youtube` "strict" | "moderate" | "off"): www.youtube.com,
  m.youtube.com, youtubei.googleapis.com, youtube.googleapis.com, www.youtube-nocookie.com ->
  restrict.youtube.com (strict) or restrictmoderate.youtube.com (moderate).

Names are canonical (lower-case, no trailing dot). Only exact names are rewritten: a
subdomain such as images.google.com is left to the lists.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

GOOGLE_TARGET: Final = "forcesafesearch.google.com"
BING_TARGET: Final = "strict.bing.com"
DUCKDUCKGO_TARGET: Final = "safe.duckduckgo.com"
YOUTUBE_TARGETS: Final = {
    "strict": "restrict.youtube.com",
    "moderate": "restrictmoderate.youtube.com",
}
YOUTUBE_NAMES: Final = frozenset(
    {
        "www.youtube.com",
        "m.youtube.com",
        "youtubei.googleapis.com",
        "youtube.googleapis.com",
        "www.youtube-nocookie.com",
    }
)


def _google_suffixes() -> list[str]:
    text = resources.files("policy").joinpath("data/google_domains.txt").read_text("utf-8")
    out = []
    for line in text.splitlines():
        line = line.strip().lower()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _search_targets() -> dict[str, str]:
    table: dict[str, str] = {}
    for suffix in _google_suffixes():
        table[f"google.{suffix}"] = GOOGLE_TARGET
        table[f"www.google.{suffix}"] = GOOGLE_TARGET
    for name in ("www.bing.com", "bing.com"):
        table[name] = BING_TARGET
    for name in ("duckduckgo.com", "www.duckduckgo.com", "start.duckduckgo.com"):
        table[name] = DUCKDUCKGO_TARGET
    return table


SEARCH_TARGETS: Final = _search_targets()


def safe_search_target(qname: str, *, search: bool, youtube: str) -> str | None:
    """The CNAME target forcing safe search for `qname`, or None."""
    if search:
        target = SEARCH_TARGETS.get(qname)
        if target is not None:
            return target
    if youtube != "off" and qname in YOUTUBE_NAMES:
        return YOUTUBE_TARGETS.get(youtube, YOUTUBE_TARGETS["strict"])
    return None
