"""Vietnamese and English catalogues (webui/i18n/<lang>.json) and the request's language."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

LANGS = ("vi", "en")
CATALOGUE_DIR = Path(__file__).parent / "i18n"


def load_catalogues() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for lang in LANGS:
        with open(CATALOGUE_DIR / f"{lang}.json", encoding="utf-8") as f:
            data = json.load(f)
        out[lang] = {str(k): str(v) for k, v in data.items()}
    return out


class Translator:
    """t("home.title") or t("home.queries", n=3): the text in one language (en as fallback)."""

    def __init__(self, lang: str, catalogues: Mapping[str, Mapping[str, str]]) -> None:
        self.lang = lang if lang in catalogues else "vi"
        self._cat = catalogues[self.lang]
        self._fallback = catalogues.get("en", {})

    def __call__(self, key: str, **params: object) -> str:
        text = self._cat.get(key)
        if text is None:
            log.warning("missing %s translation for %r", self.lang, key)
            text = self._fallback.get(key, key)
        if params:
            try:
                return text.format(**params)
            except (KeyError, IndexError, ValueError):
                log.warning("bad parameters for %r", key)
                return text
        return text

    def has(self, key: str) -> bool:
        return key in self._cat


def pick_lang(cookie: str | None, household: str, accept: str = "") -> str:
    """The cookie's choice (the language switch), else the browser's first language when
    it is one of ours (Accept-Language: a parent's first visit, setup included, reads in
    the phone's language), else the household's setting."""
    if cookie in LANGS:
        return str(cookie)
    for part in accept.split(","):
        tag = part.split(";", 1)[0].strip().lower()
        if not tag or tag == "*":
            continue
        primary = tag.split("-", 1)[0]
        return primary if primary in LANGS else (household if household in LANGS else "vi")
    return household if household in LANGS else "vi"
