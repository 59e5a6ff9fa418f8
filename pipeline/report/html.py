"""Render the collected report data as one self-contained HTML page (inline CSS, SVG and images)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from pipeline.report import charts
from pipeline.report.charts import COLOURS, Series

CSS = """
:root{--fg:#1f2328;--muted:#667085;--line:#e4e7ec;--bg:#f6f7f9;--card:#fff;--accent:#2e86ab}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}
header{background:#17324d;color:#fff;padding:22px 32px}header h1{margin:0 0 4px;font-size:24px}
header .sub{color:#c9d6e3;font-size:13px}nav{position:sticky;top:0;z-index:2;background:#fff;
border-bottom:1px solid var(--line);padding:8px 32px}nav a{margin-right:18px;color:var(--accent);
text-decoration:none;font-weight:600}main{max-width:1240px;margin:0 auto;padding:8px 24px 48px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;
margin:18px 0}h2{margin:0 0 12px;font-size:19px}h3{margin:18px 0 8px;font-size:15px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px;margin:6px 0 12px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 12px;background:#fbfcfd}
.card .v{font-size:20px;white-space:nowrap;font-weight:650}.card .k{color:var(--muted);font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.charts svg{border:1px solid var(--line);border-radius:8px;
background:#fff;max-width:100%;height:auto}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f2f4f7;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:18px}.muted{color:var(--muted)}
.missing{border-left:4px solid #f0a202;background:#fff8e6;padding:10px 14px;border-radius:6px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px}
figure{margin:0;border:1px solid var(--line);border-radius:8px;padding:8px;background:#fbfcfd}
figure img{display:block;width:100%;height:150px;object-fit:contain;background:#eef0f3;border-radius:4px}
figcaption{font-size:12px;margin-top:6px}.tag{display:inline-block;background:#e8f3f8;color:#1d5d78;
border-radius:10px;padding:0 7px;margin:2px 3px 0 0;font-size:11px}
#qfilter{padding:7px 10px;width:320px;border:1px solid #c8ced6;border-radius:6px;font-size:14px}
#qtable th{cursor:pointer;user-select:none}#qtable th.sorted:after{content:attr(data-dir)}
.scroll{max-height:520px;overflow:auto;border:1px solid var(--line);border-radius:6px;margin-top:8px}
pre{background:#f6f8fa;padding:10px;border-radius:6px;overflow:auto;max-height:420px;font-size:12px}
details summary{cursor:pointer;color:var(--accent);font-weight:600}
.grid.small{grid-template-columns:repeat(auto-fill,minmax(136px,1fr));gap:8px}
.grid.small figure img{height:104px}.group{margin:10px 0 14px}.group h4{margin:0 0 6px;font-size:13px}
figure.kept{border-color:#3bb273;background:#f3fbf5}figure.dropped{border-color:#e9a496;background:#fdf5f3}
.tag.drop{background:#fbe4de;color:#9c2f16}.tag.keep{background:#dff3e5;color:#1e6b36}
@media(max-width:900px){.cols{grid-template-columns:1fr}}
"""

TABLE_JS = """
(function(){
  var data=JSON.parse(document.getElementById('query-data').textContent), rows=data.rows;
  var table=document.getElementById('qtable'), body=table.tBodies[0], input=document.getElementById('qfilter');
  var info=document.getElementById('qinfo'), LIMIT=500, col=3, asc=false;
  function esc(v){return String(v).replace(/[&<>"]/g,function(c){return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c];});}
  function cmp(a,b){var x=a[col],y=b[col];if(x===y)return 0;if(x===null)return 1;if(y===null)return -1;
    var c=(typeof x==='string')?x.localeCompare(y):x-y;return asc?c:-c;}
  function render(){
    var f=input.value.trim().toLowerCase();
    var r=f?rows.filter(function(x){return String(x[1]).toLowerCase().indexOf(f)>=0;}):rows.slice();
    r.sort(cmp);
    body.innerHTML=r.slice(0,LIMIT).map(function(x){return '<tr>'+x.map(function(v,i){
      return '<td'+(i>=3?' class="num"':'')+'>'+(v===null?'–':esc(i>=3?v.toLocaleString('en-US'):v))+'</td>';}).join('')+'</tr>';}).join('');
    info.textContent='showing '+Math.min(r.length,LIMIT)+' of '+r.length+' matching queries ('+rows.length+' in the table)';
    table.setAttribute('data-rows',String(Math.min(r.length,LIMIT)));
    table.setAttribute('data-ready','1');
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){th.onclick=function(){
    asc=(col===i)?!asc:(i<3);col=i;Array.prototype.forEach.call(table.tHead.rows[0].cells,function(h){h.className=h.className.replace(' sorted','');});
    th.className+=' sorted';th.setAttribute('data-dir',asc?' ▲':' ▼');render();};});
  if(location.hash.indexOf('#q=')===0){input.value=decodeURIComponent(location.hash.slice(3));}
  input.oninput=render;render();
})();
"""


def num(v: Any) -> str:
    """A number for humans: thousands separators, short floats; '–' for missing."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return escape(str(v))


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def cards(items: list[tuple[str, str]]) -> str:
    """A row of headline figures (value already formatted)."""
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="v">{v}</div><div class="k">{escape(k)}</div></div>'
            for k, v in items
        )
        + "</div>"
    )


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain HTML table; columns holding only numbers (or gaps) are right-aligned."""
    numeric = [
        any(_is_num(r[i]) for r in rows) and all(_is_num(r[i]) or r[i] is None for r in rows)
        for i in range(len(header))
    ]
    head = "".join(
        f"<th{' class=num' if numeric[i] else ''}>{escape(h)}</th>" for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if numeric[i] else ''}>{num(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mapping -> (dotted key, scalar or short JSON) pairs."""
    out: list[tuple[str, Any]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(d, list):
        text = json.dumps(d, default=str)
        out.append((prefix, text if len(text) <= 160 else text[:157] + "…"))
    else:
        out.append((prefix, d))
    return out


def kv_table(d: Any, limit: int = 120) -> str:
    """Any JSON-able mapping as a two-column key/value table."""
    rows = flatten(d)[:limit]
    return table(["key", "value"], [[k, v] for k, v in rows])


def not_run(section: dict, what: str) -> str:
    paths = "".join(f"<li><code>{escape(p)}</code></li>" for p in section.get("missing", []))
    hint = escape(section.get("hint", ""))
    return f'<div class="missing"><b>{escape(what)}: not run yet.</b> {hint}. Looked for:<ul>{paths}</ul></div>'


def queries_section(q: dict) -> str:
    """Query list: sizes per source, overlaps, lengths, thresholds, examples."""
    if not q.get("available"):
        return not_run(q, "Query list")
    parts = [
        cards(
            [
                ("queries", num(q["total"])),
                ("from more than one source", num(q["multi_source"])),
                *[(f"primary source {k}", num(v)) for k, v in q["by_source"].items()],
            ]
        ),
        '<div class="charts">',
        charts.hbar_chart(
            list(q["by_any_source"].items()), "Queries per source (a query may have several)"
        ),
        charts.hbar_chart(
            list(q["overlaps"].items())[:12], "Overlaps between sources", colour="#8e6c8a"
        ),
        charts.hbar_chart(list(q["words"].items()), "Words per query", colour="#f0a202"),
        "</div>",
        "<h3>Thresholds</h3>",
        kv_table(q["thresholds"]) if q["thresholds"] else '<p class="muted">not recorded</p>',
        "<h3>Examples (best-ranked of each primary source)</h3>",
    ]
    rows = []
    for source, examples in q["examples"].items():
        for e in examples:
            rows.append(
                [
                    source,
                    e["query"],
                    e.get("count"),
                    e.get("pmi"),
                    e.get("views"),
                    ", ".join(e.get("sources") or []),
                ]
            )
    parts.append(
        table(
            ["source", "query", "count", "pmi", "views", "all sources"],
            rows,
        )
    )
    if q.get("report"):
        parts.append(
            f"<details><summary>queries/report.json</summary>{kv_table(q['report'], 200)}</details>"
        )
    return "".join(parts)


def balance_section(b: dict) -> str:
    """Balance: rank plot and Lorenz curves before/after the cap, Gini, top-1%, extremes."""
    if not b.get("available"):
        return not_run(b, "Balancing")
    s = b["summary"]
    after = s.get("downloaded", s["selected"])
    parts = [
        cards(
            [
                ("query matches (a pair counts once per query)", num(s["matches"]["total"])),
                ("query selections (sum over queries)", num(s["selected"]["total"])),
                ("per-query cap", num(b.get("cap"))),
                (
                    "Gini before → after cap",
                    f"{s['matches']['gini']:.3f} → {s['selected']['gini']:.3f}",
                ),
                (
                    "top-1% queries' share before → after",
                    f"{pct(s['matches']['top1_share'])} → {pct(s['selected']['top1_share'])}",
                ),
                ("queries with zero matches", num(b["zero_match"]["count"])),
                ("queries over the cap after selection", num(b.get("over_cap"))),
                ("queries over the cap after download", num(b.get("over_cap_downloaded"))),
                ("max |selected − expected|", num(b["expected_gap"]["max_abs"])),
            ]
        )
    ]
    if "downloaded" in s:
        parts.append(
            cards(
                [
                    ("downloaded (sum over queries)", num(after["total"])),
                    ("Gini after download", f"{after['gini']:.3f}"),
                    ("top-1% share after download", pct(after["top1_share"])),
                ]
            )
        )
    names = list(b["rank"])
    rank = [Series(n, b["rank"][n], COLOURS[n], dashed=n == "downloaded") for n in names]
    lorenz = [Series(n, b["lorenz"][n], COLOURS[n], dashed=n == "downloaded") for n in names]
    lorenz.append(Series("equality", [(0, 0), (1, 1)], "#999", dashed=True))
    parts += [
        '<div class="charts">',
        charts.xy_chart(
            rank, "Pairs per query by rank (log-log)", "query rank", "pairs", x_log=True, y_log=True
        ),
        charts.xy_chart(
            lorenz,
            "Lorenz curves",
            "share of queries (smallest first)",
            "share of pairs",
            x_range=(0, 1),
            y_range=(0, 1),
            legend_at="left",
        ),
        "</div>",
        '<div class="cols"><div><h3>Largest queries</h3>',
        table(
            ["query", "matches", "selected", "downloaded"],
            [[r["query"], r["matches"], r["selected"], r["downloaded"]] for r in b["largest"]],
        ),
        "</div><div><h3>Smallest queries with a match</h3>",
        table(
            ["query", "matches", "selected", "downloaded"],
            [[r["query"], r["matches"], r["selected"], r["downloaded"]] for r in b["smallest"]],
        ),
        "</div></div>",
        f"<h3>Queries with zero matches ({num(b['zero_match']['count'])})</h3>",
        '<p class="muted">'
        + (escape(", ".join(b["zero_match"]["examples"])) or "none")
        + ("…" if b["zero_match"]["count"] > len(b["zero_match"]["examples"]) else "")
        + "</p>",
        f'<p class="muted">Distributions and inequality over the {escape(str(b.get("statistics_over", "")))}. '
        "A pair counts toward every query in its <code>selected_for</code>, so a query can end above "
        "the cap when pairs kept for other queries also match it.</p>",
        "<h3>Filter accounting</h3>",
        funnel(b.get("filters")),
        "<details><summary>All balance totals (reports/balance.json)</summary>",
        kv_table(b["global"]),
        "</details>",
    ]
    return "".join(parts)


def funnel(select_report: dict | None) -> str:
    """The select stage's steps: pairs in and out of each, and what each removed and why."""
    if not select_report:
        return '<p class="muted">reports/select.json not found</p>'
    steps = select_report.get("steps")
    if not isinstance(steps, list):
        return kv_table(select_report)
    rows = []
    for st in steps:
        removed = st.get("removed") or {}
        why = ", ".join(
            f"{k}: {v:,}" for k, v in sorted(removed.items(), key=lambda kv: -kv[1]) if v
        )
        rows.append([st.get("step"), st.get("in"), st.get("out"), why or "–"])
    bars = charts.hbar_chart(
        [(str(r[0]), r[2] or 0) for r in rows], "Pairs left after each step", colour="#8e6c8a"
    )
    errors = select_report.get("errors")
    extra = f"<h3>Unreadable records</h3>{kv_table(errors)}" if errors else ""
    return (
        '<div class="cols"><div>'
        + table(["step", "in", "out", "removed (reason: pairs)"], rows)
        + f'</div><div class="charts">{bars}</div></div>{extra}'
    )


def query_table_section(t: dict) -> str:
    """Every query with matches / selected / downloaded; filtered and sorted by inline JS."""
    # query ids are 63-bit: as JSON numbers JavaScript would round them, so they travel as text
    rows = [[str(r[0]), *r[1:]] for r in t["rows"]]
    data = json.dumps({"columns": t["columns"], "rows": rows}, separators=(",", ":")).replace(
        "</", "<\\/"
    )
    head = "".join(
        f"<th{' class=num' if i >= 3 else ''}>{escape(c)}</th>" for i, c in enumerate(t["columns"])
    )
    note = (
        ""
        if len(t["rows"]) == t["total"]
        else f' <span class="muted">(first {len(t["rows"]):,} of {t["total"]:,} by matches; raise report.table_rows)</span>'
    )
    return (
        f'<input id="qfilter" type="search" placeholder="filter queries…" aria-label="filter queries"> '
        f'<span id="qinfo" class="muted">enable JavaScript to browse the table</span>{note}'
        f'<div class="scroll"><table id="qtable"><thead><tr>{head}</tr></thead><tbody></tbody></table></div>'
        f'<script type="application/json" id="query-data">{data}</script><script>{TABLE_JS}</script>'
    )


def download_section(d: dict) -> str:
    """Download: outcomes by status and reason, by host, sizes, bytes and rates."""
    if not d.get("available"):
        return not_run(d, "Download")
    parts = []
    if "attempted" in d:
        parts.append(
            cards(
                [
                    ("attempted", num(d["attempted"])),
                    ("downloaded", num(d["success"])),
                    ("success rate", pct(d["success_rate"])),
                    ("shards", num(d["shards"])),
                    ("bytes fetched (successes)", _bytes(d.get("bytes"))),
                    ("images/s (whole stage)", num(d.get("images_per_s"))),
                    *_download_timings(d.get("report")),
                ]
            )
        )
        parts += [
            '<div class="charts">',
            charts.hbar_chart(list(d["by_status"].items()), "Outcomes by status", colour="#2e86ab"),
            charts.hbar_chart(list(d["by_reason"].items()), "Failures by reason", colour="#e4572e"),
            "</div>",
        ]
        sizes = d.get("sizes", {})
        labels = {
            "original_width": "original width (px)",
            "original_height": "original height (px)",
            "width": "stored width (px)",
            "height": "stored height (px)",
            "bytes": "bytes per image",
            "seconds": "seconds per request",
        }
        parts.append(
            '<div class="charts">'
            + "".join(
                charts.histogram_chart(bins, f"Downloaded images: {labels[k]}", labels[k])
                for k, bins in sizes.items()
            )
            + "</div>"
        )
        parts.append("<h3>By host</h3>")
        parts.append(
            table(
                ["host", "attempts", "success", "rate"],
                [[h["host"], h["attempts"], h["success"], pct(h["rate"])] for h in d["by_host"]],
            )
        )
    if d.get("report"):
        parts.append(
            f"<details><summary>reports/download.json</summary>{kv_table(d['report'], 200)}</details>"
        )
    if d.get("shard_stats", {}).get("shard_files"):
        parts.append(
            f"<details><summary>Sum of per-shard stats files</summary>{kv_table(d['shard_stats'])}</details>"
        )
    return "".join(parts)


def _bytes(n: int | None) -> str:
    if n is None:
        return "–"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def _download_timings(report: dict | None) -> list[tuple[str, str]]:
    t = (report or {}).get("timings") or {}
    out = []
    for key, label in (
        ("latency_p50_s", "latency p50 (s)"),
        ("latency_p95_s", "latency p95 (s)"),
        ("retries", "retries"),
        ("redirects", "redirects"),
    ):
        if t.get(key) is not None:
            out.append((label, num(t[key])))
    return out


def samples_section(samples: list[dict]) -> str:
    """Thumbnails of downloaded images with captions and matched queries."""
    if not samples:
        return (
            '<p class="muted">No downloaded images to show yet (run <code>wit download</code>).</p>'
        )
    figs = []
    for s in samples:
        tags = "".join(f'<span class="tag">{escape(q)}</span>' for q in s["matched_queries"][:6])
        size = "×".join(str(v) for v in s["size"] if v) if any(s["size"]) else ""
        figs.append(
            f'<figure><img src="{s["thumb"]}" alt="{escape(s["caption"] or "")}" loading="lazy">'
            f'<figcaption>{escape(s["caption"] or "")}<br>{tags}<br><span class="muted">{escape(str(s["key"]))} {size}</span></figcaption></figure>'
        )
    return f'<div class="grid">{"".join(figs)}</div>'


REASON_LABELS = {
    "image_unreadable": "image unreadable",
    "duplicate_exact": "exact duplicate",
    "duplicate_near": "near duplicate",
    "language_excluded": "language excluded",
    "clip_score_below": "CLIP score below minimum",
    "clip_score_not_in_top": "CLIP not in top fraction",
}


def filters_section(f: dict) -> str:
    """Curation filters: what each dropped and why, CLIP scores, duplicate groups, languages,
    dropped pairs and what the drops did to each query."""
    if not f.get("available"):
        paths = "".join(f"<li><code>{escape(p)}</code></li>" for p in f.get("missing", []))
        return (
            '<div class="missing"><b>Filters: the filter did not run.</b> '
            f"{escape(f.get('hint', ''))}. Looked for:<ul>{paths}</ul></div>"
        )
    parts = []
    if f.get("note"):
        parts.append(f'<div class="missing"><b>Note:</b> {escape(f["note"])}</div>')
    parts += [
        _filter_cards(f),
        _filter_reasons(f["reasons"]),
        "<h3>CLIP score</h3>",
        _clip(f["clip"]),
        "<h3>Duplicate images</h3>",
        _duplicates(f["duplicates"], f["groups"]),
        "<h3>Caption languages</h3>",
        _languages(f["languages"], f["config"].get("languages") or []),
        "<h3>Examples of dropped pairs</h3>",
        _dropped_examples(f["examples"]),
        "<h3>Per-query losses</h3>",
        _query_losses(f["queries"], f["balance"]),
        "<details><summary>Filter configuration (reports/filter.json)</summary>",
        kv_table({"config": f["config"], "shards": f["shards"]}),
        "</details>",
    ]
    return "".join(parts)


def _filter_cards(f: dict) -> str:
    t, b = f["totals"], f["balance"]
    before, after = b.get("before") or {}, b.get("after") or {}
    share = t.get("filtered", 0) / t["successes_before"] if t.get("successes_before") else None
    items = [
        ("downloaded pairs (before filtering)", num(t.get("successes_before"))),
        ("kept", num(t.get("kept"))),
        ("dropped", f"{num(t.get('filtered'))} ({pct(share)})"),
        ("duplicate groups", num(f["duplicates"].get("groups"))),
        ("queries emptied by the filters", num(b.get("queries_emptied"))),
    ]
    if before and after:
        items += [
            ("Gini before → after filtering", f"{before['gini']:.3f} → {after['gini']:.3f}"),
            (
                "top-1% queries' share before → after",
                f"{pct(before['top1_share'])} → {pct(after['top1_share'])}",
            ),
        ]
    return cards(items)


def _filter_reasons(reasons: dict) -> str:
    first, every = reasons.get("first") or {}, reasons.get("any") or {}
    rows = [[REASON_LABELS.get(r, r), n, every.get(r, 0)] for r, n in first.items()]
    bars = [(label, n) for label, n, _ in rows if n]
    return (
        '<div class="cols"><div>'
        + charts.hbar_chart(bars, "Pairs dropped, by first reason", colour="#e4572e")
        + '</div><div><p class="muted">A pair is dropped when any enabled filter drops it; its '
        "first reason (in this order) is its <code>error_message</code>, every reason is in "
        "<code>filter_reasons</code>.</p>"
        + table(["reason", "first reason", "a reason"], rows)
        + "</div></div>"
    )


def _clip(c: dict) -> str:
    if not c.get("enabled"):
        return '<p class="muted">Off (<code>filter.clip: false</code>): no CLIP scores.</p>'
    markers = []
    if c.get("min_score", -1) > -1:
        markers.append((c["min_score"], f"min score {c['min_score']:.3f}"))
    if c.get("top_threshold") is not None:
        markers.append(
            (c["top_threshold"], f"top {pct(c.get('top_fraction'))}: {c['top_threshold']:.3f}")
        )
    head = cards(
        [
            ("pairs scored", num(c.get("scored"))),
            ("minimum score", "off" if c.get("min_score", -1) <= -1 else num(c["min_score"])),
            ("top fraction kept", pct(c.get("top_fraction"))),
            ("top-fraction threshold", num(c.get("top_threshold"))),
        ]
    )
    chart = charts.histogram_chart(
        c.get("histogram") or [],
        "CLIP image-text score of every scored pair",
        "cosine similarity",
        "pairs",
        colour="#2e86ab",
        markers=tuple(markers),
    )
    weights = f'<p class="muted">Weights: {escape(str(c.get("weights") or "?"))}</p>'
    return head + f'<div class="charts">{chart}</div>' + weights


def _figure(item: dict, css: str, tags: list[tuple[str, str]]) -> str:
    """One thumbnail with its caption and tags (``(text, css class)``)."""
    caption = escape(item.get("caption") or "")
    img = (
        f'<img src="{item["thumb"]}" alt="{caption}" loading="lazy">'
        if item.get("thumb")
        else '<div class="muted">image not found in the shards</div>'
    )
    badges = "".join(f'<span class="tag {c}">{escape(t)}</span>' for t, c in tags)
    return (
        f'<figure class="{css}">{img}<figcaption>{badges}<br>{caption}<br>'
        f'<span class="muted">{escape(item.get("key") or "")}</span></figcaption></figure>'
    )


def _duplicates(d: dict, groups: list[dict]) -> str:
    if not d.get("enabled"):
        return '<p class="muted">Off (<code>filter.dedup_exact</code> and <code>dedup_near</code> false).</p>'
    dropped = d.get("dropped") or {}
    parts = [
        cards(
            [
                ("groups", num(d.get("groups"))),
                ("images in groups", num(d.get("images_in_groups"))),
                ("dropped as exact copies", num(dropped.get("duplicate_exact", 0))),
                ("dropped as near copies", num(dropped.get("duplicate_near", 0))),
            ]
        ),
        '<p class="muted">Group sizes: '
        + escape(
            ", ".join(f"{n} groups of {k}" for k, n in (d.get("group_sizes") or {}).items())
            or "none"
        )
        + ". Each group keeps the image of smallest uid; the others go.</p>",
    ]
    for i, g in enumerate(groups, 1):
        figs = "".join(
            _figure(
                m,
                "kept" if m["verdict"] == "kept" else "dropped",
                [(m["verdict"], "keep" if m["verdict"] == "kept" else "drop")],
            )
            for m in g["members"]
        )
        more = f" (first {len(g['members'])} shown)" if g["size"] > len(g["members"]) else ""
        parts.append(
            f'<div class="group"><h4>Group {i}: {g["size"]} images{more}</h4>'
            f'<div class="grid small">{figs}</div></div>'
        )
    return "".join(parts)


def _languages(langs: dict, allowed: list[str]) -> str:
    before, kept = langs.get("before") or {}, langs.get("kept") or {}
    rows = [[code, n, kept.get(code, 0), n - kept.get(code, 0)] for code, n in before.items()]
    keep = ", ".join(allowed) if allowed else "every language"
    return (
        '<div class="cols"><div>'
        + charts.hbar_chart(
            list(before.items())[:12], "Caption languages (downloaded pairs)", colour="#8e6c8a"
        )
        + f'</div><div><p class="muted">Kept: {escape(keep)}. <code>und</code>: too short or '
        "unclear to name a language. A pair may also go for another reason.</p>"
        + table(["language", "downloaded", "kept", "dropped"], rows)
        + "</div></div>"
    )


def _dropped_examples(examples: dict) -> str:
    if not examples:
        return '<p class="muted">Nothing was dropped.</p>'
    parts = []
    for reason, rows in examples.items():
        figs = []
        for r in rows:
            tags = [(REASON_LABELS.get(reason, reason), "drop")]
            if r.get("language"):
                tags.append((f"{r['language']} {num(r.get('language_score'))}", ""))
            if r.get("clip_score") is not None:
                tags.append((f"CLIP {r['clip_score']:.3f}", ""))
            if r.get("duplicate_of"):
                tags.append((f"copy of {r['duplicate_of'][:8]}", ""))
            figs.append(_figure(r, "dropped", tags))
        parts.append(
            f"<h4>{escape(REASON_LABELS.get(reason, reason))}</h4>"
            f'<div class="grid small">{"".join(figs)}</div>'
        )
    return "".join(parts)


def _query_losses(q: dict, balance: dict) -> str:
    rows = []
    for r in q["most_lost"]:
        lost = r["downloaded"] - r["kept"]
        why = ", ".join(
            f"{REASON_LABELS.get(k, k)}: {n}"
            for k, n in sorted(r["lost"].items(), key=lambda kv: -kv[1])
        )
        rows.append(
            [
                r.get("query") or str(r["query_id"]),
                r["downloaded"],
                r["kept"],
                lost,
                pct(lost / r["downloaded"]),
                why,
            ]
        )
    before, after = balance.get("before") or {}, balance.get("after") or {}
    summary = cards(
        [
            ("queries with downloads", num(q["with_downloads"])),
            ("queries that lost pairs", num(q["with_losses"])),
            ("queries left with none", num(balance.get("queries_emptied"))),
            (
                "pairs over queries before → after",
                f"{num(before.get('pairs'))} → {num(after.get('pairs'))}",
            ),
        ]
    )
    if not rows:
        return summary + '<p class="muted">No query lost a pair.</p>'
    return (
        summary
        + f'<p class="muted">The {len(rows)} queries that lost most (a pair counts toward every query '
        "in its <code>selected_for</code>).</p>"
        + table(["query", "downloaded", "kept", "lost", "share lost", "why"], rows)
    )


def lineage_section(lin: dict) -> str:
    """Inputs, config, versions, seeds and timings of each stage."""
    rows = []
    for name, m in lin["stages"].items():
        if m.get("missing"):
            rows.append([name, "not run", "–", "–", "–", "–", "–"])
            continue
        summary = ", ".join(
            f"{k}={v}"
            for k, v in (m.get("summary") or {}).items()
            if not isinstance(v, (dict, list))
        )
        rows.append(
            [
                name,
                m.get("started_at"),
                m.get("seconds"),
                m.get("seed"),
                f"{m.get('runner')} ×{m.get('workers', '?')}",
                m.get("fingerprint"),
                summary,
            ]
        )
    parts = [
        table(
            ["stage", "started (UTC)", "seconds", "seed", "runner", "fingerprint", "summary"],
            rows,
        )
    ]
    parts.append("<h3>Versions</h3>" + kv_table(lin.get("versions") or {}))
    inputs = {
        f"{name}.{k}": v
        for name, m in lin["stages"].items()
        for k, v in (m.get("config") or {}).items()
        if k in ("wat", "tables", "wiki_dumps", "pageviews", "queries_file") and v
    }
    rows = [[k, ", ".join(v) if isinstance(v, list) else v] for k, v in inputs.items()]
    parts.append(
        "<h3>Inputs</h3>"
        + (table(["input", "files"], rows) if rows else '<p class="muted">not recorded</p>')
    )
    parts.append(
        "<details><summary>Resolved configuration (config.json)</summary><pre>"
        + escape(json.dumps(lin.get("config"), indent=2))
        + "</pre></details>"
    )
    return "".join(parts)


def render(data: dict) -> str:
    """The whole page."""
    b = data["balance"]
    d = data["download"]
    head = []
    if data["queries"].get("available"):
        head.append(("queries", num(data["queries"]["total"])))
    if b.get("available"):
        pairs = b.get("pairs") or {}
        head += [
            (label, num(pairs[key]))
            for key, label in (
                ("in", "candidate pairs"),
                ("matched", "matched pairs"),
                ("selected", "selected pairs"),
            )
            if pairs.get(key) is not None
        ]
    if d.get("available") and "success" in d:
        head += [
            ("downloaded images", num(d["success"])),
            ("download success", pct(d["success_rate"])),
        ]
    if data["filters"].get("available"):
        head.append(("kept by the filters", num(data["filters"]["totals"].get("kept"))))
    sections = [
        ("queries", "Query list", queries_section(data["queries"])),
        ("balance", "Balance", balance_section(b)),
        ("table", "Every query", query_table_section(data["table"])),
        ("download", "Download", download_section(d)),
        ("samples", "Sample of downloaded images", samples_section(data["samples"])),
        ("filters", "Filters", filters_section(data["filters"])),
        ("lineage", "Lineage", lineage_section(data["lineage"])),
    ]
    nav = "".join(f'<a href="#{sid}">{escape(title)}</a>' for sid, title, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{escape(title)}</h2>{html}</section>'
        for sid, title, html in sections
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>WIT dataset report — {escape(data['out'])}</title><style>{CSS}</style></head><body>"
        f'<header><h1>WIT dataset report</h1><div class="sub">{escape(data["out"])} · generated {escape(data["generated_at"])}</div>'
        f"</header><nav>{nav}</nav><main>{cards(head) if head else ''}{body}</main></body></html>"
    )
