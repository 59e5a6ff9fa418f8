"""``selection/_selection.json``: what a selection is, written by ``wit select`` beside its parts.

    {"cap": 100, "oversample": 1.3, "quota": 130, "mode": "exact", "seed": 0,
     "queries_file": ".../queries.parquet", "rows": 11034,
     "parts": [["part-00000.parquet", 5517], ["part-00001.parquet", 5517]]}

A stage that reads the selection (the download's per-query trim needs the cap when the selection
over-sampled) reads it here, never another stage's configuration, and takes exactly the parts
listed, whatever else lies in the folder.
"""

from __future__ import annotations

import json

from pipeline import fs

NAME = "_selection.json"  # "_": dataset readers (pyarrow, pandas) skip it


def path(selection_dir: str) -> str:
    return fs.join(selection_dir, NAME)


def write(selection_dir: str, info: dict, parts: list[tuple[str, int]]) -> dict:
    """Write the metadata of the selection in ``selection_dir`` (``parts``: path, rows)."""
    meta = {
        **info,
        "rows": sum(n for _, n in parts),
        "parts": [[p.rsplit("/", 1)[-1], n] for p, n in sorted(parts)],
    }
    fs.write_text_atomic(path(selection_dir), json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


def read(selection_dir: str) -> dict:
    """The metadata; OSError if there is none, ValueError if it is not ours."""
    meta = json.loads(fs.read_text(path(selection_dir)))
    if not isinstance(meta, dict) or not isinstance(meta.get("parts"), list):
        raise ValueError(f"{path(selection_dir)} is not a selection's metadata")
    return meta


def part_paths(selection_dir: str, meta: dict) -> list[str]:
    """The selection's part files, in order."""
    return [fs.join(selection_dir, name) for name, _ in meta["parts"]]


def trim_cap(meta: dict) -> int | None:
    """The cap to trim back to after download: only when the selection over-sampled."""
    return int(meta["cap"]) if float(meta.get("oversample") or 1) > 1 else None
