"""policy/memo.py: a bounded memo forgets one oldest entry per new one, never all at once."""

from __future__ import annotations

import pytest

from policy.memo import Memo


def test_a_full_memo_forgets_only_its_oldest_entry() -> None:
    memo: Memo[str, int] = Memo(3)
    for i, name in enumerate(("a", "b", "c")):
        assert memo.put(name, i) == i
    memo.put("d", 3)
    assert list(memo) == ["b", "c", "d"]  # one forgotten, the oldest; the rest kept
    assert memo.get("a") is None and memo.get("d") == 3
    memo.put("b", 9)  # a new value for a known key is not a new entry
    assert list(memo.items()) == [("b", 9), ("c", 2), ("d", 3)]


def test_a_stream_of_new_names_keeps_the_memo_at_its_bound() -> None:
    memo: Memo[str, str] = Memo(1000)
    for i in range(5000):
        memo.put(f"ad{i}.example", "blocked")
        assert len(memo) == min(i + 1, 1000)  # never emptied: the last 1000 are all there
    assert all(f"ad{i}.example" in memo for i in range(4000, 5000))


def test_a_memo_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Memo(0)
