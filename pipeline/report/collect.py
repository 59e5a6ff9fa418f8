"""Read what the stages left on disk into one JSON-able dict: the data behind the HTML report.

Every reader is defensive: a stage that has not run yet gives a section with ``available: False``
and the paths it looked for, and field names are looked up under a few aliases so a report renders
from older or partial outputs instead of crashing.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import fs
from pipeline.layout import Layout
from pipeline.report import stats

SHARD_COLUMNS = (
    "key", "url", "caption", "status", "error_message", "width", "height", "original_width",
    "original_height", "uid", "matched_queries", "selected_for", "bytes", "reason", "host", "seconds",
)  # fmt: skip


def read_json(path: str) -> Any | None:
    """Parsed JSON at ``path``, or None when it is missing or unreadable."""
    if not fs.exists(path):
        return None
    try:
        return json.loads(fs.read_text(path))
    except (ValueError, OSError):
        return None


def read_parquet(path: str, columns: tuple[str, ...] | None = None) -> pa.Table:
    """A Parquet file (any Beam filesystem), keeping only the wanted columns that exist."""
    with fs.open_read(path) as f:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        cols = [c for c in columns if c in names] if columns else None
        return pf.read(columns=cols)


def first_key(d: dict, *names: str, default: Any = None) -> Any:
    """The value of the first of ``names`` present in ``d``."""
    for name in names:
        if isinstance(d, dict) and d.get(name) is not None:
            return d[name]
    return default


def missing(*paths: str, hint: str = "") -> dict:
    """A section whose stage has not run yet."""
    return {"available": False, "missing": list(paths), "hint": hint}


# --- queries -----------------------------------------------------------------------------------


def collect_queries(layout: Layout) -> tuple[dict, pa.Table | None]:
    """Query-list section (sizes per source, overlaps, thresholds, examples) and the table."""
    path = layout.queries_parquet
    if not fs.exists(path):
        return missing(path, hint="run `wit queries`"), None
    table = read_parquet(
        path, ("query", "query_id", "sources", "source", "count", "pmi", "views", "rank")
    )
    rows = table.to_pylist()
    by_primary = Counter(r.get("source") or "?" for r in rows)
    by_any: Counter = Counter()
    pairs: Counter = Counter()
    multi = 0
    for r in rows:
        srcs = sorted(set(r.get("sources") or [r.get("source") or "?"]))
        by_any.update(srcs)
        multi += len(srcs) > 1
        pairs.update(f"{a} + {b}" for i, a in enumerate(srcs) for b in srcs[i + 1 :])
    words = Counter(min(len((r.get("query") or "").split()), 4) for r in rows)
    report = read_json(fs.join(layout.queries, "report.json")) or {}
    section = {
        "available": True,
        "total": len(rows),
        "by_source": dict(by_primary.most_common()),
        "by_any_source": dict(by_any.most_common()),
        "multi_source": multi,
        "overlaps": dict(pairs.most_common()),
        "words": {("4+" if k == 4 else str(k)): v for k, v in sorted(words.items())},
        "thresholds": _thresholds(report.get("thresholds") or {}),
        "examples": _query_examples(rows),
        "report": report or None,
    }
    return section, table


def _thresholds(recorded: dict) -> dict:
    """The thresholds the query list was built with, as its own report records them."""
    keys = (
        "min_count",
        "bigram_min_count",
        "pmi_threshold",
        "bigram_top_n",
        "min_views",
        "wordnet",
        "case",
        "target_size",
    )
    return {k: recorded[k] for k in keys if k in recorded}


def _query_examples(rows: list[dict], per_source: int = 8) -> dict[str, list[dict]]:
    """Best-ranked queries of each primary source, with their evidence."""
    ordered = sorted(
        rows, key=lambda r: (r.get("rank") is None, r.get("rank") or 0, r.get("query") or "")
    )
    out: dict[str, list[dict]] = {}
    for r in ordered:
        bucket = out.setdefault(r.get("source") or "?", [])
        if len(bucket) < per_source:
            bucket.append({k: r.get(k) for k in ("query", "count", "pmi", "views", "sources")})
    return out


# --- balance -----------------------------------------------------------------------------------


def per_query_rows(balance: dict) -> list[dict]:
    """The per-query records of balance.json, under whichever key holds them."""
    for key in ("queries", "per_query", "rows", "by_query"):
        value = balance.get(key)
        if isinstance(value, list):
            return [r for r in value if isinstance(r, dict)]
        if isinstance(value, dict):
            return [{"query_id": int(k), **v} for k, v in value.items() if isinstance(v, dict)]
    return []


def balance_counts(balance: dict) -> dict[int, dict]:
    """query_id -> {query, matches, selected, expected} from balance.json."""
    out = {}
    for r in per_query_rows(balance):
        qid = first_key(r, "query_id", "id")
        if qid is None:
            continue
        out[int(qid)] = {
            "query": first_key(r, "query", "text", default=""),
            "matches": int(first_key(r, "matches", "matched", "count", "before", default=0)),
            "selected": int(first_key(r, "selected", "after", default=0)),
            "expected": first_key(r, "expected"),
        }
    return out


def _global_block(balance: dict) -> dict:
    """Every scalar or small mapping in balance.json other than the per-query list."""
    skip = {"queries", "per_query", "rows", "by_query"}
    out = {}
    for k, v in balance.items():
        if k in skip:
            continue
        if isinstance(v, dict):
            out.update(
                {f"{k}.{kk}": vv for kk, vv in v.items() if not isinstance(vv, (list, dict))}
            )
            out.update(
                {f"{k}.{kk}": vv for kk, vv in v.items() if isinstance(vv, dict) and len(vv) <= 30}
            )
        elif not isinstance(v, list):
            out[k] = v
    return out


def _query_index(queries: pa.Table | None) -> dict[int, tuple[str, str]]:
    if queries is None:
        return {}
    ids = queries.column("query_id").to_pylist()
    texts = queries.column("query").to_pylist()
    srcs = (
        queries.column("source").to_pylist()
        if "source" in queries.column_names
        else [""] * len(ids)
    )
    return {int(i): (t, s or "") for i, t, s in zip(ids, texts, srcs)}


def query_table(
    queries: pa.Table | None, counts: dict[int, dict], downloaded: dict[int, int] | None
) -> list[list]:
    """Rows ``[query_id, query, source, matches, selected, downloaded]`` for every known query."""
    index = _query_index(queries)
    ids = list(index) + sorted(set(counts) - set(index))
    rows = []
    for qid in ids:
        text, source = index.get(qid, (counts.get(qid, {}).get("query", ""), ""))
        c = counts.get(qid)
        rows.append(
            [
                qid,
                text,
                source,
                c["matches"] if c else (0 if counts else None),
                c["selected"] if c else (0 if counts else None),
                downloaded.get(qid, 0) if downloaded is not None else None,
            ]
        )
    rows.sort(key=lambda r: (-(r[3] or 0), r[1]))
    return rows


def collect_balance(layout: Layout, rows: list[list], counts: dict[int, dict]) -> dict:
    """Balance section: distributions before/after the cap, inequality, extremes."""
    path = fs.join(layout.reports, "balance.json")
    balance = read_json(path)
    if balance is None:
        return missing(path, hint="run `wit select`")
    cap = (balance.get("settings") or {}).get("cap") or first_key(
        _global_block(balance), "cap", "global.cap"
    )
    # like the select stage's figures: over the queries with at least one match
    positive = [r for r in rows if r[3]]
    matches = np.array([r[3] for r in positive], dtype=np.int64)
    selected = np.array([r[4] or 0 for r in positive], dtype=np.int64)
    series = {"matches": matches, "selected": selected}
    if rows and rows[0][5] is not None:
        series["downloaded"] = np.array([r[5] or 0 for r in positive], dtype=np.int64)
    expected = [
        (c["expected"], c["selected"]) for c in counts.values() if c.get("expected") is not None
    ]
    zero = [r[1] for r in rows if not r[3]]
    return {
        "available": True,
        "cap": cap,
        "global": _global_block(balance),
        "filters": read_json(fs.join(layout.reports, "select.json")),
        "summary": {name: stats.summary(v) for name, v in series.items()},
        "rank": {name: stats.rank_series(v) for name, v in series.items()},
        "lorenz": {name: stats.lorenz(v) for name, v in series.items()},
        "zero_match": {"count": len(zero), "examples": sorted(zero)[:40]},
        "largest": [_brief(r) for r in positive[:15]],
        "smallest": [_brief(r) for r in positive[-15:][::-1]],
        "over_cap": int((selected > cap).sum()) if cap else None,
        "over_cap_downloaded": int((series["downloaded"] > cap).sum())
        if cap and "downloaded" in series
        else None,
        "statistics_over": f"{len(positive):,} queries with at least one match",
        "pairs": _pairs(balance),
        "expected_gap": {
            "queries": len(expected),
            "max_abs": max((abs(s - e) for e, s in expected), default=0),
            "mean_abs": round(float(np.mean([abs(s - e) for e, s in expected])), 3)
            if expected
            else 0,
        },
    }


def _pairs(balance: dict) -> dict:
    """Distinct pairs in, matched and selected, from balance.json's totals."""
    g = balance.get("global") if isinstance(balance.get("global"), dict) else balance
    return {
        "in": first_key(g, "pairs_in", "candidates"),
        "matched": first_key(g, "matched", "after_dedup"),
        "selected": first_key(g, "selected"),
    }


def _brief(row: list) -> dict:
    return {"query": row[1], "matches": row[3], "selected": row[4], "downloaded": row[5]}


# --- download ----------------------------------------------------------------------------------


SIZE_SAMPLE = 200_000  # size histograms use the first this-many downloaded images


def shard_parquets(layout: Layout) -> list[str]:
    """The shard Parquet files (``{NNNNN}.parquet``), in shard order."""
    return [p for p in fs.glob(fs.join(layout.shards, "*.parquet")) if _shard_id(p) is not None]


def _shard_id(path: str) -> str | None:
    name = path.replace("\\", "/").rsplit("/", 1)[-1].split(".", 1)[0]
    return name if name.isdigit() else None


def downloaded_per_query(shards: pa.Table | None, index: dict[str, int]) -> dict[int, int] | None:
    """query_id -> successful samples, from ``selected_for`` (or ``matched_queries`` by text)."""
    if shards is None or "status" not in shards.column_names:
        return None
    ok = shards.filter(pc.equal(shards["status"], "success"))
    if "selected_for" in ok.column_names:
        flat = pc.list_flatten(ok["selected_for"])
        return {
            int(v["values"]): int(v["counts"])
            for v in pc.value_counts(flat).to_pylist()
            if v["values"] is not None
        }
    if "matched_queries" in ok.column_names:
        flat = pc.list_flatten(ok["matched_queries"])
        vc = pc.value_counts(flat).to_pylist()
        return {index[v["values"]]: int(v["counts"]) for v in vc if v["values"] in index}
    return None


def _host_column(t: pa.Table) -> list:
    if "host" in t.column_names:
        return t["host"].to_pylist()
    if "url" not in t.column_names:
        return [None] * t.num_rows
    pattern = r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?P<host>[^/?#]+)"
    return pc.struct_field(pc.extract_regex(t["url"], pattern), [0]).to_pylist()


class ShardScan:
    """One pass over the shard Parquet files, one file in memory at a time.

    Keeps only aggregates (outcomes, reasons, hosts, downloads per query, a bounded sample of
    image sizes) and the rows picked for the sample grid, so the report scales with the number
    of queries and hosts, not with the number of samples.
    """

    def __init__(self, index: dict[str, int], sample_per_shard: int):
        self.index, self.sample_per_shard = index, sample_per_shard
        self.rows = self.shards = 0
        self.status: Counter = Counter()
        self.reasons: Counter = Counter()
        self.hosts: dict[str, list[int]] = {}
        self.per_query: Counter | None = None
        self.sizes: dict[str, list] = {}
        self.picks: list[dict] = []
        self.bytes = 0

    def add(self, shard: str, t: pa.Table) -> None:
        """Fold one shard's rows into the aggregates."""
        self.rows += t.num_rows
        self.shards += 1
        if "status" not in t.column_names:
            return
        status = t["status"].to_pylist()
        self.status.update(status)
        reason_col = "reason" if "reason" in t.column_names else "error_message"
        if reason_col in t.column_names:
            reasons = t[reason_col].to_pylist()
            self.reasons.update(
                (r or "(none)")[:90] for r, s in zip(reasons, status) if s != "success"
            )
        for h, s in zip(_host_column(t), status):
            agg = self.hosts.setdefault(h or "(unparsed)", [0, 0])
            agg[0] += 1
            agg[1] += s == "success"
        per_query = downloaded_per_query(t, self.index)
        if per_query is not None:
            self.per_query = (self.per_query or Counter()) + Counter(per_query)
        ok = t.filter(pc.equal(t["status"], "success"))
        if "bytes" in ok.column_names:
            self.bytes += int(pc.sum(ok["bytes"]).as_py() or 0)
        self._sizes(ok)
        self._pick(shard, ok)

    def _sizes(self, ok: pa.Table) -> None:
        for col in ("original_width", "original_height", "width", "height", "bytes", "seconds"):
            values = self.sizes.setdefault(col, [])
            if col in ok.column_names and len(values) < SIZE_SAMPLE:
                values.extend(v for v in ok[col].to_pylist()[: SIZE_SAMPLE - len(values)] if v)

    def _pick(self, shard: str, ok: pa.Table) -> None:
        if not self.sample_per_shard or not ok.num_rows:
            return
        k = min(self.sample_per_shard, ok.num_rows)
        for i in sorted(set(np.linspace(0, ok.num_rows - 1, k).round().astype(int))):
            row = ok.slice(int(i), 1).to_pylist()[0]
            self.picks.append({**row, "shard": shard})

    def section(self) -> dict:
        """The aggregates as the report's download figures."""
        success = self.status.get("success", 0)
        ranked = sorted(self.hosts.items(), key=lambda kv: -kv[1][0])[:20]
        return {
            "attempted": self.rows,
            "success": success,
            "success_rate": round(success / self.rows, 4) if self.rows else 0.0,
            "by_status": dict(self.status.most_common(20)),
            "by_reason": dict(self.reasons.most_common(20)),
            "by_host": [
                {"host": h, "attempts": n, "success": s, "rate": round(s / n, 4)}
                for h, (n, s) in ranked
            ],
            "hosts": len(self.hosts),
            "sizes": {
                col: stats.histogram(v, bins=16, log=col == "bytes")
                for col, v in self.sizes.items()
                if v
            },
            "size_sample": min(success, SIZE_SAMPLE),
            "shards": self.shards,
            "bytes": self.bytes or None,
        }


def scan_shards(layout: Layout, index: dict[str, int], sample_grid: int) -> ShardScan | None:
    """Aggregate every shard Parquet file; None when there are none yet."""
    paths = shard_parquets(layout)
    if not paths:
        return None
    scan = ShardScan(index, -(-sample_grid // len(paths)) if sample_grid else 0)
    for path in paths:
        scan.add(_shard_id(path), read_parquet(path, SHARD_COLUMNS))
    return scan


def collect_download(layout: Layout, scan: ShardScan | None) -> dict:
    """Download section: outcomes by status and reason, by host, image sizes, bytes, rates."""
    report_path = fs.join(layout.reports, "download.json")
    report = read_json(report_path)
    stats_files = [read_json(p) for p in fs.glob(fs.join(layout.shards, "*_stats.json"))]
    if scan is None and report is None:
        return missing(fs.join(layout.shards, "*.parquet"), report_path, hint="run `wit download`")
    section: dict = {"available": True, "report": report, "shard_stats": _sum_numeric(stats_files)}
    section["shard_stats"]["shard_files"] = len(stats_files)
    if scan is not None:
        section.update(scan.section())
    return section


def _sum_numeric(records: list[dict | None]) -> dict[str, float]:
    """Sum of each top-level numeric field over the per-shard stats files."""
    out: dict[str, float] = {}
    for r in records:
        for k, v in (r or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = round(out.get(k, 0) + v, 3)
    return out


# --- samples -----------------------------------------------------------------------------------


def collect_samples(layout: Layout, scan: ShardScan | None, n: int, thumb: int = 160) -> list[dict]:
    """Up to ``n`` successful samples spread over the shards, each with a JPEG thumbnail data URI."""
    if scan is None or n <= 0 or not scan.picks:
        return []
    picks = [
        scan.picks[i]
        for i in sorted(
            set(np.linspace(0, len(scan.picks) - 1, min(n, len(scan.picks))).round().astype(int))
        )
    ]
    wanted: dict[str, set[str]] = {}
    for r in picks:
        wanted.setdefault(r["shard"], set()).add(str(r.get("key")))
    images = {}
    for shard, keys in wanted.items():
        images.update(_thumbnails(fs.join(layout.shards, f"{shard}.tar"), keys, thumb))
    out = []
    for r in picks:
        uri = images.get(str(r.get("key")))
        if uri:
            out.append(
                {
                    "key": r.get("key"),
                    "caption": r.get("caption"),
                    "matched_queries": list(r.get("matched_queries") or []),
                    "size": [r.get("original_width"), r.get("original_height")],
                    "thumb": uri,
                }
            )
    return out


def _thumbnails(tar_path: str, keys: set[str], side: int) -> dict[str, str]:
    """key -> ``data:image/jpeg;base64,...`` for the wanted image members of one tar shard."""
    from PIL import Image

    if not fs.exists(tar_path):
        return {}
    out = {}
    with fs.open_read(tar_path) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
        for member in tar:
            stem, _, ext = member.name.rpartition(".")
            if stem not in keys or ext.lower() not in ("jpg", "jpeg", "png", "webp"):
                continue
            try:
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                    im = im.convert("RGB")
                    im.thumbnail((side, side))
                    buf = io.BytesIO()
                    im.save(buf, "JPEG", quality=82)
            except (OSError, ValueError):  # a corrupt member is shown as missing, not fatal
                continue
            out[stem] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    return out


# --- filters -----------------------------------------------------------------------------------


FILTER_GROUPS = 8  # duplicate groups shown with thumbnails
FILTER_MEMBERS = 8  # members shown of a larger group
FILTER_EXAMPLES = 8  # dropped pairs shown per reason
FILTER_QUERIES = 20  # queries that lost most
FILTER_THUMB_PX = 120  # the section's thumbnails: many small ones


def _shard_tar(layout: Layout, recorded: str | None, shard: int | None) -> str:
    """A downloaded shard's tar: where filter.json says, else (an output folder that moved)
    the tar of that name, or of that shard number, under this run's shards."""
    if recorded and fs.exists(recorded):
        return recorded
    name = recorded.replace("\\", "/").rsplit("/", 1)[-1] if recorded else f"{shard or 0:05d}.tar"
    return fs.join(layout.shards, name)


def _captions(layout: Layout, members: list[dict]) -> dict[tuple[str, str], dict]:
    """(tar, key) -> {caption, url} of group members, from the downloaded shards' Parquet."""
    wanted: dict[str, set[str]] = {}
    for m in members:
        wanted.setdefault(m["tar"], set()).add(m["key"])
    out = {}
    for tar, keys in wanted.items():
        path = tar[: -len(".tar")] + ".parquet" if tar.endswith(".tar") else tar
        if not fs.exists(path):
            continue
        t = read_parquet(path, ("key", "caption", "url"))
        for r in t.filter(pc.is_in(t["key"], pa.array(sorted(keys)))).to_pylist():
            out[(tar, r["key"])] = {"caption": r.get("caption"), "url": r.get("url")}
    return out


def _attach_thumbs(items: list[dict], px: int) -> None:
    """Give each item (with ``tar`` and ``key``) its thumbnail, one pass per tar."""
    wanted: dict[str, set[str]] = {}
    for it in items:
        wanted.setdefault(it["tar"], set()).add(it["key"])
    thumbs = {}
    for tar, keys in wanted.items():
        thumbs.update({(tar, k): v for k, v in _thumbnails(tar, keys, px).items()})
    for it in items:
        it["thumb"] = thumbs.get((it["tar"], it["key"]))


def _duplicate_groups(layout: Layout, duplicates: dict) -> list[dict]:
    """The largest groups: each member with its shard file, key, caption, and why it went."""
    groups = []
    for group in (duplicates.get("largest") or [])[:FILTER_GROUPS]:
        keeper = group[0]
        members = []
        for i, m in enumerate(group[:FILTER_MEMBERS]):
            exact = i and m.get("sha256") and m.get("sha256") == keeper.get("sha256")
            members.append(
                {
                    "uid": m.get("uid"),
                    "key": str(m.get("key")),
                    "tar": _shard_tar(layout, m.get("source_tar"), m.get("shard")),
                    "verdict": "kept" if i == 0 else ("exact copy" if exact else "near copy"),
                }
            )
        groups.append({"size": len(group), "members": members})
    return groups


def _filter_examples(layout: Layout, examples: dict) -> dict[str, list[dict]]:
    """A few dropped pairs per reason, with what the filters knew of each."""
    keep = ("uid", "caption", "url", "clip_score", "language", "language_score", "duplicate_of")
    out = {}
    for reason, rows in examples.items():
        out[reason] = [
            {
                **{k: r.get(k) for k in keep},
                "key": str(r.get("source_key")),
                "tar": _shard_tar(layout, r.get("source_tar"), r.get("source_shard")),
            }
            for r in rows[:FILTER_EXAMPLES]
        ]
    return out


def _filter_note(lineage: dict) -> str | None:
    """Why the figures may not describe the shards on disk, if they may not."""
    filt = lineage["stages"].get("filter") or {}
    down = lineage["stages"].get("download") or {}
    if filt.get("missing"):
        return "reports/filter.json has no completed filter run behind it (filtered/_SUCCESS.json)"
    if (down.get("started_at") or "") > (filt.get("started_at") or ""):
        return "the shards were downloaded again after the filter ran: these figures are older"
    return None


def collect_filters(layout: Layout, lineage: dict, thumb: int = FILTER_THUMB_PX) -> dict:
    """Filters section: what the curation filters dropped and why, from ``reports/filter.json``,
    with thumbnails of duplicate groups and of dropped pairs (read from the downloaded shards)."""
    path = fs.join(layout.reports, "filter.json")
    data = read_json(path)
    if not isinstance(data, dict) or "totals" not in data:
        hint = "run `wit filter`, or set filter.in_shards: true for `wit shards`"
        return missing(path, hint=hint)
    duplicates = data.get("duplicates") or {"enabled": False}
    groups = _duplicate_groups(layout, duplicates)
    examples = _filter_examples(layout, data.get("examples") or {})
    members = [m for g in groups for m in g["members"]]
    captions = _captions(layout, members)
    for m in members:
        m.update(captions.get((m["tar"], m["key"]), {"caption": None, "url": None}))
    _attach_thumbs(members + [e for rows in examples.values() for e in rows], thumb)
    queries = data.get("per_query") or []
    lost = sorted(
        (q for q in queries if q.get("downloaded", 0) > q.get("kept", 0)),
        key=lambda q: (-(q["downloaded"] - q["kept"]), -q["downloaded"], str(q.get("query"))),
    )
    return {
        "available": True,
        "note": _filter_note(lineage),
        "totals": data["totals"],
        "reasons": data.get("reasons") or {},
        "languages": data.get("languages") or {},
        "balance": data.get("balance") or {},
        "clip": data.get("clip") or {"enabled": False},
        "duplicates": {k: v for k, v in duplicates.items() if k != "largest"},
        "groups": groups,
        "examples": examples,
        "queries": {
            "with_downloads": len(queries),
            "with_losses": len(lost),
            "most_lost": lost[:FILTER_QUERIES],
        },
        "config": data.get("config") or {},
        "shards": data.get("shards") or {},
    }


# --- lineage -----------------------------------------------------------------------------------


def collect_lineage(layout: Layout) -> dict:
    """Config, per-stage markers (timings, seeds, fingerprints, inputs, summaries) and versions."""
    from pipeline.stages import STAGES  # the registry: every stage whose outputs this reports

    stages = {}
    for name, stage in STAGES.items():
        if not stage.always_run:  # the report itself re-renders on every run
            marker = read_json(fs.join(stage.out_dir(layout), "_SUCCESS.json"))
            stages[name] = marker or {"stage": name, "missing": True}
    versions = next((m.get("versions") for m in stages.values() if m.get("versions")), {})
    return {"config": read_json(layout.config_json), "stages": stages, "versions": versions}


def collect(out: str, sample_grid: int, table_rows: int = 0, thumbnail_px: int = 160) -> dict:
    """Everything the report shows, as one dict (``reports/report.json`` minus thumbnails)."""
    layout = Layout(out)
    lineage = collect_lineage(layout)
    q_section, q_table = collect_queries(layout)
    balance = read_json(fs.join(layout.reports, "balance.json")) or {}
    counts = balance_counts(balance)
    text_index = {t: i for i, (t, _) in _query_index(q_table).items()}
    scan = scan_shards(layout, text_index, sample_grid)
    downloaded = dict(scan.per_query) if scan is not None and scan.per_query is not None else None
    rows = query_table(q_table, counts, downloaded)
    download = collect_download(layout, scan)
    seconds = (lineage["stages"].get("download") or {}).get("seconds")
    if download.get("success") and seconds:
        download["images_per_s"] = round(download["success"] / seconds, 2)
        download["stage_seconds"] = seconds
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "out": out,
        "queries": q_section,
        "balance": collect_balance(layout, rows, counts),
        "download": download,
        "samples": collect_samples(layout, scan, sample_grid, thumbnail_px),
        "filters": collect_filters(layout, lineage, min(thumbnail_px, FILTER_THUMB_PX)),
        "lineage": lineage,
        "table": {
            "columns": ["query_id", "query", "source", "matches", "selected", "downloaded"],
            "total": len(rows),
            "rows": rows[:table_rows] if table_rows else rows,
        },
    }
