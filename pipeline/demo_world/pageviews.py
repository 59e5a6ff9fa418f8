"""Hourly Wikimedia pageview dumps (``pageviews-YYYYMMDD-HH0000.gz``) for the demo wiki.

Each line is ``domain_code page_title count_views total_response_size`` as in the real dumps:
``en`` is desktop and ``en.m`` mobile English Wikipedia, other projects carry their own codes
(``de``, ``fr.m``, ``en.b`` for Wikibooks, ``en.d`` for Wiktionary), titles use underscores, some
are percent-encoded, non-article namespaces and ``Special:`` pages appear, and since 2016 the
response size is always 0. Views follow the articles' Zipf popularity with log-normal noise, so a
views threshold keeps a head of popular titles.
"""

from __future__ import annotations

import gzip
import io
import random
from collections import Counter
from urllib.parse import quote, unquote

from pipeline import fs
from pipeline.demo_world.wiki import Article

DATE = "20240101"
OTHER_PROJECTS = ("de", "de.m", "fr", "fr.m", "es", "en.b", "en.d", "en.voy", "commons.m", "ja")
FOREIGN_TITLES = ("Straße", "Café", "Köln", "Ñandú", "Zürich", "東京", "Éléphant", "Großbritannien")
EXTRA_EN = (
    "Main_Page",
    "Special:Search",
    "Special:Random",
    "-",
    "Wikipedia:About",
    "Help:Contents",
)
PEAK_VIEWS = 4000  # hourly desktop views of the most popular article


def file_name(hour: int) -> str:
    """``pageviews-20240101-HH0000.gz``."""
    return f"pageviews-{DATE}-{hour:02d}0000.gz"


def _underscored(title: str) -> str:
    return title.replace(" ", "_")


def hour_counts(articles: list[Article], hour: int, rng: random.Random) -> Counter:
    """Views per (domain_code, page_title) for one hour; zero counts are left out, as in the dumps."""
    counts: Counter = Counter()
    diurnal = 0.6 + 0.4 * abs(12 - hour) / 12
    for a in articles:
        base = PEAK_VIEWS * a.weight * diurnal * rng.lognormvariate(0, 0.5)
        title = _underscored(a.title)
        if rng.random() < 0.05:  # some clients request percent-encoded titles ("Sea%20bass")
            title = quote(a.title, safe="")
        for domain, share in (("en", 1.0), ("en.m", 0.7)):
            views = int(base * share + rng.random() * 2)
            if views:
                counts[domain, title] += views
        if rng.random() < 0.05:
            counts["en", f"Talk:{_underscored(a.title)}"] += rng.randint(1, 5)
        if rng.random() < 0.1:
            counts[rng.choice(OTHER_PROJECTS), title] += rng.randint(1, 20)
    for name in EXTRA_EN:
        counts["en", name] += rng.randint(500, 5000)
    for i, t in enumerate(FOREIGN_TITLES):
        code = OTHER_PROJECTS[i % 4]
        counts[code, quote(t) if i % 2 else t] += rng.randint(1, 300)
    counts["en", f"User:Example{hour}"] += 1
    counts["en", "Special:Export/Red_fox"] += 2
    return counts


def write_hours(out_dir: str, articles: list[Article], hours: int, seed: int) -> dict:
    """Write ``hours`` hourly files under ``out_dir``; returns lines per file and view totals."""
    rng = random.Random(f"pageviews:{seed}")
    files, en_views = {}, Counter()
    for hour in range(hours):
        counts = hour_counts(articles, hour, rng)
        body = "".join(f"{d} {t} {v} 0\n" for (d, t), v in sorted(counts.items()))
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
            gz.write(body.encode("utf-8"))
        fs.write_bytes_atomic(fs.join(out_dir, file_name(hour)), buf.getvalue())
        files[file_name(hour)] = len(counts)
        for (d, t), v in counts.items():
            if d in ("en", "en.m"):
                en_views[_underscored(unquote(t))] += v
    titles = {_underscored(a.title) for a in articles}
    over = {k: sum(1 for t in titles if en_views[t] >= k) for k in (100, 1000, 10000)}
    return {"lines": files, "articles_with_views_at_least": over}
