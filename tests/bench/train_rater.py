"""Fit the name rater's learned layer: blocklists/data/rater_weights.tsv.

    .venv/bin/python tests/bench/train_rater.py            # writes the shipped table
    .venv/bin/python tests/bench/train_rater.py --dry-run  # figures only

Deterministic (same data, same table), run by developers, never at install or start. numpy is
used here only; the server reads the table with plain Python.

What it learns from (bench_rater.TRAIN, the one place the training lists are named):
- positives per category: Sinfonietta pornography, UT1 adult urls / mixed_adult / lingerie
  (adult); UT1 gambling and Sinfonietta gambling (gambling); the even half of UT1 dating;
  blocklistproject drugs; hagezi doh-vpn-proxy-bypass;
- negatives: the faf-dns-bench ranking (2023) and the Cloudflare Radar top-10k bucket (the
  shipped popular.txt), less every name a category list confirms; the broad UT1 games, chat and
  social lists; and, weighted up, the names that must never fire: the education allow set,
  UT1 child / educational_games / liste_blanche / sexual_education.
What it never reads: the held-out sources of bench_rater.TEST (StevenBlack's gambling+porn via
the TrustPositif mirror, gambling-au, the odd half of UT1 dating, UT1 drogue and vpn) and the
Cloudflare top-100k names outside the top-10k, on which false alarms are measured.

Steps:
1. Vocabulary: whole letter runs (between hyphens and digits) of 3-12 characters that are far
   more common in positive labels than in negative ones ('bokep', 'nhacai', 'xinh') join the
   splitter as words, so a name made of words the English list lacks still splits into them.
2. Each name is read by the rater's own code (`NameRater.reading` + `features`): words, digit
   runs, neighbouring word pairs and the top-level domain.
3. One L2-regularised logistic regression per category (positives of that category against the
   negatives), full-batch Adam, fixed iterations.
4. Threshold per category, false alarms first: the lowest score at which at most
   --fp-per-10k of the CALIBRATION negatives (a quarter of the popular negatives by crc32, kept
   out of the fit) are newly rated by the learned layer; recall decides nothing beyond that.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_rater as bench  # noqa: E402

from blocklists.rater import (  # noqa: E402
    Learned,
    NameRater,
    features,
    load_education,
    normalise_label,
    split_name,
    words_carry,
)

OUT = REPO / "blocklists" / "data" / "rater_weights.tsv"
NEGATIVE_RANKINGS = [bench.TUNE_NEGATIVE, f"{bench.RADAR}/top-10000.csv.gz"]
NEGATIVE_LISTS = [
    "ut1/blacklists/games/domains",
    "ut1/blacklists/chat/domains",
    "ut1/blacklists/social_networks/domains",
]
MUST_NOT_FIRE = [
    "ut1/blacklists/child/domains",
    "ut1/blacklists/educational_games/domains",
    "ut1/blacklists/liste_blanche/domains",
    "ut1/blacklists/sexual_education/domains",
]
MUST_NOT_WEIGHT = 20.0
VOCAB_MIN, VOCAB_MAX = 3, 12
VOCAB_MIN_POS = 6  # positive names a candidate word must appear in
VOCAB_RATIO = 10.0  # times more frequent in positive than in negative labels (per name)
VOCAB_CAP = 4000
# The learned layer covers adult and gambling only: their training lists are large and on topic.
# The drugs list is mostly pharmacy spam, the bypass list names DNS providers and the dating
# half is small; learned, they rated pharmacies, DNS hosts and any name with 'love' or 'date'
# among popular sites. Those categories keep their hand-written words.
LEARNED_CATEGORIES = ("adult", "gambling")
MIN_WEIGHT = 0.3  # smaller weights are left out of the shipped table
MIN_COUNT = 3  # names a feature must appear in to get a weight
L2 = 2e-5  # per example, on the weights (not the bias)
STEPS = 600
LEARNING_RATE = 0.1


def labels_of(names: Iterable[str]) -> dict[str, str]:
    """registrable domain -> its normalised label, one per registrable domain."""
    out: dict[str, str] = {}
    for n in names:
        d = bench.registrable(n)
        if d not in out:
            label, _ = split_name(d)
            if label:
                out[d] = normalise_label(label)
    return out


def letter_runs(label: str) -> list[str]:
    runs, cur = [], []
    for ch in label:
        if "a" <= ch <= "z":
            cur.append(ch)
        elif cur:
            runs.append("".join(cur))
            cur = []
    if cur:
        runs.append("".join(cur))
    return runs


def contains_any(text: str, words: frozenset[str]) -> bool:
    n = len(text)
    return any(text[i:j] in words for i in range(n) for j in range(i + 3, n + 1))


def mine_vocab(
    pos: Iterable[str], neg: Iterable[str], known: set[str], strong: frozenset[str]
) -> list[str]:
    """Words the positive labels use and the splitter lacks, from whole letter runs: the
    pieces between hyphens and digits ('bokep-indo', 'nhacai88', 'k8tip05': 'bokep', 'indo',
    'nhacai', 'tip'), so a candidate is a word someone wrote, never a fragment of two. A run
    that holds a hand-written word that fires alone ('hdporn', 'kucasino') is left out: the
    splitter already reads that word in it, and a longer word would hide it."""
    pc: Counter[str] = Counter()
    npos = 0
    for label in pos:
        npos += 1
        pc.update({r for r in letter_runs(label) if VOCAB_MIN <= len(r) <= VOCAB_MAX})
    nc: Counter[str] = Counter()
    nneg = 0
    for label in neg:
        nneg += 1
        nc.update({r for r in letter_runs(label) if r in pc})
    scale = nneg / max(npos, 1)
    chosen = [
        s
        for s, c in pc.items()
        if c >= VOCAB_MIN_POS
        and s not in known
        and c * scale >= VOCAB_RATIO * (nc[s] + 1)
        and not contains_any(s, strong)
    ]
    chosen.sort(key=lambda s: (-pc[s], s))
    return sorted(chosen[:VOCAB_CAP])


def fit(
    rows: list[list[int]], y: np.ndarray, w8: np.ndarray, nfeat: int
) -> tuple[float, np.ndarray]:
    """L2-regularised logistic regression on sparse binary rows; full-batch Adam."""
    lens = np.array([len(r) for r in rows], dtype=np.int64)
    idx = np.fromiter((f for r in rows for f in r), dtype=np.int64, count=int(lens.sum()))
    row_of = np.repeat(np.arange(len(rows)), lens)
    wsum = w8.sum()
    theta = np.zeros(nfeat + 1)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for step in range(1, STEPS + 1):
        z = theta[nfeat] + np.bincount(row_of, weights=theta[idx], minlength=len(rows))
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        err = (p - y) * w8 / wsum
        g = np.zeros_like(theta)
        g[:nfeat] = np.bincount(idx, weights=err[row_of], minlength=nfeat) + L2 * theta[:nfeat]
        g[nfeat] = err.sum()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta -= LEARNING_RATE * (m / (1 - b1**step)) / (np.sqrt(v / (1 - b2**step)) + eps)
    return float(theta[nfeat]), theta[:nfeat]


def main() -> int:  # noqa: C901 - one linear script
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="do not write the table")
    ap.add_argument("--fp-per-10k", type=float, default=1.5, help="calibration false-alarm cap")
    ap.add_argument("--out", type=Path, default=OUT, help="where to write the table (to compare)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if not bench.DATA.is_dir():
        print(f"shared data not found at {bench.DATA}", file=sys.stderr)
        return 2

    pos_names = {
        c: set().union(*(bench.read_names(s) for s in specs)) for c, specs in bench.TRAIN.items()
    }
    confirm = set().union(*(bench.read_names(s) for s in bench.CONFIRM))
    confirm_domains = bench.by_domain(confirm)

    def unlisted(names: set[str]) -> set[str]:
        return {
            n
            for n in names
            if not bench.covered(n, confirm) and bench.registrable(n) not in confirm_domains
        }

    popular_neg = unlisted(set().union(*(bench.read_names(s) for s in NEGATIVE_RANKINGS)))
    list_neg = unlisted(set().union(*(bench.read_names(s) for s in NEGATIVE_LISTS)))
    must_not = set().union(*(bench.read_names(s) for s in MUST_NOT_FIRE)) | set(load_education())
    pos = {c: labels_of(ns) for c, ns in pos_names.items()}
    neg_pop = labels_of(popular_neg)
    neg_list = {d: x for d, x in labels_of(list_neg).items() if d not in neg_pop}
    neg_must = labels_of(must_not)
    pos_domains = {d for p in pos.values() for d in p}
    for neg in (neg_pop, neg_list):
        for d in [d for d in neg if d in pos_domains or d in neg_must]:
            del neg[d]
    calib = {d for d in neg_pop if zlib.crc32(d.encode()) % 4 == 0}
    print(
        f"positives {', '.join(f'{c} {len(p)}' for c, p in pos.items())}; negatives: popular"
        f" {len(neg_pop)} ({len(calib)} kept for calibration), lists {len(neg_list)},"
        f" must-not-fire {len(neg_must)}",
        flush=True,
    )

    # 1. vocabulary
    base = NameRater(learned=None)
    known = set(base._lex.cost)  # noqa: SLF001 - the splitter's words
    pos_labels = [x for p in pos.values() for x in p.values()]
    neg_labels = [x for d, x in neg_pop.items() if d not in calib] + list(neg_list.values())
    vocab = mine_vocab(pos_labels, neg_labels, known, base._lex.strong)  # noqa: SLF001
    shown = " ".join(vocab[:: max(len(vocab) // 40, 1)])
    print(f"vocabulary: {len(vocab)} new words, e.g. {shown}")
    rater = NameRater(learned=None, vocab=vocab)

    # 2. features of every name
    def feats(domain: str) -> list[str]:
        words, piece_of, top = rater.reading(domain)
        return list(dict.fromkeys(features(words, piece_of, top)))

    cache: dict[str, list[str]] = {}
    for group in (*pos.values(), neg_pop, neg_list, neg_must):
        for d in group:
            if d not in cache:
                cache[d] = feats(d)
    counts: Counter[str] = Counter(f for fs in cache.values() for f in fs)
    names_of_feat = sorted(f for f, c in counts.items() if c >= MIN_COUNT)
    fid = {f: i for i, f in enumerate(names_of_feat)}
    print(f"features: {len(fid)} seen in >= {MIN_COUNT} names ({time.perf_counter() - t0:.0f} s)")

    fit_neg = [d for d in neg_pop if d not in calib] + list(neg_list)
    weights = np.zeros((len(fid), len(LEARNED_CATEGORIES)))
    bias = np.zeros(len(LEARNED_CATEGORIES))
    for j, cat in enumerate(LEARNED_CATEGORIES):
        p_doms = sorted(pos[cat])
        n_doms = sorted(set(fit_neg) - set(p_doms)) + sorted(set(neg_must) - set(p_doms))
        rows = [[fid[f] for f in cache[d] if f in fid] for d in p_doms + n_doms]
        y = np.array([1.0] * len(p_doms) + [0.0] * len(n_doms))
        w8 = np.ones(len(rows))
        w8[: len(p_doms)] = (len(n_doms) / max(len(p_doms), 1)) * 0.5
        w8[len(p_doms) + len(n_doms) - len(set(neg_must) - set(p_doms)) :] = MUST_NOT_WEIGHT
        b, w = fit(rows, y, w8, len(fid))
        bias[j] = b
        weights[:, j] = w
        print(f"fitted {cat}: bias {b:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    # 4. thresholds: false alarms of the calibration negatives first
    table = {f: tuple(round(float(x), 3) for x in weights[i]) for f, i in fid.items()}
    table = {f: ws for f, ws in table.items() if max(abs(x) for x in ws) >= MIN_WEIGHT}
    hand = NameRater(learned=None, vocab=vocab)
    calib_new = [d for d in sorted(calib) if hand.rate(d) is None]
    must_doms = sorted(neg_must)
    allowed = int(args.fp_per_10k * len(calib) / 1e4)
    thresholds = [float(b) + 1.0 for b in bias]
    # The rater caps a weak hand-written word at its hand weight, relative to the threshold; so
    # the thresholds are found on the capped table, twice (the cap moves with the threshold).
    for _ in range(2):
        draft = Learned(LEARNED_CATEGORIES, tuple(bias), tuple(thresholds), table, frozenset())
        capped = NameRater(learned=draft, vocab=vocab)._lex.learned  # noqa: SLF001
        assert capped is not None
        used = capped.weights
        thresholds = []
        for j, cat in enumerate(LEARNED_CATEGORIES):

            def score(d: str, j: int = j, used: Mapping[str, tuple[float, ...]] = used) -> float:
                found = [(f, used[f]) for f in cache[d] if f in used]
                if not words_carry(found, j):
                    return -1e9  # the rater never fires on such a name
                return float(bias[j] + sum(ws[j] for _, ws in found))

            neg_scores = sorted((score(d) for d in calib_new), reverse=True)
            thr = neg_scores[allowed] + 1e-3 if allowed < len(neg_scores) else 0.0
            thr = max(thr, bias[j] + 1.0, max(score(d) for d in must_doms) + 1e-3)
            thresholds.append(round(thr, 3))
            hits = sum(score(d) >= thr for d in pos[cat])
            print(f"threshold {cat}: {thr:.2f} (the layer alone rates {hits}/{len(pos[cat])})")

    learned = Learned(
        LEARNED_CATEGORIES,
        tuple(round(float(b), 3) for b in bias),
        tuple(thresholds),
        table,
        frozenset(vocab),
    )
    lines = [
        "# nestguard name rater: the learned layer (written by tests/bench/train_rater.py; do not"
        " edit: rerun it).",
        "# A category fires when bias + the weights of the name's features reach its",
        "# threshold. Features: w:word, p:word_word (neighbours), d:digits, t:top-level domain.",
        "# 'vocab' rows: words the training lists taught the splitter.",
        "# Trained on: " + ", ".join(s for specs in bench.TRAIN.values() for s in specs),
        "# Negatives: "
        + ", ".join([*NEGATIVE_RANKINGS, *NEGATIVE_LISTS, *MUST_NOT_FIRE, "education.txt"]),
        "categories\t" + "\t".join(learned.categories),
        "bias\t" + "\t".join(f"{x:g}" for x in learned.bias),
        "threshold\t" + "\t".join(f"{x:g}" for x in learned.threshold),
    ]
    vocab_sorted = sorted(vocab)
    for i in range(0, len(vocab_sorted), 20):
        lines.append("vocab\t" + " ".join(vocab_sorted[i : i + 20]))
    for f in sorted(table):
        lines.append(f + "\t" + "\t".join(f"{x:g}" for x in table[f]))
    text = "\n".join(lines) + "\n"
    took = time.perf_counter() - t0
    print(f"table: {len(table)} features, {len(text) // 1024} KiB ({took:.0f} s)")
    if not args.dry_run:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
