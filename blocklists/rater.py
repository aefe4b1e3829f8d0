"""The name rater: rate a name that no list knows from the words in its own labels.

`NameRater.rate("hot-milf-cams.net")` -> `Match("adult", ..., source="name-rater",
rule="name contains 'milf' 1.0", confidence=0.92)`: each word with its share of the 1.0 it
takes to fire (the parent's "why").

How a name is read:
1. Only the *registrable* part is read: the label left of the public suffix (tldextract's bundled
   Public Suffix List snapshot, never fetched, private section included: on "my-site.pages.dev"
   or "x.github.io" the site's own label is read, and a platform alone is never rated), plus
   the suffix itself (".xxx", ".casino").
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
   Bare substring search would. When the cheapest split is doubtful (a stray letter, a rare
   word) and breaks a word that fires alone, the split that keeps that word whole wins if it
   costs little more and leaves only plain words beside it ("freesexup": free + sex + up, not
   frees + exup; "betaarchive" stays beta + archive).
4. Each word carries weights per category (blocklists/data/rater-words.txt). A category
   fires when its distinct words add up to >= 1.0: "porn" fires alone, "hot" + "girls" +
   "cams" fire together, "sex" + "education" does not. A run of digits is a little evidence
   ("<num>"), more when it is glued to a gambling word in the same piece ("<num-beside>": "win79",
   "888win", "lucky88", the betting-mirror shape), so a weak word and its number fire together.
   Categories are tried in order adult, gambling, dating, drugs, bypass: the first that fires is
   the rating.
5. If no hand-written category fires, the learned layer (blocklists/data/rater_weights.tsv,
   fitted by tests/bench/train_rater.py) may: per-feature weights (words, neighbouring word
   pairs, digit runs, the top-level domain) against a threshold per category, where words must
   bring at least half the evidence. It never undoes a hand-written decision: no learned weight
   where a hand word pulls a category back or is marked innocent ("word 0"), and a word made
   weak by hand weighs no more than its hand weight.

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
from pathlib import Path
from typing import Final

import tldextract

from policy.memo import Memo
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
    # Among names with digits, .win is 90x more common in the training adult/gambling lists
    # than among popular names (the next, .click, 20x): with a digit run (0.2) it fires, the
    # numbered betting mirror ('fa88.win', 'su789.win'); a plain 'notes.win' does not.
    "win": ("gambling", 0.8),
    "dating": ("dating", 1.0),
}

_RANK_RATER_WORD: Final = 3000  # rater words split out like a common English word
_RANK_HELPER_WORD: Final = 8000  # "word 0" entries (names, foreign words)
_DIGITS_COST: Final = 6.0  # a run of digits is one token
_UNKNOWN_COST: Final = 30.0  # a letter no word covers
_MAX_WORD: Final = 20  # longer words are never looked up (bounds the work per label)
_THRESHOLD: Final = 1.0
_RANK_LEARNED_WORD: Final = 6000  # words the training script found in the lists (rater_weights.tsv)
_WEIGHTS_FILE: Final = "rater_weights.tsv"
_STRONG_MIN: Final = 3  # shortest word the splitter may keep whole against the cheapest split
_RESPLIT_MARGIN: Final = 4.0  # how much dearer that split may be (a real word beats it: 'essex')
_RARE: Final = 12.5  # a forced split leaves no word this dear beside the strong one
_DOUBT: Final = 11.0  # a word this dear (or unknown) in the cheapest split makes it doubtful
_COMMON: Final = 7.5  # a short word this cheap is a real word beside a strong one ('up', 'of')
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
    fired: tuple[str, ...]  # the winning category's evidence, strongest first: "'escort' 0.8"
    category: str | None
    confidence: float
    learned: bool = False  # the learned layer fired (the hand-written words did not)


@dataclass(frozen=True, slots=True)
class Learned:
    """The learned layer: per-feature weights per category, fitted by tests/bench/train_rater.py
    (a regularised logistic regression over the words of the training lists' names against
    popular and must-not-fire names) and shipped as blocklists/data/rater_weights.tsv.

    A category fires when bias + the sum of its features' weights reaches its threshold; the
    features are the ones `features()` reads in a name.
    """

    categories: tuple[str, ...]
    bias: tuple[float, ...]
    threshold: tuple[float, ...]
    weights: Mapping[str, tuple[float, ...]]
    vocab: frozenset[str]  # words the lists taught the splitter ('bokep', 'ngentot', 'xinh')


def parse_learned(lines: Iterable[str], where: str = _WEIGHTS_FILE) -> Learned:
    """Read rater_weights.tsv: 'categories', 'bias', 'threshold' and 'vocab' rows, then one
    '<feature> <weight per category>' row a feature (tab-separated; '#' starts a comment)."""
    head: dict[str, list[str]] = {}
    vocab: set[str] = set()
    weights: dict[str, tuple[float, ...]] = {}
    ncat = 0
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        key, *rest = raw.rstrip("\n").split("\t")
        if key == "vocab":
            vocab.update(w for w in " ".join(rest).split() if len(w) <= _MAX_WORD)
            continue
        if key in ("categories", "bias", "threshold"):
            head[key] = rest
            ncat = len(head.get("categories", ()))
            continue
        if not ncat or len(rest) != ncat:
            raise RaterError(f"{where}:{lineno}: want '<feature>' and {ncat} weights")
        try:
            weights[key] = tuple(float(x) for x in rest)
        except ValueError:
            raise RaterError(f"{where}:{lineno}: bad weight in {rest!r}") from None
    try:
        categories = tuple(head["categories"])
        bias = tuple(float(x) for x in head["bias"])
        threshold = tuple(float(x) for x in head["threshold"])
    except (KeyError, ValueError) as e:
        raise RaterError(f"{where}: missing or bad header row: {e}") from None
    if set(categories) - set(CATEGORIES) or not len(bias) == len(threshold) == len(categories):
        raise RaterError(f"{where}: header rows disagree with categories {categories!r}")
    return Learned(categories, bias, threshold, weights, frozenset(vocab))


def features(words: Sequence[str], piece_of: Sequence[int], top: str) -> list[str]:
    """What the learned layer reads in a name: its words ('w:escort'), digit runs ('d:88', or
    'd:long' past 4 digits), neighbouring words of one piece ('p:web_cams') and the top-level
    domain ('t:club'). Training and rating both call this, so they read names alike."""
    out = []
    for i, word in enumerate(words):
        if word.isdigit():
            out.append(f"d:{word}" if len(word) <= 4 else "d:long")
        elif len(word) > 1:
            out.append(f"w:{word}")
        if i and piece_of[i - 1] == piece_of[i] and len(word) > 1 and len(words[i - 1]) > 1:
            out.append(f"p:{words[i - 1]}_{word}")
    if top:
        out.append(f"t:{top}")
    return out


def words_carry(found: Iterable[tuple[str, Sequence[float]]], j: int) -> bool:
    """Whether words (not digits or the top-level domain) bring at least half of the positive
    evidence for category j: a random 'x7f3a9.top' is no sign of anything, whatever its shape."""
    words = other = 0.0
    for feature, ws in found:
        if ws[j] > 0:
            if feature[0] in "wp":
                words += ws[j]
            else:
                other += ws[j]
    return words >= other


class _Lexicon:
    """Word costs for splitting, and word weights per category. Built once, then read-only."""

    def __init__(
        self,
        english: Iterable[str],
        rater_lines: Iterable[str],
        learned: Learned | None = None,
        *,
        vocab: Iterable[str] = (),
    ) -> None:
        words = [w for w in english if w and not w.startswith("#")]
        if not words:
            raise RaterError("rater-english word list is empty")
        log_n = math.log(len(words))
        cost: dict[str, float] = {}
        for rank, word in enumerate(words, start=1):
            if len(word) <= _MAX_WORD:
                cost.setdefault(word, math.log(rank * log_n))
        weights: dict[str, dict[str, float]] = {}
        helpers: set[str] = set()
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
                    helpers.add(word)
                    cost[word] = min(cost.get(word, helper_cost), helper_cost)
                    continue
                if weight > 0:
                    cost[word] = min(cost.get(word, rater_cost), rater_cost)
                elif word not in cost:
                    cost[word] = helper_cost
                weights.setdefault(word, {})[category] = weight
        learned_cost = math.log(_RANK_LEARNED_WORD * log_n)
        for word in sorted({*vocab, *(learned.vocab if learned is not None else ())}):
            if len(word) <= _MAX_WORD and word not in cost:
                cost[word] = learned_cost
        self.cost = cost
        self.weights = {w: dict(c) for w, c in weights.items()}
        self.learned = _clamped(learned, self.weights, helpers) if learned is not None else None
        # words that fire alone: the splitter keeps them whole when that costs little more
        self.strong = frozenset(
            w
            for w, cats in self.weights.items()
            if len(w) >= _STRONG_MIN and not w.startswith("<") and max(cats.values()) >= 1.0
        )
        self.strong_starts = frozenset(w[:_STRONG_MIN] for w in self.strong)
        self.helpers = frozenset(helpers)  # a split that reads one of these is left alone

    def split(self, text: str) -> list[str]:
        """The cheapest split of `text` ([a-z0-9]*) into words; digit runs stay whole; then
        a strong evidence word the cheapest split broke up, when keeping it whole costs little
        more and leaves no stray letter ('webcamsexup': 'webcam sex up', not 'webcams exup';
        'essex', 'middlesex' and 'expertsexchange' stay as they are: a real word is cheaper)."""
        cost, words = self._best(text)
        helpers = self.helpers
        if any(w in self.strong or w in helpers for w in words) or not any(
            (len(w) <= 2 and not w.isdigit()) or self.cost.get(w, _DOUBT) >= _DOUBT for w in words
        ):
            return words
        best_alt: tuple[float, list[str]] | None = None
        n = len(text)
        strong = self.strong
        starts = self.strong_starts
        for i in range(n - _STRONG_MIN + 1):
            if text[i : i + _STRONG_MIN] not in starts:
                continue
            for k in range(_STRONG_MIN, min(_MAX_WORD, n - i) + 1):
                word = text[i : i + k]
                if word not in strong:
                    continue
                left_cost, left = self._best(text[:i])
                right_cost, right = self._best(text[i + k :])
                alt_cost = left_cost + self.cost[word] + right_cost
                alt = [*left, word, *right]
                if alt_cost <= cost + _RESPLIT_MARGIN and all(
                    self._plain(w) for w in (*left, *right)
                ):
                    if best_alt is None or alt_cost < best_alt[0]:
                        best_alt = (alt_cost, alt)
        return best_alt[1] if best_alt is not None else words

    def _plain(self, word: str) -> bool:
        """A piece a forced split may leave beside a strong word: a number, a real word of 3+
        letters that is not rare, or a very common two-letter one ('up', 'of'); never a lone
        letter ('beta' is not 'bet' + 'a')."""
        c = self.cost.get(word, _RARE)
        return word.isdigit() or (len(word) >= 3 and c < _RARE) or (len(word) == 2 and c <= _COMMON)

    def _best(self, text: str) -> tuple[float, list[str]]:
        """The cheapest split of `text` and its cost (Viterbi over word costs)."""
        n = len(text)
        if n == 0:
            return 0.0, []
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
        return best[n], out


def _clamped(
    learned: Learned, hand: Mapping[str, Mapping[str, float]], helpers: Container[str]
) -> Learned:
    """The learned table under the hand-written layer's decisions:
    - no positive weight where the hand layer excludes: a word with a negative hand weight in a
      category ('education' for adult) and the splitting-help words ('xxxlutz', 'nisbets'),
      alone or in a word pair;
    - a word the hand layer made weak (below 1.0: 'vulkan', 'hardcore', 'girls') weighs no more
      than its hand weight, so it still needs company."""

    def excluded(word: str, category: str) -> bool:
        return word in helpers or hand.get(word, {}).get(category, 0.0) < 0

    out: dict[str, tuple[float, ...]] = {}
    for feature, ws in learned.weights.items():
        kind, _, text = feature.partition(":")
        parts = text.split("_") if kind == "p" else [text] if kind == "w" else []
        row = []
        for j, (c, w) in enumerate(zip(learned.categories, ws, strict=True)):
            if any(excluded(p, c) for p in parts):
                w = min(w, 0.0)
            elif kind == "w" and 0 < hand.get(text, {}).get(c, 0.0) < 1.0:
                w = min(w, hand[text][c] * (learned.threshold[j] - learned.bias[j]))
            row.append(w)
        out[feature] = tuple(row)
    return replace(learned, weights=out)


_lexicon_cache: _Lexicon | None = None


def _data_lines(file: str) -> list[str]:
    pkg = resources.files("blocklists") / "data"
    try:
        if file.endswith(".gz"):
            with (pkg / file).open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
                return f.read().split("\n")
        return (pkg / file).read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, UnicodeError) as e:
        raise RaterError(f"cannot read the rater's {file}: {e}") from e


def load_learned() -> Learned:
    """The shipped learned layer (blocklists/data/rater_weights.tsv)."""
    return parse_learned(_data_lines(_WEIGHTS_FILE))


def _build_lexicon(learned: Learned | None, vocab: Iterable[str] = ()) -> _Lexicon:
    english = _data_lines("rater-english.txt.gz")
    return _Lexicon(english, _data_lines("rater-words.txt"), learned, vocab=vocab)


def _load_lexicon() -> _Lexicon:
    global _lexicon_cache
    if _lexicon_cache is None:
        _lexicon_cache = _build_lexicon(load_learned())
        log.debug(
            "name rater: %d words, %d rated", len(_lexicon_cache.cost), len(_lexicon_cache.weights)
        )
    return _lexicon_cache


_extractor: tldextract.TLDExtract | None = None


def _tld_extract() -> tldextract.TLDExtract:
    """tldextract on its bundled PSL snapshot: no suffix_list_urls, no cache dir, no network.

    The private section counts as suffixes ('pages.dev', 'github.io', 'blogspot.com'), so the
    label that names a site on a hosting platform is the one read, and a platform alone has no
    registrable label to read."""
    global _extractor
    if _extractor is None:
        extractor = tldextract.TLDExtract(
            suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True
        )
        # tldextract builds its suffix trie on the first name it is given (60-120 ms):
        # give it one now, so that the first query a child's device sends does not wait
        extractor("warm.example")
        _extractor = extractor
    return _extractor


def split_name(qname: str) -> tuple[str, str]:
    """(registrable label, public suffix) of a canonical name; ("", suffix) if none.
    'my-site.pages.dev' -> ('my-site', 'pages.dev'): private PSL entries are suffixes too."""
    parts = _tld_extract()(qname)
    return parts.domain, parts.suffix


def registrable_domain(qname: str) -> str | None:
    """'a.b.example.co.uk' -> 'example.co.uk', 'a.site.github.io' -> 'site.github.io';
    None for a bare public suffix or platform ('co.uk', 'github.io')."""
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
    """The strongest words that carry the score past the threshold, each with its weight
    ("'escort' 0.8", "'cams' 0.6": the parent's "why"; the threshold is 1.0)."""
    out: list[str] = []
    total = 0.0
    for weight, word in sorted(evidence, key=lambda e: -e[0]):
        out.append(f"{word} {weight:.1f}")
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


def _confidence(score: float) -> float:
    """0.83 at the threshold (score 1.0), towards 1.0 with more evidence."""
    return round(1.0 - 0.5 * math.pow(0.35, score), 2)


def _shown(feature: str) -> str:
    """A learned feature as a parent reads it: 'escort', 'web cams', '88', '.club'."""
    kind, _, text = feature.partition(":")
    if kind == "t":
        return f"'.{text}'"
    if kind == "p":
        return "'" + text.replace("_", " ") + "'"
    if kind == "d" and text == "long":
        return "a long number"
    return f"'{text}'"


class NameRater:
    """Rate names from their own words. Deterministic; no I/O after construction."""

    def __init__(
        self,
        *,
        categories: Collection[str] = CATEGORIES,
        learned: Learned | None | bool = True,
        vocab: Iterable[str] = (),
    ) -> None:
        """`learned`: True for the shipped learned layer, None or False for the hand-written
        words alone, or a table of one's own (the training script's); `vocab`: more words for
        the splitter (the training script's candidates)."""
        unknown = set(categories) - set(CATEGORIES)
        if unknown:
            raise RaterError(f"the rater has no words for: {', '.join(sorted(unknown))}")
        self._order = tuple(c for c in CATEGORIES if c in categories)
        vocab = tuple(vocab)
        if learned is True and not vocab:
            self._lex = _load_lexicon()
        elif learned is True:
            self._lex = _build_lexicon(load_learned(), vocab)
        else:
            self._lex = _build_lexicon(learned or None, vocab)
        _tld_extract()  # build now, not on the first query

    @property
    def categories(self) -> tuple[str, ...]:
        return self._order

    def reading(self, qname: str) -> tuple[list[str], list[int], str]:
        """A name's words, the piece (between hyphens) each word is in, and its top-level
        domain: what `features()` reads (for the training script)."""
        label, suffix = split_name(qname)
        pieces = self._pieces(label) if label and not _institutional(suffix) else []
        words = [w for piece in pieces for w in piece]
        piece_of = [n for n, piece in enumerate(pieces) for _ in piece]
        return words, piece_of, suffix.rsplit(".", 1)[-1] if suffix else ""

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
                return Rating(tuple(words), scores, fired, category, _confidence(score))
        # the hand-written words did not fire: the learned layer may, except in a category a
        # hand-written word pulls back ('sex' + 'education': the exclusion stands)
        vetoed = {c for key in counted.values() for c, w in weights[key].items() if w < 0}
        return self._learned(words, piece_of, top, scores, vetoed)

    def _learned(
        self,
        words: list[str],
        piece_of: list[int],
        top: str,
        scores: dict[str, float],
        vetoed: set[str],
    ) -> Rating:
        learned = self._lex.learned
        if learned is None or not words:
            return Rating(tuple(words), scores, (), None, 0.0)
        table = learned.weights
        found = [(f, table[f]) for f in dict.fromkeys(features(words, piece_of, top)) if f in table]
        best: tuple[float, str, list[tuple[float, str]]] | None = None
        for j, category in enumerate(learned.categories):
            if category not in self._order or category in vetoed:
                continue
            need = learned.threshold[j] - learned.bias[j]  # what the features must add up to
            if need <= 0:
                continue
            total = sum(ws[j] for _, ws in found) / need  # 1.0 = the threshold, as by hand
            if total >= 1.0 - 1e-9 and words_carry(found, j) and (best is None or total > best[0]):
                shown = [(ws[j] / need, _shown(f)) for f, ws in found if ws[j] > 0]
                best = (total, category, shown)
        if best is None:
            return Rating(tuple(words), scores, (), None, 0.0)
        total, category, shown = best
        return Rating(
            tuple(words), scores, _enough(shown), category, _confidence(total), learned=True
        )

    def rate(self, qname: str) -> Match | None:
        """A Match from the name alone, or None when its words are not evidence enough."""
        rating = self.explain(qname)
        if rating.category is None:
            return None
        how = " (learned)" if rating.learned else ""
        return Match(
            category=rating.category,
            min_age=DEFAULT_AGES[rating.category],
            source=SOURCE,
            exception=False,
            rule="name contains " + " + ".join(rating.fired) + how,
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
        cache_size: int = 16_384,  # names rated, kept (policy/memo.py): households repeat few
    ) -> None:
        self._base = base
        self._rater = rater
        self._covered = frozenset(rater.categories) if rater is not None else frozenset()
        self._ages = dict(category_ages)
        self._popular = popular
        self._size = max(cache_size, 16)
        self._by_name: Memo[str, Match | None] = Memo(self._size)
        self._by_domain: Memo[str, Match | None] = Memo(self._size)
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
                self._by_domain.put(domain, result)
            else:
                result = cached
        self._by_name.put(qname, result)
        return result

    def _rate_domain(self, domain: str) -> Match | None:
        assert self._rater is not None
        self.rated += 1
        match = self._rater.rate(domain)
        if match is None:
            return None
        age = self._ages.get(match.category, DEFAULT_AGES.get(match.category, 18))
        return replace(match, min_age=age)



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
