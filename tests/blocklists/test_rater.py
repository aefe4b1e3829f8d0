"""The name rater: words, not substrings; evidence; once per name; popular and listed names win."""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from blocklists.rater import (
    CATEGORIES,
    SOURCE,
    Learned,
    NameRater,
    RatedIndex,
    RaterError,
    load_education,
    load_learned,
    load_popular,
    normalise_label,
    parse_learned,
    registrable_domain,
)
from policy.model import Match

AGES = {"adult": 18, "gambling": 18, "dating": 16, "drugs": 18, "bypass": 14}


@pytest.fixture(scope="module")
def rater() -> NameRater:
    return NameRater()


# Innocent names whose letters hide a bad word. Bare substring search would block every one.
MUST_NOT_MATCH = [
    "dickssportinggoods.com",
    "peacocktv.com",
    "ameblo.jp",
    "weebly.com",
    "javatpoint.com",
    "documentforce.com",
    "essex.ac.uk",
    "sussex.ac.uk",
    "middlesex.edu",
    "therapist.com",
    "analytics.example.org",
    "googleanalytics.com",
    "scunthorpe.gov.uk",
    "expertsexchange.com",
    "cumbria.gov.uk",
    "hancockwhitney.com",
    "cocktailrecipes.com",
    "grapevinetexas.gov",
    "sexualhealth.org.au",  # sex + education/health words pull adult back
    "sexeducation.org",
    "kundenbetreuung.de",
    "akusherstvo.ru",
    "bancaditalia.it",
    "arbetsformedlingen.se",
    "pokemon.com",
    "nationalgeographic.com",
    "khanacademy.org",
    "hocmai.vn",
    "bongda.com.vn",
    "alphabet.com",
    "classicfm.com",
    "shuttlecockclub.org",
    "assassinscreed.com",
    # false alarms of the tuning set: brands, Chinese pinyin, a graphics API, gaming
    "xxxlutz.de",  # furniture, not 'xxx'
    "nisbets.co.uk",  # catering equipment, not 'bets'
    "charlesproxy.com",  # a developer's debugging proxy
    "msappproxy.net",  # Microsoft's application proxy
    "favpng.com",  # 'fav png', not 'vpn'
    "51fapiao.cn",  # fapiao: invoice
    "putaojiu.com",  # putao: grape
    "javashuo.com",
    "vulkan.org",  # the graphics API, not the casino brand
    "vulkan-tutorial.com",
    "hardcoregamer.com",
    "hardcoregaming101.net",
    "win10os.com",  # Windows versions, not 'win' + a number
    "xpwin7.com",
    "qq3366.net",  # Tencent's messenger
    "awin1.com",  # an affiliate network
]


@pytest.mark.parametrize("qname", MUST_NOT_MATCH)
def test_innocent_names_are_not_rated(rater: NameRater, qname: str) -> None:
    assert rater.rate(qname) is None, rater.explain(qname)


# Invented names in the style of real adult, gambling, dating, drugs and bypass sites.
MUST_MATCH = [
    ("hotpornhubz.com", "adult", "pornhub"),
    ("xxxmilftube.net", "adult", "xxx"),
    ("free-sex-movies24.org", "adult", "sex"),
    ("hot-girls-cams.live", "adult", "girls"),
    ("phimsexhay.net", "adult", "sex"),
    ("clipsex-viet.info", "adult", "sex"),
    ("gaigoisaigon.xyz", "adult", "gaigoi"),
    ("prostitutki-moskvy.ru", "adult", "prostitutki"),
    ("bokepindo.site", "adult", "bokep"),
    ("nude-beach.xxx", "adult", "nude"),
    ("nhacai88.com", "gambling", "nhacai"),
    ("keonhacai5.net", "gambling", "keonhacai"),
    ("taixiu.club", "gambling", "taixiu"),
    ("nohu-vip.com", "gambling", "nohu"),
    ("online-casino-bonus.com", "gambling", "casino"),
    ("best-slots-jackpot.net", "gambling", "slots"),
    ("11bet.win", "gambling", "bet"),
    ("kazino-vulkan.ru", "gambling", "kazino"),
    ("judislotgacor.id", "gambling", "judi"),
    ("singles-dating-now.com", "dating", "dating"),
    ("sugardaddymeet.com", "dating", "sugardaddy"),
    ("buy-kratom-online.com", "drugs", "kratom"),
    ("fastfreevpn.app", "bypass", "vpn"),
    ("schoolproxy-unblocker.net", "bypass", "proxy"),
    # brand + number mirror families of the training lists, in new mirrors
    ("pkr88jaya.net", "gambling", "pkr88"),
    ("pk88hoki.xyz", "gambling", "pk88"),
    ("pok3r88asia.club", "gambling", "pok3r88"),
    ("we1win27.com", "gambling", "we1win"),
    ("tube8.stream", "adult", "tube8"),
    ("lewd-anime.net", "adult", "lewd"),
    # words made weaker need company now
    ("vulkan777.ru", "gambling", "vulkan"),
    ("hardcore-videos.net", "adult", "hardcore"),
    # a weak gambling word glued to a number: the betting-mirror shape
    ("win79.app", "gambling", "win79"),
    ("888win.club", "gambling", "888win"),
    ("lucky88.vin", "gambling", "lucky88"),
]


@pytest.mark.parametrize(("qname", "category", "word"), MUST_MATCH)
def test_telling_names_are_rated(rater: NameRater, qname: str, category: str, word: str) -> None:
    match = rater.rate(qname)
    assert match is not None, rater.explain(qname)
    assert match.category == category
    assert match.source == SOURCE
    assert not match.exception
    assert f"'{word}'" in match.rule  # the parent's "why" names the word that fired
    assert 0.5 < match.confidence < 1.0


def test_evidence_text_names_the_words(rater: NameRater) -> None:
    match = rater.rate("www.freepornvideos.com")
    assert match is not None
    assert match.rule.startswith("name contains 'porn'")
    assert rater.words("www.freepornvideos.com") == ("free", "porn", "videos")
    weak = rater.rate("hot-girls-cams.net")
    strong = rater.rate("pornhub-xxx-milf.net")
    assert weak is not None and strong is not None
    assert weak.confidence < strong.confidence


def test_a_mirror_family_rating_says_which_brand_fired(rater: NameRater) -> None:
    match = rater.rate("www.pk88silver77.com")
    assert match is not None
    assert (match.category, match.rule) == ("gambling", "name contains 'pk88' 1.0")
    assert rater.rate("pk8.org") is None  # the stem alone is not the brand


def test_a_number_counts_most_when_glued_to_a_gambling_word(rater: NameRater) -> None:
    glued = rater.rate("sodo66.com")
    assert glued is not None and glued.category == "gambling" and "'sodo66'" in glued.rule
    assert rater.rate("lucky-day-77.com") is None  # the same words, the number apart
    assert rater.rate("vip88.com") is None  # 'vip' is too common with numbers


def test_the_popular_review_file_is_well_formed() -> None:
    """tests/bench/rater_popular_review.txt: every false alarm and unsure name says why."""
    path = Path(__file__).resolve().parents[1] / "bench" / "rater_popular_review.txt"
    rows = [line.split(maxsplit=2) for line in path.read_text("utf-8").splitlines()]
    rows = [r for r in rows if r and not r[0].startswith("#")]
    assert rows and all(r[1] in ("ok", "fp", "unsure") for r in rows)
    assert all(len(r) == 3 for r in rows if r[1] != "ok")
    names = [r[0] for r in rows]
    assert len(names) == len(set(names)) and names == sorted(names)


def test_adult_wins_over_dating_and_top_level_domain_counts(rater: NameRater) -> None:
    match = rater.rate("sexdating.com")
    assert match is not None and match.category == "adult"
    tld = rater.rate("anything.xxx")
    assert tld is not None and tld.category == "adult" and "'.xxx'" in tld.rule


def test_idn_labels_are_read_after_decoding(rater: NameRater) -> None:
    cyrillic = "порно-видео".encode("idna").decode()  # xn--... A-label
    assert cyrillic.startswith("xn--")
    assert normalise_label(cyrillic) == "porno-video"
    match = rater.rate(f"{cyrillic}.xn--p1ai")
    assert match is not None and match.category == "adult"
    vietnamese = "nhàcái88".encode("idna").decode()
    assert normalise_label(vietnamese) == "nhacai88"
    assert normalise_label("đánhbài") == "danhbai"


def test_categories_can_be_limited(rater: NameRater) -> None:
    only_adult = NameRater(categories=("adult",))
    assert only_adult.rate("online-casino-bonus.com") is None
    assert rater.rate("online-casino-bonus.com") is not None
    with pytest.raises(RaterError, match="no words for: violence"):
        NameRater(categories=("adult", "violence"))


def test_the_rater_is_deterministic(rater: NameRater) -> None:
    names = [q for q, _, _ in MUST_MATCH] + MUST_NOT_MATCH
    assert [rater.rate(n) for n in names] == [NameRater().rate(n) for n in names]


def test_registrable_domain_uses_the_public_suffix_list() -> None:
    assert registrable_domain("a.b.example.co.uk") == "example.co.uk"
    assert registrable_domain("www.pornhub.com") == "pornhub.com"
    assert registrable_domain("co.uk") is None


# ---------------------------------------------------------------------------- RatedIndex


class ListIndex:
    """A tiny stand-in for CategoryIndex: exact names and their parents."""

    def __init__(self, entries: dict[str, Match]) -> None:
        self.entries = entries
        self.calls = 0

    def lookup(self, qname: str) -> Sequence[Match]:
        self.calls += 1
        labels = qname.split(".")
        return tuple(m for i in range(len(labels)) if (m := self.entries.get(".".join(labels[i:]))))


class CountingRater(NameRater):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def rate(self, qname: str) -> Match | None:
        self.calls.append(qname)
        return super().rate(qname)


def test_rater_runs_once_per_name_and_domain() -> None:
    rater = CountingRater()
    index = RatedIndex(ListIndex({}), rater, category_ages=AGES)
    first = index.lookup("www.freepornvideos.com")
    for _ in range(5):
        assert index.lookup("www.freepornvideos.com") == first
    assert index.lookup("cdn.freepornvideos.com") == first  # same registrable domain
    assert rater.calls == ["freepornvideos.com"]
    assert len(first) == 1 and first[0].category == "adult" and first[0].min_age == 18
    assert index.lookup("example.com") == ()
    assert index.lookup("example.com") == ()
    assert rater.calls == ["freepornvideos.com", "example.com"]
    assert index.rated == 2


def test_category_age_comes_from_the_catalogue() -> None:
    index = RatedIndex(ListIndex({}), NameRater(), category_ages={"dating": 16})
    (match,) = index.lookup("singles-dating-now.com")
    assert (match.category, match.min_age, match.source) == ("dating", 16, SOURCE)


def test_popular_names_are_never_rated() -> None:
    rater = CountingRater()
    popular = frozenset({"sexualhealthy.com", "bet.com"})
    index = RatedIndex(ListIndex({}), rater, category_ages=AGES, popular=popular)
    assert index.lookup("www.bet.com") == ()
    assert index.lookup("bet.com") == ()
    assert rater.calls == []
    assert index.lookup("www.bet365-mirror.com") != ()  # not popular: rated


def test_list_matches_win_over_the_rater() -> None:
    listed = Match("adult", 18, "sinfonietta", rule="pornhubz.com", line=7)
    games = Match("games", 13, "ut1-games", rule="sexgames-online.com")
    allow = Match("education", 0, "education", exception=True, rule="xxxschool.edu")
    rater = CountingRater()
    index = RatedIndex(
        ListIndex({"pornhubz.com": listed, "sexgames-online.com": games, "xxxschool.edu": allow}),
        rater,
        category_ages=AGES,
    )
    assert index.lookup("www.pornhubz.com") == (listed,)  # a list entry in a rater category
    assert index.lookup("lab.xxxschool.edu") == (allow,)  # someone vouched for it
    assert rater.calls == []
    both = index.lookup("sexgames-online.com")  # listed as games: still rated adult
    assert both[0] == games and both[1].category == "adult" and both[1].source == SOURCE


def test_rater_off_leaves_the_base_index_alone() -> None:
    base = ListIndex({})
    index = RatedIndex(base, None, category_ages=AGES)
    assert index.lookup("freepornvideos.com") == ()
    assert base.calls == 1


def test_cache_is_bounded() -> None:
    rater = CountingRater()
    index = RatedIndex(ListIndex({}), rater, category_ages=AGES, cache_size=50)
    for i in range(300):
        index.lookup(f"name{i}.example.com")
    assert len(index._by_name) <= 50
    assert len(rater.calls) == 1  # one registrable domain, rated once


# ---------------------------------------------------------------------------- data files


def test_education_set_has_the_issue_sites_and_no_rated_name(rater: NameRater) -> None:
    names = load_education()
    for site in [
        "pbskids.org",
        "brainpop.com",
        "nationalgeographic.com",
        "chess.com",
        "teams.microsoft.com",
        "khanacademy.org",
        "wikipedia.org",
        "duolingo.com",
        "scratch.mit.edu",
        "code.org",
        "accounts.google.com",
        "login.microsoftonline.com",
        "hocmai.vn",
        "olm.vn",
        "vietjack.com",
    ]:
        assert site in names
    for broad in [
        "youtube.com",
        "reddit.com",
        "tumblr.com",
        "blogspot.com",
        "discord.com",
        "google.com",
        "microsoft.com",
    ]:
        assert broad not in names
    assert [n for n in names if rater.rate(n) is not None] == []
    assert len(names) > 150


def test_popular_list_is_shipped() -> None:
    popular = load_popular()
    assert 9000 < len(popular) < 11000
    assert {"google.com", "wikipedia.org", "facebook.com"} <= popular
    assert all("." in n and n == n.lower() for n in popular)


def test_load_popular_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "popular.txt"
    path.write_text("# comment\nExample.COM\n\nfoo.org # trailing\n")
    assert load_popular(path) == frozenset({"example.com", "foo.org"})
    with pytest.raises(RaterError, match="popular-domains"):
        load_popular(tmp_path / "missing.txt")


def _shared_data() -> Path:
    repo = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("NESTGUARD_SHARED_DATA", repo.parent / "shared" / "data"))


def test_education_set_is_in_no_adult_or_gambling_list() -> None:
    data = _shared_data()
    lists = [
        "sinfonietta/pornography-hosts",
        "sinfonietta/gambling-hosts",
        "trustpositif-mirror/gambling-porn-only.txt",
        "ut1/blacklists/gambling/domains",
    ]
    if not all((data / rel).is_file() for rel in lists):
        pytest.skip(f"shared data not found at {data}")
    bad: set[str] = set()
    for rel in lists:
        with open(data / rel, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if parts and not parts[0].startswith("#"):
                    bad.add(parts[-1].lower())
    allowed = set(load_education())
    # A listed adult/gambling name that the allow set would cover (the name or a parent):
    hits = sorted(
        b for b in bad if any(".".join(b.split(".")[i:]) in allowed for i in range(b.count(".")))
    )
    assert hits == []


def test_english_word_list_is_gzipped_and_attributed() -> None:
    path = Path(__file__).resolve().parents[2] / "blocklists" / "data" / "rater-english.txt.gz"
    with gzip.open(path, "rt") as f:
        head = f.read(400)
    assert "wordninja" in head and "MIT" in head


def test_government_and_school_suffixes_are_not_rated(rater: NameRater) -> None:
    assert rater.rate("homeaffairs.gov.au") is None  # 'affairs' under a vetted suffix
    assert rater.rate("sexualhealth.edu") is None
    assert rater.rate("sexclinic.ac.uk") is None
    assert rater.rate("sexshop.co.uk") is not None  # an open registry is read
    assert rater.rate("porn.ac") is not None  # .ac alone is an open ccTLD


def test_rebased_index_keeps_the_ratings() -> None:
    rater = CountingRater()
    old = RatedIndex(ListIndex({}), rater, category_ages=AGES)
    assert old.lookup("www.freepornvideos.com")[0].source == SOURCE
    listed = Match("adult", 18, "new-list", rule="freepornvideos.com")
    new = old.rebased(ListIndex({"freepornvideos.com": listed}))
    assert new.lookup("www.freepornvideos.com") == (listed,)
    assert new.lookup("cdn.freepornvideos.com") == (listed,)
    assert new.lookup("mirror.freepornvideos.net")[0].source == SOURCE
    assert rater.calls == ["freepornvideos.com", "freepornvideos.net"]


def test_public_suffix_list_is_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import blocklists.rater as rater_module

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the rater tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(rater_module, "_extractor", None)  # build a fresh extractor
    assert registrable_domain("www.example.co.uk") == "example.co.uk"
    assert NameRater().rate("online-casino-bonus.com") is not None


# ---------------------------------------------------------------------------- issue 11

REVIEW = Path(__file__).resolve().parents[1] / "bench" / "rater_popular_review.txt"


def reviewed_false_alarms() -> list[str]:
    rows = [line.split(maxsplit=2) for line in REVIEW.read_text("utf-8").splitlines()]
    return [r[0] for r in rows if len(r) >= 2 and not r[0].startswith("#") and r[1] == "fp"]


def test_no_reviewed_false_alarm_is_rated(rater: NameRater) -> None:
    """Every popular name the hand review marks as a false alarm stays unrated."""
    names = reviewed_false_alarms()
    assert len(names) >= 30
    assert [(n, rater.rate(n)) for n in names if rater.rate(n) is not None] == []


# The splitter keeps a strong word whole where the cheapest split breaks it, and only there.
SPLITS = [
    ("webcamsexup.com", ("webcamsex", "up"), "adult"),
    ("freesexup.com", ("free", "sex", "up"), "adult"),
    ("hubbasex.com", ("hubba", "sex"), "adult"),
    ("essex.ac.uk", ("essex",), None),
    ("middlesex.com", ("middlesex",), None),
    ("sussex.com", ("sussex",), None),
    ("therapist.com", ("therapist",), None),
    ("scunthorpe.com", ("scunthorpe",), None),
    ("dickssportinggoods.com", ("dickssportinggoods",), None),
    ("expertsexchange.com", ("experts", "exchange"), None),
    ("betaarchive.com", ("beta", "archive"), None),  # not 'bet' + a lone 'a'
    ("jeuxvideo.com", ("jeux", "video"), None),  # not 'jeu' + 'xvideo'
    ("lasexta.com", ("las", "ext", "a"), None),  # the TV channel: no 'la' + 'sex' + 'ta'
    ("onsexprime.fr", ("on", "s", "exprime"), None),  # sex education, a splitting-help word
]


@pytest.mark.parametrize(("qname", "words", "category"), SPLITS)
def test_splits_keep_strong_words_and_real_words(
    rater: NameRater, qname: str, words: tuple[str, ...], category: str | None
) -> None:
    assert rater.words(qname) == words
    match = rater.rate(qname)
    assert (match.category if match else None) == category, rater.explain(qname)


# The shapes of the misses in the issue, in the languages children meet (invented names).
MUST_MATCH_ISSUE_11 = [
    ("topescortclub.com", "adult", "'escort' 0.8"),
    ("freewebcamgirls.net", "adult", "'camgirls'"),
    ("eroticmassageparlour.com", "adult", "'erotic' 0.8"),
    ("pantyhose-lovers.net", "adult", "'pantyhose'"),
    ("geile-fick-filme.de", "adult", "'fick' 0.6"),
    ("tittenparade.de", "adult", "'titten'"),
    ("geilefotzen.de", "adult", "'fotzen'"),
    ("prostitutki-spb.ru", "adult", "'prostitutki'"),
    ("putasmaduras.es", "adult", "'putas'"),
    ("novinhas-safadas.com.br", "adult", "'safadas'"),
    ("cochonnes-en-direct.fr", "adult", "'cochonnes'"),
    ("pompini-gratis.it", "adult", "'pompini'"),
    ("bokepjepang.xyz", "adult", "'bokep'"),
    ("ngentot-terbaru.com", "adult", "'ngentot'"),
    ("ceritadewasa.net", "adult", "'ceritadewasa'"),
    ("seqing-dianying.com", "adult", "'seqing'"),
    ("huangsewang.cn", "adult", "'huangse'"),
    ("hentai-doujin.net", "adult", "'hentai'"),
    ("javhd-free.com", "adult", "'javhd'"),
    ("hitozuma-club.jp", "adult", "'hitozuma'"),
    ("phimnguoilon.top", "adult", "'nguoilon'"),
    ("xocdia88.club", "gambling", "'xocdia'"),
    ("soicau-mienbac.net", "gambling", "'soicau'"),
    # the learned layer: words the hand-written table weighs too little alone
    ("onlygirlspics.com", "adult", "'girls'"),
    ("cumlovers.net", "adult", "'cum' 0."),
    ("beeg.world", "adult", "'beeg' 1.0"),
    ("lustymaturemoms.com", "adult", "'mature' 0.6 + 'moms' 0."),
    ("vuabet88.app", "gambling", "'88' 0."),
    # a numbered name on .win, the betting-mirror top-level domain of the training lists
    ("zq77.win", "gambling", "'.win' 0.8"),
    ("kbz8.win", "gambling", "'.win' 0.8"),
    # a site on a hosting platform is read by its own label
    ("something-porn.pages.dev", "adult", "'porn'"),
    ("casino-bonus.github.io", "gambling", "'casino'"),
    ("hot-milfs.blogspot.com", "adult", "'milfs'"),
    ("phimsex.netlify.app", "adult", "'sex'"),
    ("free-porn.vercel.app", "adult", "'porn'"),
    ("cdn.xxx-tube.web.app", "adult", "'xxx'"),
]


@pytest.mark.parametrize(("qname", "category", "evidence"), MUST_MATCH_ISSUE_11)
def test_issue_11_names_are_rated(
    rater: NameRater, qname: str, category: str, evidence: str
) -> None:
    match = rater.rate(qname)
    assert match is not None, rater.explain(qname)
    assert match.category == category
    assert evidence in match.rule


MUST_NOT_MATCH_ISSUE_11 = [
    # platforms themselves, and sites on them with innocent labels
    "pages.dev",
    "github.io",
    "blogspot.com",
    "netlify.app",
    "vercel.app",
    "web.app",
    "wordpress.com",
    "tumblr.com",
    "gitbook.io",
    "math-homework.github.io",
    "my-school-news.blogspot.com",
    # innocent names near the new words
    "massagechair.com",
    "throatcancer.org",
    "kaffeenudel.de",
    "alfastrah.ru",
    "riyasewana.com",
    "kathputali.com",
    "starcomputacion.com.ar",
    "lemonshcherbet.com",
    "yubetsu.com",
    "totolink.net",
    "mgmtimber.co.uk",
    "csgopedia.net",
    "vidangel.com",
    "bingobaker.com",
    # .win needs a number or a gambling word beside it
    "notes.win",
    "windows.win",
    "zq77.com",
    # sex education (UT1 sexual_education)
    "sexinfoonline.com",
    "onsexprime.fr",
    "questionsexualite.fr",
    "sexualityandu.ca",
]


@pytest.mark.parametrize("qname", MUST_NOT_MATCH_ISSUE_11)
def test_issue_11_innocent_names_are_not_rated(rater: NameRater, qname: str) -> None:
    assert rater.rate(qname) is None, rater.explain(qname)


def test_a_platform_subdomain_is_rated_and_cached_under_the_platform() -> None:
    rater = CountingRater()
    index = RatedIndex(ListIndex({}), rater, category_ages=AGES)
    assert registrable_domain("a.something-porn.pages.dev") == "something-porn.pages.dev"
    assert registrable_domain("pages.dev") is None
    hit = index.lookup("www.something-porn.pages.dev")
    assert len(hit) == 1 and hit[0].category == "adult"
    assert index.lookup("cdn.something-porn.pages.dev") == hit
    assert index.lookup("homework-help.pages.dev") == ()
    assert index.lookup("pages.dev") == ()  # a platform is never rated
    assert rater.calls == ["something-porn.pages.dev", "homework-help.pages.dev"]


def test_evidence_says_the_words_and_their_weights(rater: NameRater) -> None:
    match = rater.rate("topescortclub.com")
    assert match is not None
    assert match.rule == "name contains 'escort' 0.8 + 'club' 0.2"
    assert 0.8 < match.confidence < 1.0
    learned = rater.rate("onlygirlspics.com")
    assert learned is not None and learned.rule.endswith("(learned)")
    assert "'girls' 0." in learned.rule and " + " in learned.rule


def test_lists_check_shows_the_words_and_the_confidence(rater: NameRater) -> None:
    from blocklists.sync import explain_matches

    index = RatedIndex(ListIndex({}), rater, category_ages=AGES)
    [line] = explain_matches(index, "www.topescortclub.com")
    assert line.startswith("adult (18+) from the name rater: rule name contains 'escort' 0.8")
    assert "(confidence 0.8" in line


def _table(**weights: tuple[float, ...]) -> Learned:
    return Learned(("adult", "gambling"), (-1.0, -1.0), (1.0, 1.0), weights, frozenset())


def test_the_learned_layer_never_undoes_a_hand_written_exclusion() -> None:
    # a table that would rate 'education', a splitting-help word and a pair with it as adult
    table = _table(
        **{
            "w:education": (5.0, 5.0),
            "w:xxxlutz": (5.0, 5.0),
            "w:scunthorpe": (5.0, 0.0),
            "p:sex_education": (5.0, 0.0),
            "w:kitten": (5.0, 0.0),
        }
    )
    rater = NameRater(learned=table)
    assert rater.rate("kittenpictures.com") is not None  # the table itself works
    assert rater.rate("education.com") is None  # a negative hand word
    assert rater.rate("sexeducation.org") is None  # the hand layer's pull-back stands
    assert rater.rate("xxxlutz.de") is None  # a splitting-help word
    assert rater.rate("scunthorpe.com") is None
    hand_only = NameRater(learned=None)
    assert hand_only.rate("kittenpictures.com") is None


def test_the_learned_layer_needs_words_not_only_a_shape() -> None:
    table = _table(**{"t:top": (0.0, 3.0), "d:88": (0.0, 3.0), "w:lucky": (0.0, 0.5)})
    rater = NameRater(learned=table)
    assert rater.rate("x7f3a88.top") is None  # digits and a top-level domain alone
    table = _table(**{"t:top": (0.0, 1.0), "w:lucky": (0.0, 1.5)})
    match = NameRater(learned=table).rate("luckyday.top")
    assert match is not None and match.category == "gambling"
    # 'lucky' is weak by hand (0.5): the table's 1.5 is capped there, so it needs the '.top'
    assert match.rule == "name contains 'lucky' 0.5 + '.top' 0.5 (learned)"


def test_the_shipped_table_is_small_and_well_formed() -> None:
    path = Path(__file__).resolve().parents[2] / "blocklists" / "data" / "rater_weights.tsv"
    assert path.stat().st_size < 400_000
    learned = load_learned()
    assert set(learned.categories) <= set(CATEGORIES) and "adult" in learned.categories
    assert len(learned.weights) > 1000
    assert all(t > b for t, b in zip(learned.threshold, learned.bias, strict=True))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("bias\t0\nthreshold\t1\n", "missing or bad header"),
        ("categories\tadult\nbias\t0\nthreshold\t1\nw:x\t1\t2\n", ":4: want '<feature>'"),
        ("categories\tadult\nbias\t0\nthreshold\t1\nw:x\tlots\n", ":4: bad weight"),
        ("categories\tviolence\nbias\t0\nthreshold\t1\n", "disagree"),
    ],
)
def test_a_bad_weights_file_is_refused_with_its_line(text: str, error: str) -> None:
    with pytest.raises(RaterError, match=error):
        parse_learned(text.splitlines(), "rater_weights.tsv")


def test_rating_with_the_learned_layer_never_imports_numpy() -> None:
    """The training script uses numpy; the server reads the table with plain Python."""
    import subprocess
    import sys

    code = (
        "import sys; from blocklists.rater import NameRater\n"
        "r = NameRater()\n"
        "assert r.rate('onlygirlspics.com') is not None and r.rate('example.org') is None\n"
        "print('numpy' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_the_suffix_list_is_read_when_the_rater_is_built_not_on_the_first_query(
    monkeypatch,
) -> None:
    """tldextract reads its public suffix list on the first name it sees (60-120 ms of CPU):
    that must happen when the rater is built, not while a query waits."""
    import time

    from blocklists import rater as rater_module

    monkeypatch.setattr(rater_module, "_extractor", None)
    rater_module.NameRater(learned=None)
    started = time.thread_time()
    assert rater_module.registrable_domain("a.b.example.co.uk") == "example.co.uk"
    assert time.thread_time() - started < 0.02
