"""Checks against the real public data set (skipped when /work/shared/data is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from policy.safesearch import GOOGLE_TARGET, SEARCH_TARGETS

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("NESTGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))
TOP = DATA / "popular" / "faf-dns-bench" / "data" / "top-65535.csv"
NOT_GOOGLE_SEARCH = {"google.github.io"}  # Google's GitHub pages, not a search front end


def test_every_popular_google_search_domain_is_forced_safe() -> None:
    if not TOP.exists():
        pytest.skip(f"shared data not found at {DATA}")
    names = []
    with TOP.open(encoding="utf-8") as f:
        for line in f:
            name = line.strip().partition(",")[2].lower()
            if name.startswith("google.") and name not in NOT_GOOGLE_SEARCH:
                names.append(name)
    assert len(names) > 100  # the ranking holds many Google country domains
    missing = [n for n in names if SEARCH_TARGETS.get(n) != GOOGLE_TARGET]
    assert missing == []
    assert all(SEARCH_TARGETS.get(f"www.{n}") == GOOGLE_TARGET for n in names)
