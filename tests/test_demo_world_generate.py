"""The demo world generator: deterministic, scaled by size, stage reuse, word lists from real sources."""

from __future__ import annotations

import filecmp
import json
from collections import Counter

import numpy as np
import pytest

from pipeline.config import RunConfig
from pipeline.demo_world import stage
from pipeline.demo_world.config import DemoWorldConfig
from pipeline.demo_world.generate import generate_world
from pipeline.demo_world.vocab import Sampler, load_vocab


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_same_seed_gives_byte_identical_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    manifest = generate_world(str(a), seed=3, size="tiny", port=8765)
    generate_world(str(b), seed=3, size="tiny", port=8765)
    names = _files(a)
    assert (
        names
        == _files(b)
        == sorted(["manifest.json", *(f for fs in manifest["files"].values() for f in fs)])
    )
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors


def test_another_seed_gives_another_world(tmp_path, tiny_world):
    generate_world(
        str(tmp_path),
        seed=1,
        size="tiny",
        port=json.loads((tiny_world / "manifest.json").read_text())["port"],
    )
    for name in (
        "wat/CC-MAIN-20240101000000-20240101010000-00000.warc.wat.gz",
        "tables/laion.parquet",
    ):
        assert (tmp_path / name).read_bytes() != (tiny_world / name).read_bytes()


def test_port_zero_picks_a_port_that_every_url_uses(tiny_world):
    manifest = json.loads((tiny_world / "manifest.json").read_text())
    assert manifest["params"]["port"] == 0 and 0 < manifest["port"] < 65536
    assert manifest["base_url"] == f"http://127.0.0.1:{manifest['port']}"
    table = (tiny_world / "tables" / "cc12m.tsv").read_text()
    assert all(line.startswith(manifest["base_url"] + "/") for line in table.splitlines())


def test_counts_scale_with_the_scale_factor(tmp_path, tiny_world):
    tiny = json.loads((tiny_world / "manifest.json").read_text())
    half = generate_world(str(tmp_path), seed=0, size="tiny", scale=0.5, port=tiny["port"])
    assert half["counts"]["articles"] == tiny["counts"]["articles"] // 2
    ratio = half["candidates"]["total"] / tiny["candidates"]["total"]
    assert 0.4 < ratio < 0.6
    assert half["counts"]["wiki"]["wikitext_bytes"] < 0.7 * tiny["counts"]["wiki"]["wikitext_bytes"]


def test_tiny_world_size(tiny_world):
    m = json.loads((tiny_world / "manifest.json").read_text())
    assert 100 <= m["counts"]["articles"] <= 300 and 1000 <= m["candidates"]["total"] <= 3000
    assert (
        m["faults"]["wat"]
        and sum(m["faults"]["wat"].values()) < 0.1 * m["candidates"]["wat_img_links"]
    )


def test_stage_reuses_an_identical_world_and_regenerates_otherwise(tmp_path):
    run = RunConfig(out=str(tmp_path), progress=False)
    cfg = DemoWorldConfig(demo_size="tiny", demo_scale=0.3, demo_port=8766)
    first = stage.run(run, cfg)
    assert first["generated"] and first["candidates"] > 0 and first["port"] == 8766
    assert not stage.run(run, cfg)["generated"]
    (tmp_path / "world" / "tables" / "laion.parquet").unlink()
    assert stage.run(run, cfg)["generated"]  # a missing file invalidates the world
    assert stage.run(
        run, DemoWorldConfig(demo_size="tiny", demo_scale=0.3, demo_port=8766, demo_fault_rate=0.2)
    )["generated"]


def test_vocab_comes_from_wordfreq_and_wordnet():
    vocab = load_vocab()
    assert vocab.words[:3] == ("the", "to", "and") and len(vocab.words) > 20000
    assert list(vocab.freqs) == sorted(vocab.freqs, reverse=True)
    if not vocab.glosses:
        pytest.skip("WordNet data not installed")
    assert {"dog", "river", "bridge"} <= set(vocab.nouns) and "happy" in vocab.adjectives
    assert "mammal" in vocab.glosses["dog"] or "domestic" in vocab.glosses["dog"]


def test_sampler_follows_word_frequencies():
    vocab = load_vocab()
    words = Counter(Sampler(vocab, np.random.default_rng(0)).take(200_000))
    top = [w for w, _ in words.most_common(5)]
    assert top[0] == "the" and set(top) <= set(vocab.words[:8])
    # Zipf: the 10th word is about a tenth as frequent as the first
    assert 3 < words[vocab.words[0]] / max(1, words[vocab.words[9]]) < 30


def test_cli_generates_the_world_and_marks_the_stage_done(tmp_path):
    from pipeline.cli import main

    argv = ["demo-world", "--out", str(tmp_path), "--demo-size", "tiny", "--demo-scale", "0.2"]
    assert main([*argv, "--seed", "5", "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "world" / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["counts"]["articles"] == 30
    marker = json.loads((tmp_path / "world" / "_SUCCESS.json").read_text())
    assert marker["summary"]["candidates"] == manifest["candidates"]["total"]
