"""``reports/select.json`` (filter accounting) and ``reports/balance.json`` from the run's facts."""

from __future__ import annotations

from collections import Counter

from pipeline.select import balance
from pipeline.select.stats import gini, top_share

ZERO_MATCH_SAMPLE = 200


def _prefixed(counts: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in sorted(counts.items()) if k.startswith(prefix)}


def _step(name: str, n_in: int, n_out: int, removed: dict) -> dict:
    return {"step": name, "in": n_in, "out": n_out, "removed": dict(sorted(removed.items()))}


def file_steps(counts: dict) -> list[dict]:
    """Read, filter and match steps of one input file (or of all of them summed)."""
    read = _step("read", counts.get("units", 0), counts.get("pairs", 0), _prefixed(counts, "drop:"))
    filt = _step(
        "filter", counts.get("pairs", 0), counts.get("filtered", 0), _prefixed(counts, "filter:")
    )
    match = _step(
        "match", counts.get("filtered", 0), counts.get("matched", 0), _prefixed(counts, "match:")
    )
    return [read, filt, match]


def select_report(files: list[dict], dedup: list[dict], selected: int, settings: dict) -> dict:
    """Filter accounting by reason, globally and per input file; in = out + removed at every step."""
    total: Counter = Counter()
    for f in files:
        total.update(f["counts"])
    removed: Counter = Counter()
    for d in dedup:
        removed.update({k: v for k, v in d.items() if k not in ("unique", "bucket")})
    unique = sum(d.get("unique", 0) for d in dedup)
    steps = file_steps(total)
    steps.append(_step("dedup", total.get("matched", 0), unique, removed))
    steps.append(_step("balance", unique, selected, {"over_cap": unique - selected}))
    per_file = [
        {
            "source_file": f["source_file"],
            "records": f["counts"].get("records", 0),
            "errors": _prefixed(f["counts"], "error:"),
            "steps": file_steps(f["counts"]),
        }
        for f in sorted(files, key=lambda f: f["source_file"])
    ]
    return {
        "steps": steps,
        "errors": _prefixed(total, "error:"),
        "records": total.get("records", 0),
        "files": per_file,
        "settings": settings,
    }


def balance_report(
    names: dict[int, str],
    counts: dict[int, int],
    attributed: dict[int, int],
    kept: dict[int, int],
    steps: list[dict],
    settings: dict,
) -> dict:
    """Per-query counts before and after the cap, and global concentration figures."""
    quota = settings["quota"]
    rows = []
    for q in sorted(counts, key=lambda q: (-counts[q], q)):
        n = counts[q]
        rows.append(
            {
                "query_id": q,
                "query": names.get(q, ""),
                "matches": n,
                "selected": attributed.get(q, 0),
                "selected_any": kept.get(q, 0),
                "expected": balance.expected(n, quota),
                "sigma": round(balance.sampling_sigma(n, quota), 3)
                if settings["mode"] == "probabilistic"
                else 0.0,
            }
        )
    before = [r["matches"] for r in rows]
    after = [r["selected"] for r in rows]
    zero = sorted(q for q in names if q not in counts)
    funnel = {s["step"]: s["out"] for s in steps}
    return {
        "settings": settings,
        "global": {
            "pairs_in": steps[0]["in"],
            "after_read": funnel["read"],
            "after_filters": funnel["filter"],
            "filtered_by_reason": steps[1]["removed"],
            "matched": funnel["match"],
            "after_dedup": funnel["dedup"],
            "selected": funnel["balance"],
            "queries": len(names),
            "queries_matched": len(rows),
            "queries_zero_matches": len(zero),
            "queries_over_quota": sum(1 for n in before if n > quota),
            "gini_before": round(gini(before), 6),
            "gini_after": round(gini(after), 6),
            "top1pct_share_before": round(top_share(before), 6),
            "top1pct_share_after": round(top_share(after), 6),
            "statistics_over": "queries with at least one match (matches before, selected_for after)",
        },
        "zero_match_queries_sample": [names[q] for q in zero[:ZERO_MATCH_SAMPLE]],
        "queries": rows,
    }
