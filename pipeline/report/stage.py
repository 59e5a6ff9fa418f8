"""``wit report``: render ``reports/index.html`` and ``reports/report.json`` from what is on disk."""

from __future__ import annotations

import copy
import json

from pipeline import fs
from pipeline.config import RunConfig
from pipeline.layout import Layout
from pipeline.report import collect, html
from pipeline.report.config import ReportConfig


def run(run: RunConfig, report: ReportConfig) -> dict:
    """Collect every stage's outputs, write the JSON and the self-contained HTML; return a summary."""
    layout = Layout(run.out)
    data = collect.collect(run.out, report.sample_grid, report.table_rows, report.thumbnail_px)
    fs.makedirs(layout.reports)
    # the JSON is the data behind the page; thumbnails are only in the HTML
    plain = copy.copy(data)
    plain["samples"] = [{k: v for k, v in s.items() if k != "thumb"} for s in data["samples"]]
    plain["filters"] = without_thumbs(data["filters"])
    json_path = fs.join(layout.reports, "report.json")
    html_path = fs.join(layout.reports, "index.html")
    fs.write_text_atomic(json_path, json.dumps(plain, indent=1, default=str) + "\n")
    fs.write_text_atomic(html_path, html.render(data))
    return summary(data, html_path)


def without_thumbs(value):
    """A copy of nested data without its ``thumb`` entries (they live in the HTML only)."""
    if isinstance(value, dict):
        return {k: without_thumbs(v) for k, v in value.items() if k != "thumb"}
    if isinstance(value, list):
        return [without_thumbs(v) for v in value]
    return value


def summary(data: dict, html_path: str) -> dict:
    """The stage summary: where the report is and the headline figures it shows."""
    out: dict = {"report": html_path, "sections_not_run": []}
    for name in ("queries", "balance", "download"):
        if not data[name].get("available"):
            out["sections_not_run"].append(name)
    if data["queries"].get("available"):
        out["queries"] = data["queries"]["total"]
    b = data["balance"]
    if b.get("available"):
        out["gini_before"] = b["summary"]["matches"]["gini"]
        out["gini_after"] = b["summary"]["selected"]["gini"]
    d = data["download"]
    if d.get("available") and "success" in d:
        out["downloaded"] = d["success"]
    out["samples_shown"] = len(data["samples"])
    f = data["filters"]
    if f.get("available"):
        out["kept_by_filters"] = f["totals"].get("kept")
    return out
