"""The filter stage's plain functions: quantile, pHash bands, duplicate groups, language, plan."""

from __future__ import annotations

import random
from itertools import combinations

import numpy as np
import pytest

from pipeline.config import ConfigError, build_section
from pipeline.filter import dedup, language, phash, quantile, reshard
from pipeline.filter.decide import Decided
from tests.filter_helpers import distinct_scenes, served, success


def _threshold_by_passes(shards: list, fraction: float) -> float:
    high: dict = {}
    for s in shards:
        for b, n in quantile.high_counts(s).items():
            high[b] = high.get(b, 0) + n
    k = quantile.top_count(sum(high.values()), fraction)
    bin_, rank = quantile.locate(high, k)
    low: dict = {}
    for s in shards:
        for b, n in quantile.low_counts(s, bin_).items():
            low[b] = low.get(b, 0) + n
    return quantile.kth_largest(high, low, bin_, rank)


@pytest.mark.parametrize("seed", range(12))
def test_the_top_fraction_threshold_is_the_kth_largest_score_found_by_sorting(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    scores = rng.normal(0.2, 0.15, n).astype(np.float32)
    if seed % 3 == 0:  # ties
        scores = np.round(scores, 2).astype(np.float32)
    if seed % 4 == 0:  # negatives and zeros of both signs
        scores[: n // 3] = -np.abs(scores[: n // 3])
        scores[n // 3 : n // 3 + 2] = [0.0, -0.0][: len(scores[n // 3 : n // 3 + 2])]
    fraction = float(rng.uniform(0.001, 1.0))
    shards = np.array_split(scores, int(rng.integers(1, 9)))
    k = quantile.top_count(n, fraction)
    expected = float(np.sort(scores)[::-1][k - 1])
    assert _threshold_by_passes(shards, fraction) == expected


def test_sort_keys_order_like_the_floats():
    values = np.array([-1.0, -0.5, -1e-30, 0.0, 1e-30, 0.25, 1.0], dtype=np.float32)
    keys = quantile.sort_keys(values)
    assert list(np.argsort(keys)) == list(range(len(values)))
    assert [quantile.key_to_score(int(k)) for k in keys] == values.tolist()


def test_combination_rank_is_the_position_in_itertools_order():
    for n, m in [(13, 1), (8, 4), (6, 3), (5, 5)]:
        for i, combo in enumerate(combinations(range(n), m)):
            assert phash.combination_rank(combo, n) == i


@pytest.mark.parametrize("bands,distance", [(13, 12), (5, 4), (8, 4), (6, 2)])
def test_every_pair_within_the_distance_shares_a_band_key(bands, distance):
    rng = random.Random(bands * 100 + distance)
    for _ in range(300):
        a = rng.getrandbits(64)
        flips = rng.sample(range(64), rng.randint(0, distance))
        b = a
        for bit in flips:
            b ^= 1 << bit
        shared = set(phash.band_keys(a, bands, distance)) & set(phash.band_keys(b, bands, distance))
        assert shared, (hex(a), hex(b))
        first = phash.first_shared_key(a, b, bands, distance)
        assert first == min(index for index, _ in shared)
        va, vb = (phash.band_matrix(np.array([h], dtype=np.uint64), bands) for h in (a, b))
        assert phash.first_shared_keys(va, vb, bands, distance).tolist() == [first]


def _groups_of(images: dict[str, bytes], bands=13, distance=12, thumb=2.5) -> list[set[str]]:
    """Near-duplicate groups of named images through band buckets, as the pipeline finds them."""
    buckets: dict = {}
    for name, data in images.items():
        sig = phash.signature(data)
        node = dedup.Node(name, 0, name, name)
        for key in phash.band_keys(sig.phash, bands, distance):
            buckets.setdefault(key, []).append((node, sig.phash, sig.thumb))
    edges = [
        e
        for (index, _), items in buckets.items()
        for e in dedup.bucket_edges(index, items, bands, distance, thumb)
    ]
    return [{n.uid for n in g} for g in dedup.groups(edges)]


def test_dedup_finds_reencoded_resized_and_trimmed_copies_and_merges_no_different_images():
    ids = distinct_scenes(16)
    images = {}
    for i in ids:
        images[f"{i}"] = success(f"http://x/{i}", "c", served(i), [])["image"]
    for i in ids[:5]:
        for variant in ("reencoded", "resized", "trimmed"):
            images[f"{i}-{variant}"] = success(f"http://y/{i}", "c", served(i, variant), [])[
                "image"
            ]
    found = sorted(_groups_of(images), key=min)
    expected = sorted(
        ({f"{i}", f"{i}-reencoded", f"{i}-resized", f"{i}-trimmed"} for i in ids[:5]), key=min
    )
    assert found == expected


def test_groups_keep_the_smallest_uid_whatever_order_the_edges_come_in():
    nodes = [dedup.Node(u, s, f"k{u}", "h" if u in "ab" else u) for s, u in enumerate("dbeacfg")]
    by = {n.uid: n for n in nodes}
    edges = [
        (by["d"], by["b"]),
        (by["e"], by["d"]),
        (by["a"], by["c"]),
        (by["c"], by["b"]),
        (by["f"], by["g"]),
    ]
    for seed in range(5):
        random.Random(seed).shuffle(edges)
        comps = dedup.groups([(b, a) if seed % 2 else (a, b) for a, b in edges])
        assert [[n.uid for n in c] for c in comps] == [["a", "b", "c", "d", "e"], ["f", "g"]]
    drops = {d.node.uid: (d.keeper.uid, d.reason) for d in dedup.drops(comps)}
    assert drops == {
        "b": ("a", dedup.DUPLICATE_EXACT),  # same sha256 as the keeper
        "c": ("a", dedup.DUPLICATE_NEAR),
        "d": ("a", dedup.DUPLICATE_NEAR),
        "e": ("a", dedup.DUPLICATE_NEAR),
        "g": ("f", dedup.DUPLICATE_NEAR),
    }


def test_exact_edges_join_every_image_of_a_sha256_to_the_smallest():
    nodes = [dedup.Node(u, 0, u, "h") for u in "cab"]
    assert [(a.uid, b.uid) for a, b in dedup.exact_edges(nodes)] == [("a", "b"), ("a", "c")]


def test_a_bucket_scan_in_small_chunks_finds_exactly_the_pairs_within_the_distance(monkeypatch):
    monkeypatch.setattr(dedup, "PAIRS_PER_CHUNK", 7)
    rng = random.Random(1)
    base = [rng.getrandbits(64) for _ in range(20)]
    hashes = base + [h ^ (1 << rng.randrange(64)) for h in base]  # each with a copy 1 bit away
    found = {
        (i, j)
        for a, b in dedup._near_pairs(np.array(hashes, dtype=np.uint64), 1)
        for i, j in zip(a.tolist(), b.tolist())
    }
    brute = {
        (i, j) for i, j in combinations(range(40), 2) if phash.hamming(hashes[i], hashes[j]) <= 1
    }
    assert found == brute and {(i, i + 20) for i in range(20)} <= found


def test_a_bucket_reports_a_pair_once_and_only_if_the_thumbnails_agree():
    a = 0x0123456789ABCDEF
    near, far_thumb = a ^ 0b101, bytes([200]) * phash.THUMB_BYTES
    grey = bytes([100]) * phash.THUMB_BYTES
    items = [
        (dedup.Node("a", 0, "a", "1"), a, grey),
        (dedup.Node("b", 0, "b", "2"), near, grey),
        (dedup.Node("c", 0, "c", "3"), near, far_thumb),  # same hash, other colours
    ]
    keys = [k for k in phash.band_keys(a, 13, 12) if k in phash.band_keys(near, 13, 12)]
    first = phash.first_shared_key(a, near, 13, 12)
    reported = [dedup.bucket_edges(index, items, 13, 12, 2.5) for index, _ in keys]
    assert [(x.uid, y.uid) for e in reported for x, y in e] == [("a", "b")]
    assert reported[[i for i, _ in keys].index(first)]


@pytest.mark.parametrize("uid,code", [("de", "de"), ("fr", "fr"), ("es", "es")])
def test_language_of_a_foreign_caption(uid, code):
    from tests.filter_helpers import FOREIGN

    assert language.identify(FOREIGN[uid], 0.5)[0] == code


def test_captions_without_letters_are_undetermined():
    assert language.identify("12345 !!", 0.0) == ("und", 0.0)
    assert language.identify(None, 0.0) == ("und", 0.0)
    assert language.identify("two red circles on a blue background", 0.5)[0] == "en"


def _decided(kept_by_shard: list[tuple[int, list[int]]]) -> list[Decided]:
    return [Decided(s, rows, tuple(k), {}) for s, (rows, k) in enumerate(kept_by_shard)]


@pytest.mark.parametrize("seed", range(20))
def test_the_reshard_plan_tiles_every_input_row_once_with_full_shards(seed):
    rng = random.Random(seed)
    shards = []
    for _ in range(rng.randint(1, 6)):
        rows = rng.randint(0, 30)
        kept = sorted(rng.sample(range(rows), rng.randint(0, rows))) if rows else []
        shards.append((rows, kept))
    per = rng.randint(1, 12)
    decided = _decided(shards)
    tasks = reshard.plan(decided, per)
    covered = {s: [] for s in range(len(shards))}
    successes = []
    for t in tasks:
        got = 0
        for s, a, b in t.slices:
            covered[s].append((a, b))
            got += sum(1 for p in decided[s].kept if a <= p < b)
        successes.append(got)
        assert t.key_rows >= t.rows
    for s, (rows, _) in enumerate(shards):
        flat = [p for a, b in covered[s] for p in range(a, b)]
        assert flat == list(range(rows))
    total = sum(len(k) for _, k in shards)
    assert sum(successes) == total
    assert all(n == per for n in successes[:-1])
    assert 0 < successes[-1] <= per or total == 0


@pytest.mark.parametrize(
    "values,key",
    [
        ({"near_distance": 40}, "filter.near_distance"),
        ({"near_bands": 5, "near_distance": 8}, "filter.near_bands"),
        ({"clip_top_fraction": 0}, "filter.clip_top_fraction"),
        ({"clip_min_score": 2}, "filter.clip_min_score"),
        ({"languages": ["en", "xx"]}, "filter.languages"),
        ({"clip_device": "tpu"}, "filter.clip_device"),
        ({"near_bands": 16, "near_distance": 8}, "filter.near_bands"),
    ],
)
def test_bad_filter_settings_are_configuration_errors(values, key, monkeypatch):
    import pipeline.config as C

    monkeypatch.setitem(C.SECTIONS, "filter", "pipeline.filter.config:FilterConfig")
    with pytest.raises(ConfigError) as e:
        build_section("filter", values)
    assert e.value.key == key


@pytest.mark.parametrize("bands,distance", [(15, 14), (8, 4), (6, 3)])
def test_the_vectorised_first_shared_key_matches_the_scalar_one_on_random_pairs(bands, distance):
    rng = np.random.default_rng(bands)
    a = rng.integers(0, 2**63, 600, dtype=np.uint64)
    sparse = rng.integers(0, 2**63, 600, dtype=np.uint64) & rng.integers(
        0, 2**63, 600, dtype=np.uint64
    )
    dense = rng.integers(0, 2**63, 600, dtype=np.uint64)
    b = a ^ np.where(np.arange(600) % 2 == 0, sparse & (sparse >> np.uint64(3)), dense)
    got = phash.first_shared_keys(
        phash.band_matrix(a, bands), phash.band_matrix(b, bands), bands, distance
    )
    want = [phash.first_shared_key(int(x), int(y), bands, distance) for x, y in zip(a, b)]
    assert got.tolist() == [-1 if w is None else w for w in want]
    assert -1 in got.tolist() and any(w is not None for w in want)
