"""The household's local list: the rating CSV nestguard writes, and the overlay that puts a
decision in force before the index is rebuilt."""

from __future__ import annotations

from pathlib import Path

from blocklists.local import LocalList, LocalOverlay, local_match, rating_csv
from blocklists.parse import parse
from policy.model import Match


class Fixed:
    def __init__(self, matches: dict[str, list[Match]]) -> None:
        self.matches = matches

    def lookup(self, qname: str) -> list[Match]:
        return list(self.matches.get(qname, []))


def test_lines_replace_by_domain_and_parse_back(tmp_path: Path) -> None:
    lst = LocalList(tmp_path / "local-ratings.csv")
    lst.ensure()
    lst.add("bad.example", "gambling", 18, "from a child")
    lst.add("worse.example", "adult", None, 'says "hi",\nthen more')
    lst.add("bad.example", "adult", 18, "changed")
    assert [e[:3] for e in lst.entries()] == [("worse.example", "adult", None),
                                              ("bad.example", "adult", 18)]
    result = parse(lst.path.read_text(), "rating", categories=["adult", "gambling"])
    assert result.rejected_count == 0
    assert rating_csv([("a.example", "scam", 99, "x")]).splitlines()[1] == "a.example,scam,99,x"


def test_overlay_matches_subdomains_once() -> None:
    entry = local_match("bad.example", "gambling", 18)
    overlay = LocalOverlay(Fixed({}), {"bad.example": entry})
    assert overlay.lookup("www.bad.example") == [entry]
    assert overlay.lookup("notbad.example") == []
    # once the rebuilt index has the local line itself, it is not matched twice
    inner = Fixed({"bad.example": [entry]})
    assert LocalOverlay(inner, {"bad.example": entry}).lookup("bad.example") == [entry]


def test_the_local_list_may_be_empty_or_shrink(tmp_path: Path) -> None:
    """nestguard writes the local list itself: empty (nothing reported yet) or shrunk by an
    admin is not a broken download, while a downloaded feed doing the same is refused."""
    from blocklists.verify import Candidate, judge

    files = {"body": tmp_path / "b", "text": tmp_path / "t", "final": tmp_path / "f"}
    empty = parse("domain,category,min_age,note\n", "rating")
    one = parse("domain,category,min_age,note\nbad.example,adult,18,\n", "rating")
    assert judge(empty, Candidate(**files, own=True)) == ""
    assert judge(one, Candidate(**files, own=True, last_entries=10)) == ""
    assert "no usable entries" in judge(empty, Candidate(**files))
    assert "under half" in judge(one, Candidate(**files, last_entries=10))
