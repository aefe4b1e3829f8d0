"""The name rater: rate a name that no list knows from the words in its own labels.

`NameRater.rate("hot-milf-cams.example")` -> `Match("adult", ..., source="name-rater",
rule="name contains 'milf', 'hot', 'cams'", confidence=0.92)`.

How a name is read:
1. Only the *registrable* part is read: the label left of the public suffix (tldextract's bundled
   Public Suffix List snapshot, never fetched), plus the suffix itself (".xxx", ".casino").
   Subdomain labels are not read: "vpn.company.example" or "sex.some-clinic.example" say
   little about the site, and reading them would make the result depend on names attackers
   and CDNs invent freely. One rating per registrable domain also keeps the cache small.
2. The label is normalised: an `xn--` label is decoded, diacritics are dropped (Vietnamese
   "phimsếx" -> "phimsex", "đ" -> "d") and Cyrillic is transliterated ("порно" -> "porno").
3. It is split on '-' and '_' and then into words by dynamic programming over word costs
   (Viterbi, as wordninja does): cost(word) = log(rank * log(N)) on an English frequency list
   plus the rater's own words. A long real word costs less than the short words inside it, so
   "essex", "therapist", "analytics", "scunthorpe" and "dickssportinggoods"
   (dicks + sporting + goods) never expose "sex", "rapist", "anal", "cunt" or "dick" as words.
   Bare substring search would.
4. Each word carries weights per category (blocklists/data/rater-words.txt). A category
   fires when its distinct words add up to >= 1.0: "porn" fires alone, "hot" + "girls" +
   "cams" fire together, "sex" + "education" does not. A run of digits is a little evidence
   ("<num>"), more when it is glued to a gambling word in the same piece ("<num-beside>": "win79",
   "888win", "lucky88", the betting-mirror shape), so a weak word and its number fire together.
   Categories are tried in order adult, gambling, dating, drugs, bypass: the first that fires is
   the rating.

The rating is its own source ("name-rater") with a confidence; `min_age` is a placeholder
that `RatedIndex` fills from the catalogue's category ages. `RatedIndex` wraps any `Index`:
the rater runs once per new name (bounded cache), never for popular sites, and never when a
list already rated the name in one of the rater's categories or vouched for it (exception).
"""

from __future__ import annotations

import gzip
import logging
import math
import unicodedata
from collections.abc import Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Final

import tldextract

from policy.model import Index, Match

log = logging.getLogger(__name__)

SOURCE: Final = "name-rater"
CATEGORIES: Final = ("adult", "gambling", "dating", "drugs", "bypass")
DEFAULT_AGES: Final[Mapping[str, int]] = {
    "adult": 18,
    "gambling": 18,
    "dating": 18,
    "drugs": 18,
    "bypass": 18,
}

# Top-level domains that are evidence by themselves (weight 1.0 unless noted).
_TLD_WEIGHTS: Final[Mapping[str, tuple[str, float]]] = {
    "xxx": ("adult", 1.0),
    "porn": ("adult", 1.0),
    "sex": ("adult", 1.0),
    "adult": ("adult", 1.0),
    "sexy": ("adult", 0.6),
    "casino": ("gambling", 1.0),
    "bet": ("gambling", 1.0),
    "poker": ("gambling", 1.0),
    "bingo": ("gambling", 0.6),
    "lotto": ("gambling", 0.6),
    "dating": ("dating", 1.0),
}

_RANK_RATER_WORD: Final = 3000  # rater words split out like a common English word
_RANK_HELPER_WORD: Final = 8000  # "word 0" entries (names, foreign words)
_DIGITS_COST: Final = 6.0  # a run of digits is one token
_UNKNOWN_COST: Final = 30.0  # a letter no word covers
_MAX_WORD: Final = 20  # longer words are never looked up (bounds the work per label)
_THRESHOLD: Final = 1.0
_SHORT: Final = 4  # weak words this short need a real word or a boundary on both sides
_NUMBER: Final = "<num>"  # the rater-words.txt entry standing for any run of digits
_BESIDE: Final = "<num-beside>"  # more, when the digits touch an evidence word ('win79', '888win')
_INSTITUTIONAL_TLDS: Final = frozenset({"gov", "edu", "mil", "int"})
_INSTITUTIONAL_SLDS: Final = frozenset(
    {"gov", "govt", "gouv", "gob", "go", "edu", "ac", "sch", "k12", "mil", "police", "school"}
)

# Cyrillic -> Latin, the common web transliteration (as in "prostitutki", "znakomstva").
_CYRILLIC: Final[Mapping[str, str]] = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
    "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "h", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "sch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya", "і": "i",
    "ї": "i", "є": "e", "ґ": "g",
}  # fmt: skip
_TRANSLATE: Final = str.maketrans({"đ": "d", "ð": "d", "ø": "o", "ł": "l", "ß": "ss", **_CYRILLIC})


class RaterError(Exception):
    """The rater's word data is missing or malformed."""


@dataclass(frozen=True, slots=True)
class Rating:
    """What the rater read in a name: its words and the categories' scores."""

    words: tuple[str, ...]
    scores: Mapping[str, float]
    fired: tuple[str, ...]  # the winning category's evidence words, strongest first
    category: str | None
    confidence: float


class _Lexicon:
    """Word costs for splitting, and word weights per category. Built once, then read-only."""

    def __init__(self, english: Iterable[str], rater_lines: Iterable[str]) -> None:
        words = [w for w in english if w and not w.startswith("#")]
        if not words:
            raise RaterError("rater-english word list is empty")
        log_n = math.log(len(words))
        cost: dict[str, float] = {}
        for rank, word in enumerate(words, start=1):
            if len(word) <= _MAX_WORD:
                cost.setdefault(word, math.log(rank * log_n))
        weights: dict[str, dict[str, float]] = {}
        rater_cost = math.log(_RANK_RATER_WORD * log_n)
        helper_cost = math.log(_RANK_HELPER_WORD * log_n)
        for lineno, raw in enumerate(rater_lines, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) < 3:
                raise RaterError(f"rater-words.txt:{lineno}: want '<category> <weight> <word>...'")
            category, weight_text, *entries = parts
            try:
                weight = float(weight_text)
            except ValueError:
                raise RaterError(f"rater-words.txt:{lineno}: bad weight {weight_text!r}") from None
            for entry in entries:
                word = entry.lower().replace("_", "")
                if len(word) > _MAX_WORD:
                    raise RaterError(f"rater-words.txt:{lineno}: word longer than {_MAX_WORD}")
                if category == "word":
                    cost[word] = min(cost.get(word, helper_cost), helper_cost)
                    continue
                if weight > 0:
                    cost[word] = min(cost.get(word, rater_cost), rater_cost)
                elif word not in cost:
                    cost[word] = helper_cost
                weights.setdefault(word, {})[category] = weight
        self.cost = cost
        self.weights = {w: dict(c) for w, c in weights.items()}

    def split(self, text: str) -> list[str]:
        """The cheapest split of `text` ([a-z0-9]*) into words; digit runs stay whole."""
        n = len(text)
        if n == 0:
            return []
        cost = self.cost
        best = [0.0] * (n + 1)
        back = [1] * (n + 1)
        for i in range(1, n + 1):
            bc = math.inf
            bk = 1
            for k in range(1, min(i, _MAX_WORD) + 1):
                piece = text[i - k : i]
                c = cost.get(piece)
                if c is None:
                    if piece.isdigit():
                        c = _DIGITS_COST
                    elif k == 1:
                        c = _UNKNOWN_COST
                    else:
                        continue
                c += best[i - k]
                if c < bc:
                    bc = c
                    bk = k
            best[i] = bc
            back[i] = bk
        out: list[str] = []
        i = n
        while i > 0:
            k = back[i]
            out.append(text[i - k : i])
            i -= k
        out.reverse()
        return out


_lexicon_cache: _Lexicon | None = None


def _load_lexicon() -> _Lexicon:
    global _lexicon_cache
    if _lexicon_cache is None:
        pkg = resources.files("blocklists") / "data"
        try:
            with (pkg / "rater-english.txt.gz").open("rb") as raw, gzip.open(raw, "rt") as f:
                english = f.read().split("\n")
            rater_lines = (pkg / "rater-words.txt").read_text(encoding="utf-8").splitlines()
        except (OSError, EOFError) as e:
            raise RaterError(f"cannot read the rater's word lists: {e}") from e
        _lexicon_cache = _Lexicon(english, rater_lines)
        log.debug(
            "name rater: %d words, %d rated", len(_lexicon_cache.cost), len(_lexicon_cache.weights)
        )
    return _lexicon_cache


_extractor: tldextract.TLDExtract | None = None


def _tld_extract() -> tldextract.TLDExtract:
    """tldextract on its bundled PSL snapshot: no suffix_list_urls, no cache dir, no network."""
    global _extractor
    if _extractor is None:
        _extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    return _extractor


def split_name(qname: str) -> tuple[str, str]:
    """(registrable label, public suffix) of a canonical name; ("", suffix) if none."""
    parts = _tld_extract()(qname)
    return parts.domain, parts.suffix


def registrable_domain(qname: str) -> str | None:
    """'a.b.example.co.uk' -> 'example.co.uk'; None for a bare public suffix ('co.uk')."""
    parts = _tld_extract()(qname)
    if not parts.domain:
        return None
    return f"{parts.domain}.{parts.suffix}" if parts.suffix else parts.domain


def normalise_label(label: str) -> str:
    """A label as plain [a-z0-9-] text: IDN decoded, diacritics dropped, Cyrillic romanised."""
    if label.startswith("xn--"):
        try:
            label = label[4:].encode("ascii").decode("punycode")
        except (UnicodeError, ValueError):
            return label
    if label.isascii():
        return label
    text = label.lower().translate(_TRANSLATE)
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if ch.isascii() and not unicodedata.combining(ch))


def _institutional(suffix: str) -> bool:
    """Government, military and school suffixes (gov.au, ac.uk, .edu): registration is vetted,
    so words like 'affairs' or 'sex' in 'homeaffairs.gov.au' or 'sexualhealth.edu' are no sign."""
    labels = suffix.split(".")
    if labels[-1] in _INSTITUTIONAL_TLDS:
        return True
    return len(labels) >= 2 and any(label in _INSTITUTIONAL_SLDS for label in labels[:-1])


def _enough(evidence: list[tuple[float, str]]) -> tuple[str, ...]:
    """The strongest words that carry the score past the threshold (the parent's "why")."""
    out: list[str] = []
    total = 0.0
    for weight, word in sorted(evidence, key=lambda e: -e[0]):
        out.append(word)
        total += weight
        if total >= _THRESHOLD - 1e-9:
            break
    return tuple(out)


def _beside_a_letter(words: Sequence[str], i: int) -> bool:
    """Whether words[i] has a lone letter next to it (not a digit, nor the words a and i)."""
    for j in (i - 1, i + 1):
        if 0 <= j < len(words) and len(words[j]) == 1 and words[j] not in "0123456789ai":
            return True
    return False


class NameRater:
    """Rate names from their own words. Deterministic; no I/O after construction."""

    def __init__(self, *, categories: Collection[str] = CATEGORIES) -> None:
        unknown = set(categories) - set(CATEGORIES)
        if unknown:
            raise RaterError(f"the rater has no words for: {', '.join(sorted(unknown))}")
        self._order = tuple(c for c in CATEGORIES if c in categories)
        self._lex = _load_lexicon()
        _tld_extract()  # build now, not on the first query

    @property
    def categories(self) -> tuple[str, ...]:
        return self._order

    def words(self, qname: str) -> tuple[str, ...]:
        """The words the rater reads in a name's registrable label (for 'lists check')."""
        label, _suffix = split_name(qname)
        return tuple(self._words(label))

    def _words(self, label: str) -> list[str]:
        return [w for piece in self._pieces(label) for w in piece]

    def _pieces(self, label: str) -> list[list[str]]:
        """The label's words, per piece between hyphens (or other non-[a-z0-9] characters)."""
        text = normalise_label(label)
        out: list[list[str]] = []
        for chunk in text.replace("_", "-").split("-"):
            if chunk.isalnum() and chunk.isascii():
                out.append(self._lex.split(chunk))
            elif chunk:  # '\DDD' escapes or leftovers: split on anything that is not [a-z0-9]
                clean = "".join(ch if ch.isascii() and ch.isalnum() else " " for ch in chunk)
                out.extend(self._lex.split(piece) for piece in clean.split())
        return out

    def explain(self, qname: str) -> Rating:
        """The full reading of a name: words, every category's score, the rating."""
        label, suffix = split_name(qname)
        if _institutional(suffix):
            return Rating((), {}, (), None, 0.0)
        pieces = self._pieces(label) if label else []
        words = [w for piece in pieces for w in piece]
        piece_of = [n for n, piece in enumerate(pieces) for _ in piece]
        scores: dict[str, float] = {}
        evidence: dict[str, list[tuple[float, str]]] = {}
        weights = self._lex.weights
        seen: set[str] = set()
        counted: dict[int, str] = {}  # index -> key of the words that count
        for i, word in enumerate(words):
            key = _NUMBER if word.isdigit() and word not in weights else word
            if key in seen or key not in weights:
                continue
            if (
                len(word) <= _SHORT
                and not word.isdigit()
                and max(weights[key].values()) < 1.0
                and _beside_a_letter(words, i)
            ):
                continue  # "a"+"kush"+"erst": a weak short word amid junk is chance
            seen.add(key)
            counted[i] = key
            for category, weight in weights[key].items():
                scores[category] = scores.get(category, 0.0) + weight
                if weight > 0 and key != _NUMBER:
                    evidence.setdefault(category, []).append((weight, f"'{word}'"))
        for category, weight in weights.get(_BESIDE, {}).items():
            # a digit run glued to an evidence word: the mirror-brand shape ('win79', '888win')
            for i, word in enumerate(words):
                if not word.isdigit():
                    continue
                glued = [
                    j
                    for j in (i - 1, i + 1)
                    if 0 <= j < len(words)
                    and piece_of[j] == piece_of[i]
                    and not words[j].isdigit()
                    and weights.get(counted.get(j, ""), {}).get(category, 0.0) > 0
                ]
                if glued:
                    j = glued[0]
                    text = words[j] + word if j < i else word + words[j]
                    scores[category] = scores.get(category, 0.0) + weight
                    evidence.setdefault(category, []).append((weight, f"'{text}'"))
                    break
        top = suffix.rsplit(".", 1)[-1] if suffix else ""
        if top in _TLD_WEIGHTS:
            category, weight = _TLD_WEIGHTS[top]
            scores[category] = scores.get(category, 0.0) + weight
            evidence.setdefault(category, []).append((weight, f"'.{top}'"))
        for category in self._order:
            score = scores.get(category, 0.0)
            if score >= _THRESHOLD - 1e-9:
                fired = _enough(evidence[category])
                confidence = round(1.0 - 0.5 * 0.35**score, 2)
                return Rating(tuple(words), scores, fired, category, confidence)
        return Rating(tuple(words), scores, (), None, 0.0)

    def rate(self, qname: str) -> Match | None:
        """A Match from the name alone, or None when its words are not evidence enough."""
        rating = self.explain(qname)
        if rating.category is None:
            return None
        return Match(
            category=rating.category,
            min_age=DEFAULT_AGES[rating.category],
            source=SOURCE,
            exception=False,
            rule="name contains " + ", ".join(rating.fired),
            confidence=rating.confidence,
        )


_MISS: Final = Match("", 0, "")  # cache sentinel: "not looked up yet"


class RatedIndex:
    """An Index that adds the rater's Match to names no list rated.

    lookup(qname) returns the base matches, plus the rater's Match when
    - no base match is an exception (an allow rule: someone vouched for the name), and
    - no base match is in a category the rater covers (a list entry is better evidence: a
      name listed as "games" can still be rated "adult", one listed "adult" is not rated), and
    - the name's registrable domain is not popular (a ranked site needs a list entry).
    The rater runs once per registrable domain; results are kept per name and per registrable
    domain in bounded caches evicted oldest-first in batches, so a cached lookup costs one
    dict probe over the base lookup.
    """

    def __init__(
        self,
        base: Index,
        rater: NameRater | None,
        *,
        category_ages: Mapping[str, int],
        popular: Container[str] = frozenset(),
        cache_size: int = 100_000,
    ) -> None:
        self._base = base
        self._rater = rater
        self._covered = frozenset(rater.categories) if rater is not None else frozenset()
        self._ages = dict(category_ages)
        self._popular = popular
        self._size = max(cache_size, 16)
        self._by_name: dict[str, Match | None] = {}
        self._by_domain: dict[str, Match | None] = {}
        self.rated = 0  # how many times the rater ran (for tests and metrics)

    @property
    def base(self) -> Index:
        return self._base

    def rebased(self, base: Index) -> RatedIndex:
        """The same rater, ages, popular set and caches over a new base index.

        For list syncs: ratings depend only on the name, so a new index need not re-rate.
        """
        other = RatedIndex(
            base,
            self._rater,
            category_ages=self._ages,
            popular=self._popular,
            cache_size=self._size,
        )
        other._by_name = self._by_name
        other._by_domain = self._by_domain
        return other

    def lookup(self, qname: str) -> tuple[Match, ...]:
        matches = self._base.lookup(qname)
        if self._rater is None:
            return matches if type(matches) is tuple else tuple(matches)
        if matches:
            covered = self._covered
            for m in matches:
                if m.exception or m.category in covered:
                    return matches if type(matches) is tuple else tuple(matches)
        hit = self._by_name.get(qname, _MISS)
        if hit is _MISS:
            hit = self._rate(qname)
        if hit is None:
            return matches if type(matches) is tuple else tuple(matches)
        return (*matches, hit)

    def _rate(self, qname: str) -> Match | None:
        domain = registrable_domain(qname)
        result: Match | None = None
        if domain is not None and domain not in self._popular and qname not in self._popular:
            cached = self._by_domain.get(domain, _MISS)
            if cached is _MISS:
                result = self._rate_domain(domain)
                self._remember(self._by_domain, domain, result)
            else:
                result = cached
        self._remember(self._by_name, qname, result)
        return result

    def _rate_domain(self, domain: str) -> Match | None:
        assert self._rater is not None
        self.rated += 1
        match = self._rater.rate(domain)
        if match is None:
            return None
        age = self._ages.get(match.category, DEFAULT_AGES.get(match.category, 18))
        return replace(match, min_age=age)

    def _remember(self, cache: dict[str, Match | None], key: str, value: Match | None) -> None:
        if len(cache) >= self._size:
            drop = max(self._size // 10, 1)
            for old in list(islice(cache, drop)):
                del cache[old]
        cache[key] = value


def _shipped_names(file: str, path: Path | str | None, what: str) -> list[str]:
    """The names of a one-name-a-line list (`#` comments), lower-cased, in file order: the
    shipped blocklists/data/`file`, or `path`."""
    try:
        if path is None:
            text = (resources.files("blocklists") / "data" / file).read_text("utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise RaterError(f"cannot read the {what}: {e}") from e
    names = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return [n for n in names if n]


def load_popular(path: Path | str | None = None) -> frozenset[str]:
    """The popular registrable domains (blocklists/data/popular.txt unless `path` is given)."""
    return frozenset(_shipped_names("popular.txt", path, "popular-domains list"))


def load_education(path: Path | str | None = None) -> tuple[str, ...]:
    """The curated education and kids allow set (blocklists/data/education.txt), in file order.

    The file is in `domains` format with comments; feed it to the index as category
    "education" with exception=True (see blocklists/data/education.txt for each entry's source).
    """
    return tuple(dict.fromkeys(_shipped_names("education.txt", path, "education allow set")))


def education_matches(names: Sequence[str], *, source: str = "education") -> dict[str, Match]:
    """name -> the allow-exception Match the index should hold for it (category "education")."""
    return {
        n: Match(category="education", min_age=0, source=source, exception=True, rule=n)
        for n in names
    }
