"""The demo URL/caption tables and pageview files read with pyarrow and the dump format's rules."""

from __future__ import annotations

import bz2
import gzip
import json
import re
from collections import Counter
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq
import pytest

from pipeline.demo_world import urls

PAGEVIEW_LINE = re.compile(r"^(?P<domain>[a-z]+(\.[a-z]+)?) (?P<title>\S+) (?P<views>[1-9]\d*) 0$")


@pytest.fixture(scope="module")
def manifest(tiny_world):
    return json.loads((tiny_world / "manifest.json").read_text())


def _read(world, name: str) -> pa.Table:
    path = str(world / "tables" / name)
    if name.endswith(".parquet"):
        return pq.read_table(path)
    if name.endswith(".tsv"):
        return pcsv.read_csv(
            path,
            pcsv.ReadOptions(column_names=["url", "caption"]),
            pcsv.ParseOptions(delimiter="\t", quote_char=False),
        )
    if name.endswith(".csv"):
        return pcsv.read_csv(path)
    with pa.input_stream(path, compression="gzip" if name.endswith(".gz") else None) as f:
        return pjson.read_json(f)


def test_tables_have_the_real_datasets_columns(tiny_world, manifest):
    laion = _read(tiny_world, "laion.parquet")
    assert laion.column_names == [
        "SAMPLE_ID",
        "URL",
        "TEXT",
        "HEIGHT",
        "WIDTH",
        "LICENSE",
        "NSFW",
        "similarity",
    ]
    assert (
        laion.schema.field("SAMPLE_ID").type == pa.int64()
        and laion.schema.field("similarity").type == pa.float64()
    )
    datacomp = _read(tiny_world, "datacomp.parquet")
    assert datacomp.column_names == [
        "uid",
        "url",
        "text",
        "original_width",
        "original_height",
        "sha256",
    ]
    assert all(re.fullmatch(r"[0-9a-f]{32}", u) for u in datacomp["uid"].to_pylist())
    for name in ("cc12m.tsv", "captions.csv", "captions.jsonl", "captions-extra.jsonl.gz"):
        assert _read(tiny_world, name).column_names == ["url", "caption"], name
    for name, info in manifest["counts"]["tables"].items():
        assert _read(tiny_world, name).num_rows == info["rows"], name


def test_table_urls_point_at_the_demo_server_with_some_faults_and_copies(tiny_world, manifest):
    faults = copies = 0
    for name in manifest["counts"]["tables"]:
        t = _read(tiny_world, name)
        url_col = "URL" if "URL" in t.column_names else "url"
        for url in t[url_col].to_pylist():
            parts = urlsplit(url)
            parsed = urls.parse_path(parts.path)
            copy = urls.parse_variant_path(parts.path)
            assert parts.netloc == f"{urls.HOST}:{manifest['port']}" and (parsed or copy), url
            faults += parsed is not None and parsed[0] is not None
            copies += copy is not None
    assert faults == manifest["faults"]["tables"] > 0
    assert copies > 0


def test_csv_quoting_survives_commas_and_quotes(tiny_world):
    captions = _read(tiny_world, "captions.csv")["caption"].to_pylist()
    raw = (tiny_world / "tables" / "captions.csv").read_text()
    assert raw.startswith("url,caption\n")
    assert all(c for c in captions)
    assert any("," in c for c in captions) and '""' in raw  # quoted fields parsed back whole


def test_pageview_files_follow_the_dump_format(tiny_world, manifest):
    views: Counter = Counter()
    domains, titles = set(), []
    for name in manifest["files"]["pageviews"]:
        assert re.fullmatch(r"pageviews/pageviews-20240101-\d\d0000\.gz", name)
        lines = gzip.decompress((tiny_world / name).read_bytes()).decode("utf-8").splitlines()
        for line in lines:
            m = PAGEVIEW_LINE.match(line)
            assert m, line
            domains.add(m["domain"])
            titles.append(m["title"])
            if m["domain"] in ("en", "en.m"):
                views[unquote(m["title"]).replace(" ", "_")] += int(m["views"])
    assert {"en", "en.m", "de", "en.b"} <= domains
    assert any("%20" in t for t in titles) and any(
        t.startswith(("Special:", "User:", "Talk:")) for t in titles
    )
    article_views = sorted((views[t] for t in views if ":" not in t and "_" in t), reverse=True)
    assert article_views[0] > 20 * article_views[len(article_views) // 2]  # heavy-tailed
    at_least = manifest["counts"]["pageviews"]["articles_with_views_at_least"]
    assert 0 < at_least["1000"] < at_least["100"] <= manifest["counts"]["articles"]
    index = bz2.decompress((tiny_world / manifest["files"]["wiki_index"][0]).read_bytes()).decode()
    titles = {line.split(":", 2)[2].replace(" ", "_") for line in index.splitlines()}
    assert sum(views[t] >= 1000 for t in titles if ":" not in t) == at_least["1000"]
