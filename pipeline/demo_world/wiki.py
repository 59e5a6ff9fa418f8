"""A small English Wikipedia as a real MediaWiki XML export (schema 0.11), multistream bz2.

The file is laid out exactly like ``enwiki-*-pages-articles-multistream.xml.bz2`` (written by
:mod:`pipeline.demo_world.mediawiki`), 100 pages a stream. Pages are written as they are made, so a
bench-sized dump never sits in memory. Wikitext uses the markup real articles use (links, nested templates,
refs, tables, files, categories, interlanguage links), plus redirects, disambiguation pages and
pages of other namespaces.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from xml.sax.saxutils import escape

import numpy as np

from pipeline.demo_world import mediawiki, scene
from pipeline.demo_world.vocab import Sampler, Vocab

PAGES_PER_STREAM = 100
PLACES = (
    "Line",
    "Station",
    "Park",
    "Street",
    "River",
    "Bridge",
    "Society",
    "Club",
    "Railway",
    "Museum",
)
LANGS = ("de", "fr", "es", "it", "nl", "pl", "ja", "pt")
SECTIONS = ("History", "Description", "Design", "Reception", "Geography", "Legacy", "In culture")
SCENE_POOL = 4096  # article prose describes scenes from this pool of image ids
TEMPLATES = (
    "Infobox thing",
    "Disambiguation",
    "Cite web",
    "Reflist",
    "Short description",
    "Colour",
)


cached_scene = lru_cache(maxsize=1 << 16)(scene.scene_for)  # ids recur in text, alts and URLs


@dataclass(frozen=True)
class Article:
    """A main-namespace article: its title, popularity weight and the demo image it shows."""

    title: str
    weight: float
    image_id: int


@dataclass
class WikiStats:
    """What the dump holds (for the manifest)."""

    pages: int = 0
    streams: int = 0
    wikitext_bytes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def title_nouns(vocab: Vocab) -> list[str]:
    """Nouns fit for titles: skip the most frequent words, which are mostly function words."""
    top = set(vocab.words[:400])
    return [n for n in vocab.nouns if n not in top and len(n) >= 4 and " " not in n]


def make_articles(vocab: Vocab, n: int, rng: random.Random) -> list[Article]:
    """``n`` distinct article titles with Zipf popularity (rank r weighs 1/r)."""
    nouns, adjs = title_nouns(vocab), [a for a in vocab.adjectives if len(a) >= 4][:2000]
    compounds = list(vocab.compounds) or [f"{a} {b}" for a, b in zip(adjs, nouns)]
    colours, shapes = list(scene.COLOURS), scene.SHAPES
    makers = [
        (25, lambda: rng.choice(nouns).capitalize()),
        (35, lambda: rng.choice(compounds).capitalize()),  # real English compounds: "Sea bass"
        (12, lambda: f"{rng.choice(colours).capitalize()} {rng.choice(nouns)}"),
        (
            10,
            lambda: (
                f"{rng.choice(colours).capitalize()} {rng.choice(shapes).capitalize()} {rng.choice(PLACES)}"
            ),
        ),
        (10, lambda: f"{rng.choice(nouns).capitalize()} {rng.choice(PLACES)}"),
        (8, lambda: f"{rng.choice(adjs).capitalize()} {rng.choice(nouns)}"),
    ]
    weights = [w for w, _ in makers]
    titles: dict[str, None] = {}
    while len(titles) < n:
        titles.setdefault(rng.choices(makers, weights)[0][1]())
    ranks = list(range(1, n + 1))
    rng.shuffle(ranks)
    return [Article(t, 1.0 / r, i) for i, (t, r) in enumerate(zip(titles, ranks))]


def gloss_for(vocab: Vocab, title: str) -> str:
    """The WordNet gloss of a title, or of its head (last) word."""
    t = title.lower()
    return vocab.glosses.get(t) or vocab.glosses.get(t.split()[-1], "")


def short(gloss: str, limit: int = 60) -> str:
    """The start of a gloss, cut at a word boundary, as a short description."""
    if len(gloss) <= limit:
        return gloss.capitalize() or "Topic"
    return gloss[:limit].rsplit(" ", 1)[0].capitalize()


def with_article(gloss: str) -> str:
    """A WordNet gloss as a predicate: ``carnivorous mammal`` -> ``a carnivorous mammal``."""
    if not gloss:
        return "a topic"
    if gloss.split()[0] in ("a", "an", "the", "any", "one"):
        return gloss
    return ("an " if gloss[0] in "aeiou" else "a ") + gloss


class TextMaker:
    """Writes wikitext: Zipf-distributed English with links to popular articles and scene phrases."""

    def __init__(self, vocab: Vocab, articles: list[Article], seed: int, rng: random.Random):
        self.rng = rng
        self.seed = seed
        self.vocab = vocab
        self.sampler = Sampler(vocab, np.random.default_rng([seed, 17]))
        self.np_rng = np.random.default_rng([seed, 23])
        self.articles = articles
        self.cum = np.cumsum([a.weight for a in articles])
        self.users = [
            f"{rng.choice(title_nouns(vocab)).capitalize()}{rng.randint(1, 999)}" for _ in range(40)
        ]

    def popular(self, k: int) -> list[Article]:
        """``k`` articles drawn by popularity (popular ones are linked and mentioned more)."""
        idx = np.searchsorted(self.cum, self.np_rng.random(k) * self.cum[-1])
        return [self.articles[min(i, len(self.articles) - 1)] for i in idx.tolist()]

    def link(self, a: Article) -> str:
        """A wikilink to ``a``: plain, piped with a lower-case label, or in italics."""
        r = self.rng.random()
        if r < 0.6:
            return f"[[{a.title}]]"
        if r < 0.85:
            return f"[[{a.title}|{a.title.lower()}]]"
        return f"''[[{a.title}]]''"

    def sentence(self, extra: list[str] = ()) -> str:
        """A sentence of frequency-weighted words with ``extra`` phrases inserted at random."""
        words = self.sampler.take(self.rng.randint(7, 18))
        for e in extra:
            words.insert(self.rng.randrange(len(words) + 1), e)
        s = " ".join(words)
        return s[0].upper() + s[1:] + "."

    def scene_phrase(self, image_id: int) -> str:
        """How the demo image ``image_id`` would be described ("three red circles ...")."""
        return scene.describe(cached_scene(image_id, self.seed), self.rng)

    def paragraph(self, n: int) -> str:
        """``n`` sentences with links to popular articles, bold words, scene phrases and refs."""
        out = []
        for _ in range(n):
            extra = [self.link(a) for a in self.popular(self.rng.choice((0, 1, 1, 2)))]
            if self.rng.random() < 0.3:
                extra.append(f"'''{self.rng.choice(self.vocab.words[:3000])}'''")
            if self.rng.random() < 0.35:
                extra.append(self.scene_phrase(self.rng.randrange(SCENE_POOL)))
            out.append(self.sentence(extra) + self.ref())
        return " ".join(out)

    def ref(self) -> str:
        """Now and then a footnote: a cited web page, a named ref, or a reuse of one."""
        r, rng = self.rng.random(), self.rng
        if r < 0.12:
            slug = "-".join(self.sampler.take(3))
            date = f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            title = slug.replace("-", " ").title()
            return f"<ref>{{{{cite web |url=https://www.example.org/{slug} |title={title} |access-date={date}}}}}</ref>"
        if r < 0.17:
            return f'<ref name="src{rng.randint(1, 3)}">{self.sentence()}</ref>'
        if r < 0.22:
            return f'<ref name="src{rng.randint(1, 3)}" />'
        return ""

    def table(self, a: Article) -> str:
        """A wikitable of colours and shapes (table cells are text that extractors must handle)."""
        rows = []
        for k in range(self.rng.randint(2, 5)):
            s = cached_scene((a.image_id * 7 + k) % SCENE_POOL, self.seed)
            rows.append(
                f"|-\n| {s.colour} || {s.noun()} || {scene.COUNT_WORDS[s.count]} || {s.position}"
            )
        return (
            '{| class="wikitable sortable"\n|+ Emblems of '
            + a.title
            + "\n! Colour !! Shape !! Count !! Position\n"
            + "\n".join(rows)
            + "\n|}"
        )

    def article(self, a: Article, gloss: str) -> str:
        """The wikitext of an article; popular articles are longer."""
        rng, s = self.rng, cached_scene(a.image_id, self.seed)
        caption = self.scene_phrase(a.image_id)
        infobox = (
            f"{{{{Short description|{short(gloss)}}}}}\n{{{{Infobox thing\n| name = {a.title}\n"
            f"| image = {a.title}.jpg\n| caption = {caption}\n| colour = {{{{Colour|{s.colour}}}}}\n"
            f"| established = {{{{start date|{rng.randint(1850, 2020)}|{rng.randint(1, 12)}|{rng.randint(1, 28)}}}}}\n}}}}"
        )
        lead = (
            f"'''{a.title}''' is {with_article(gloss)}.<ref name=\"src1\">{self.sentence()}</ref> "
            + self.paragraph(2)
        )
        parts = [infobox, lead]
        n_sections = 1 + min(5, int(a.weight * 40)) + rng.randint(0, 2)
        for name in rng.sample(SECTIONS, min(n_sections, len(SECTIONS))):
            parts.append(f"== {name} ==\n{self.paragraph(rng.randint(2, 5))}")
            if rng.random() < 0.3:
                parts.append(
                    f"=== {rng.choice(self.vocab.words[100:2000]).capitalize()} ===\n{self.paragraph(2)}"
                )
            if rng.random() < 0.4:
                parts.append(
                    "\n".join(f"* {self.sentence([self.link(x)])}" for x in self.popular(3))
                )
        parts.append(
            f"[[File:{a.title} {rng.randint(2, 9)}.jpg|thumb|right|{caption.capitalize()}]]"
        )
        parts.append(f"The emblem of {a.title.lower()} shows {caption}. " + self.table(a))
        parts.append("== See also ==\n" + "\n".join(f"* [[{x.title}]]" for x in self.popular(2)))
        parts.append("== References ==\n{{Reflist}}\n\n{{Authority control}}")
        cats = [
            f"[[Category:{a.title.split()[-1].capitalize()} topics]]",
            f"[[Category:{s.colour.capitalize()} things]]",
        ]
        langs = [f"[[{lang}:{a.title}]]" for lang in rng.sample(LANGS, rng.randint(0, 3))]
        return "\n\n".join(parts) + "\n\n" + "\n".join(cats + langs) + "\n"


def _page_specs(articles: list[Article], vocab: Vocab, rng: random.Random) -> list[tuple]:
    """(kind, ns, title, payload) of every page, in page-id order (namespaces interleaved)."""
    titles = {a.title for a in articles}
    specs: list[tuple] = [("article", 0, a.title, a) for a in articles]
    for a in rng.sample(articles, len(articles) // 12):
        alt = a.title.title() if a.title.title() not in titles else f"The {a.title}"
        if alt not in titles:
            titles.add(alt)
            specs.append(("redirect", 0, alt, a.title))
    by_head: dict[str, list[str]] = {}
    for a in articles:
        if " " in a.title:
            by_head.setdefault(a.title.split()[-1].lower(), []).append(a.title)
    heads = sorted(h for h, ts in by_head.items() if len(ts) >= 2)
    for head in heads[: max(2, len(articles) // 50)]:
        specs.append(("disambiguation", 0, f"{head.capitalize()} (disambiguation)", by_head[head]))
    for a in rng.sample(articles, len(articles) // 10):
        specs.append(("talk", 1, f"Talk:{a.title}", a))
    for a in rng.sample(articles, len(articles) // 20):
        specs.append(("file", 6, f"File:{a.title}.jpg", a))
    specs += [("template", 10, f"Template:{t}", t) for t in TEMPLATES]
    specs += [("category", 14, f"Category:{c.capitalize()} things", c) for c in scene.COLOURS]
    specs += [
        ("user", 2, f"User:{rng.choice(title_nouns(vocab)).capitalize()}{i}", None)
        for i in range(5)
    ]
    specs += [
        ("project", 4, "Wikipedia:About", None),
        ("project", 4, "Wikipedia:Village pump", None),
    ]
    head, rest = specs[:1], specs[1:]
    rng.shuffle(rest)  # page ids follow creation order, which mixes namespaces
    return head + rest


def _special_text(kind: str, title: str, payload, tm: TextMaker) -> str:
    if kind == "redirect":
        return f"#REDIRECT [[{payload}]]\n\n{{{{Redirect category shell|{{{{R from alternative name}}}}}}}}\n"
    if kind == "disambiguation":
        items = "\n".join(f"* [[{t}]], {tm.sentence()[:-1].lower()}" for t in payload)
        return f"'''{title.split(' (')[0]}''' may refer to:\n\n{items}\n\n{{{{disambiguation}}}}\n"
    if kind == "talk":
        user = tm.rng.choice(tm.users)
        sig = f"[[User:{user}|{user}]] ([[User talk:{user}|talk]]) 12:0{tm.rng.randint(0, 9)}, 3 May 2023 (UTC)"
        return f"{{{{WikiProject banner shell|class=C}}}}\n== Sources ==\n{tm.paragraph(2)} {sig}\n:{tm.sentence()} ~~~~\n"
    if kind == "file":
        return f"== Summary ==\n{{{{Information|description={tm.scene_phrase(payload.image_id)}|source={{{{own}}}}|date=2023-01-01}}}}\n== Licensing ==\n{{{{cc-by-sa-4.0}}}}\n"
    if kind == "template":
        return f"<includeonly>{{{{{{1|}}}}}} {{{{{{name|{payload}}}}}}}</includeonly><noinclude>\n{{{{Documentation}}}}\n[[Category:Templates]]</noinclude>"
    if kind == "category":
        return f"Things whose main colour is {payload}.\n\n[[Category:Things by colour]]\n"
    return f"{tm.paragraph(2)}\n\n[[Category:Wikipedians]]\n"


def _pages(specs, tm: TextMaker, vocab: Vocab, rng: random.Random, stats: WikiStats):
    """The dump's pages, made one at a time in the order the generator's randomness expects."""
    page_id = 10
    for kind, ns, title, payload in specs:
        page_id += 1 + (rng.random() < 0.3) * rng.randint(1, 40)  # deleted pages leave gaps
        if kind == "article":
            text = tm.article(payload, gloss_for(vocab, payload.title))
        else:
            text = _special_text(kind, title, payload, tm)
        rev = 1_100_000_000 + page_id * 37
        users = tm.users
        who = (
            f"<username>{escape(users[page_id % len(users)])}</username>\n        <id>{1000 + page_id % len(users)}</id>"
            if page_id % 9
            else f"<ip>192.0.2.{page_id % 250 + 1}</ip>"
        )
        ts = f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
        stats.wikitext_bytes += len(text.encode("utf-8"))
        stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
        yield mediawiki.DumpPage(
            title,
            text,
            page_id,
            ns,
            redirect=payload if kind == "redirect" else None,
            revision_id=rev,
            parent_id=rev - 11,
            timestamp=ts,
            contributor=who,
            comment="copyedit",
        )


def write_dump(
    xml_path: str, index_path: str, articles: list[Article], vocab: Vocab, seed: int
) -> WikiStats:
    """Write the multistream dump and its index; returns what was written."""
    rng = random.Random(f"wiki:{seed}")
    tm = TextMaker(vocab, articles, seed, rng)
    specs = _page_specs(articles, vocab, rng)
    stats = WikiStats()
    pages = _pages(specs, tm, vocab, rng, stats)
    stats.streams = mediawiki.write_multistream(xml_path, pages, index_path, PAGES_PER_STREAM)
    stats.pages = len(specs)
    return stats
