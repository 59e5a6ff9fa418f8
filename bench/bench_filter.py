"""The filter stage's choices and speeds, measured side by side in one run.

* ``hashes``: imagehash's pHash, dHash, aHash and wHash on demo scenes and their copies
  (re-encoded JPEG q50 / WebP q60, resized 0.5x / 0.75x / 1.5x, trimmed 1-2% off every side or
  1% off one side, each passed through the download's resize): the largest distance of a copy
  to its original, and how many pairs of different scenes fall within that distance, alone and
  with the colour-thumbnail check.
* ``languages``: accuracy (all, and captions of at most four words), the share given a wrong
  language (what a filter that keeps undetermined captions drops wrongly), the share left
  undetermined, and captions per second on
  one core of py3langid (at several confidence floors) and of pycld2, gcld3 and lingua when they
  are installed, on :mod:`bench.language_sample`.
* ``filters``: pairs per second per core of each filter's per-pair work over downloaded shards:
  decode + pHash + thumbnail, caption language, bucket comparison, CLIP scoring.
* ``inference``: the CLIP score of the same shards and model through Beam's RunInference with
  the stage's pre-batched shard elements, through RunInference with Beam's own BatchElements over
  one element per pair (tensors prepared upstream), and through a plain batched PyTorch loop.

    python -m bench.bench_filter                       # every part, on out/demo/shards
    python -m bench.bench_filter --part hashes --scenes 300
    python -m bench.bench_filter --part inference --shards out/demo/shards --max-shards 2
"""

from __future__ import annotations

import argparse
import glob
import io
import itertools
import os
import time

import numpy as np

from bench.language_sample import SAMPLE

VARIANTS = (
    "jpeg q50", "webp q60", "resized 0.5x", "resized 0.75x", "resized 1.5x",
    "trimmed 1% all sides", "trimmed 2% all sides", "trimmed 1% one side",
)  # fmt: skip


def _variant(img, name: str) -> bytes:
    from PIL import Image

    from pipeline.demo_world.scene import encode

    w, h = img.size
    if name.startswith("jpeg"):
        return encode(img, "jpg", 50)
    if name.startswith("webp"):
        return encode(img, "webp", 60)
    if name.startswith("resized"):
        f = float(name.split()[1][:-1])
        return encode(img.resize((int(w * f), int(h * f)), Image.BICUBIC), "jpg", 85)
    p = int(name.split()[1][:-1]) / 100
    dx, dy = round(p * w), round(p * h)
    box = (dx, 0, w, h) if "one side" in name else (dx, dy, w - dx, h - dy)
    return encode(img.crop(box), "jpg", 85)


def _stored(body: bytes):
    from PIL import Image

    from pipeline.download.images import ImageOptions, process_image

    opts = ImageOptions(256, "keep_ratio", "jpg", 90, 64, 4, 89_000_000, 0)
    res = process_image(body, opts)
    return res.data, Image.open(io.BytesIO(res.data)).convert("RGB")


def part_hashes(scenes: int) -> None:
    """Copies' largest distance and different scenes' pairs within it, per imagehash hash."""
    import imagehash

    from pipeline.demo_world import scene as S
    from pipeline.filter import phash
    from pipeline.filter.config import NEAR_DISTANCE, NEAR_THUMB_DIFF

    hashes = {
        "phash": imagehash.phash, "dhash": imagehash.dhash,
        "ahash": imagehash.average_hash, "whash": imagehash.whash,
    }  # fmt: skip
    info = [S.scene_for(i, 0) for i in range(scenes)]
    originals, copies = [], []
    for i in range(scenes):
        img = S.render(info[i], i, 0)
        originals.append(_stored(S.encode(img, info[i].fmt)))
        copies.append({v: _stored(_variant(img, v)) for v in VARIANTS})
    look = ("colour", "shape", "count", "position", "background")
    different = [
        (a, b)
        for a, b in itertools.combinations(range(scenes), 2)
        if any(getattr(info[a], f) != getattr(info[b], f) for f in look)
    ]
    thumbs = [phash.signature(data).thumb for data, _ in originals]
    print(f"\n{scenes} demo scenes, {len(different)} pairs of different scenes")
    print(f"{'hash':6} {'ms/img':>7}  largest distance of a copy: " + ", ".join(VARIANTS))
    for name, fn in hashes.items():
        t = time.perf_counter()
        h = [fn(im) for _, im in originals]
        ms = (time.perf_counter() - t) / scenes * 1e3
        worst = [max(h[i] - fn(copies[i][v][1]) for i in range(scenes)) for v in VARIANTS]
        print(f"{name:6} {ms:7.2f}  " + "  ".join(f"{w:3d}" for w in worst))
        for k in (4, 8, NEAR_DISTANCE):
            close = [(a, b) for a, b in different if h[a] - h[b] <= k]
            checked = [
                p for p in close if phash.thumb_diff(thumbs[p[0]], thumbs[p[1]]) <= NEAR_THUMB_DIFF
            ]
            print(
                f"        k={k:2d}: {len(close) / len(different):7.3%} of different-scene pairs "
                f"within k; {len(checked)} of them also pass the thumbnail check "
                f"(<= {NEAR_THUMB_DIFF})"
            )
    diffs = {
        v: max(
            phash.thumb_diff(thumbs[i], phash.signature(copies[i][v][0]).thumb)
            for i in range(scenes)
        )
        for v in VARIANTS
    }
    print(
        "thumbnail difference of copies (largest): "
        + ", ".join(f"{v} {d:.2f}" for v, d in diffs.items())
    )


def _language_libraries() -> dict:
    """name -> (seconds to load, caption -> code), for the libraries that are installed."""
    out = {}
    from pipeline.filter.language import identifier

    for floor in (0.0, 0.3, 0.5):
        t = time.perf_counter()
        ident = identifier(floor)
        out[f"py3langid >= {floor}"] = (
            time.perf_counter() - t,
            lambda c, i=ident: i.classify(c)[0],
        )
    try:
        import pycld2

        def cld2(c):
            code = pycld2.detect(c)[2][0][1]
            return "und" if code == "un" else code.split("-")[0]

        out["pycld2"] = (0.0, cld2)
    except ImportError:
        print("pycld2: not installed")
    try:
        import gcld3

        t = time.perf_counter()
        g = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
        out["gcld3"] = (
            time.perf_counter() - t,
            lambda c: g.FindLanguage(text=c).language.split("-")[0],
        )
    except ImportError:
        print("gcld3: not installed (needs protoc and libprotobuf to build)")
    try:
        from lingua import LanguageDetectorBuilder

        t = time.perf_counter()
        det = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()
        load = time.perf_counter() - t

        def lingua(c):
            r = det.detect_language_of(c)
            return r.iso_code_639_1.name.lower() if r else "und"

        out["lingua (all, high accuracy)"] = (load, lingua)
    except ImportError:
        print("lingua-language-detector: not installed")
    return out


def part_languages() -> None:
    """Accuracy and speed of each installed identifier on the multilingual sample."""
    items = [(code, c) for code, caps in SAMPLE.items() for c in caps]
    short = [
        i for i, (code, c) in enumerate(items) if len(c.split()) <= 4 and code not in ("ja", "zh")
    ]
    print(
        f"\n{len(items)} captions in {len(SAMPLE)} languages ({len(short)} short Latin/Cyrillic ones)"
    )
    print(
        f"{'library':28} {'load s':>7} {'captions/s':>11} {'accuracy':>9} {'short':>7} "
        f"{'wrong':>7} {'und':>6}"
    )
    for name, (load, fn) in _language_libraries().items():
        preds = [fn(c) for _, c in items]
        t, rounds = time.perf_counter(), 0
        while time.perf_counter() - t < 1.0:
            for _, c in items:
                fn(c)
            rounds += 1
        rate = rounds * len(items) / (time.perf_counter() - t)
        acc = np.mean([p == code for (code, _), p in zip(items, preds)])
        acc_short = np.mean([preds[i] == items[i][0] for i in short])
        # what a filter keeping 'und' would wrongly drop: a confident, wrong language
        wrong = np.mean([p not in (code, "und") for (code, _), p in zip(items, preds)])
        und = np.mean([p == "und" for p in preds])
        print(
            f"{name:28} {load:7.2f} {rate:11,.0f} {acc:9.1%} {acc_short:7.1%} {wrong:7.1%} "
            f"{und:6.1%}"
        )


def _shards(folder: str, limit: int) -> list[tuple[str, str]]:
    pairs = []
    for pq_path in sorted(glob.glob(os.path.join(folder, "[0-9]" * 5 + ".parquet")))[:limit]:
        pairs.append((pq_path, pq_path[: -len(".parquet")] + ".tar"))
    if not pairs:
        raise SystemExit(f"no shards in {folder}: run `make shards` first or pass --shards")
    return pairs


def _refs(pairs):
    from pipeline.filter.analyse import SampleRef, read_rows

    refs = []
    for shard, (pq_path, tar) in enumerate(pairs):
        refs.append(
            [
                SampleRef(shard, r["key"], r["uid"], r["caption"] or "", tar, "jpg")
                for r in read_rows(pq_path)
                if r["status"] == "success"
            ]
        )
    return refs


def _weights(path: str) -> str:
    if path and os.path.exists(path):
        return path
    import tempfile

    import torch

    from clip_model.model import CLIP
    from clip_model.presets import preset
    from clip_model.tokenizer import TrainedBPE

    print("(no checkpoint: a fresh 'tiny' preset model, the same cost per pair)")
    tok = TrainedBPE.train(["a red circle on a blue background"] * 10, 4096, 24)
    cfg = preset("tiny", vocab_size=tok.vocab_size)
    blob = {
        "model": CLIP(cfg).state_dict(),
        "config": {"model": cfg.to_dict()},
        "tokenizer": tok.to_json(),
    }
    out = os.path.join(tempfile.mkdtemp(), "fresh.pt")
    torch.save(blob, out)
    return out


def part_filters(folder: str, max_shards: int, weights: str) -> None:
    """Pairs per second per core of each filter's per-pair work."""
    import torch

    from pipeline.download import shard_writer as sw
    from pipeline.filter import dedup, language, phash
    from pipeline.filter.clip_score import ScorerSpec, load_scorer, score_refs

    torch.set_num_threads(1)
    refs = [r for shard in _refs(_shards(folder, max_shards)) for r in shard]
    images = {}
    for tar in sorted({r.tar for r in refs}):
        images.update(sw.read_tar_images(tar, "jpg"))
    n = len(refs)
    print(f"\n{n} downloaded pairs from {len({r.tar for r in refs})} shards, one core")
    t = time.perf_counter()
    sigs = [phash.signature(images[r.key]) for r in refs]
    rate = {"decode + pHash + colour thumbnail": n / (time.perf_counter() - t)}
    language.identify("warm up: the model loads on first use", 0.5)
    t = time.perf_counter()
    for r in refs:
        language.identify(r.caption, 0.5)
    rate["caption language (py3langid)"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    buckets: dict = {}
    for r, s in zip(refs, sigs):
        node = dedup.Node(r.uid, r.shard, r.key, "")
        for key in phash.band_keys(s.phash, 13, 12):
            buckets.setdefault(key, []).append((node, s.phash, s.thumb))
    edges = [
        e for (i, _), items in buckets.items() for e in dedup.bucket_edges(i, items, 13, 12, 2.5)
    ]
    dedup.groups(edges)
    rate["near-duplicate buckets + groups (all pairs)"] = n / (time.perf_counter() - t)
    scorer = load_scorer(ScorerSpec(_weights(weights), batch_size=256))
    sample = refs[: min(n, 1024)]
    t = time.perf_counter()
    score_refs(scorer, sample)
    rate[f"CLIP score ({scorer.image_size} px model, batch 256)"] = len(sample) / (
        time.perf_counter() - t
    )
    for name, r in rate.items():
        print(f"  {name:48} {r:10,.0f} pairs/s")


def _keyed_pipeline(refs, spec, batch: int):
    """RunInference over one element per pair with Beam's own batching (BatchElements)."""
    import apache_beam as beam
    import torch
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.ml.inference.pytorch_inference import PytorchModelHandlerKeyedTensor
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipeline.download import shard_writer as sw
    from pipeline.filter.clip_score import load_scorer, prepare

    scorer = load_scorer(spec)

    def tensors(shard_refs):
        images = sw.read_tar_images(shard_refs[0].tar, "jpg")
        pixels, tokens, ok = prepare(scorer, shard_refs, images)
        for j in range(len(ok)):
            yield {"images": pixels[j], "tokens": tokens[j]}

    class Handler(PytorchModelHandlerKeyedTensor):
        def load_model(self):
            return load_scorer(spec)

    handler = Handler(
        state_dict_path="unused", model_class=torch.nn.Identity, min_batch_size=batch,
        max_batch_size=batch,
    )  # fmt: skip
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = (
            p
            | beam.Create(refs)
            | beam.FlatMap(tensors)
            | RunInference(handler)
            | beam.Map(lambda r: float(r.inference))
        )


def _prebatched_pipeline(refs, spec):
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipeline.filter.inference import ClipScoreHandler

    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = (
            p
            | beam.Create(refs)
            | RunInference(ClipScoreHandler(spec).with_no_batching())
            | beam.Map(lambda r: r.inference)
        )


def part_inference(folder: str, max_shards: int, weights: str, batch: int) -> None:
    """CLIP scoring of the same pairs: RunInference (two ways) against a plain PyTorch loop."""
    import torch

    from pipeline.filter.clip_score import ScorerSpec, load_scorer, score_refs

    torch.set_num_threads(1)
    refs = _refs(_shards(folder, max_shards))
    n = sum(len(r) for r in refs)
    spec = ScorerSpec(_weights(weights), batch_size=batch, threads=1)
    print(f"\nCLIP score of {n} pairs ({len(refs)} shards), batch {batch}, one torch thread")
    runs = {}
    for name in ("plain loop", "RunInference, shard elements", "RunInference + BatchElements"):
        t = time.perf_counter()
        if name == "plain loop":
            scorer = load_scorer(spec)
            for shard in refs:
                score_refs(scorer, shard)
        elif name.startswith("RunInference, shard"):
            _prebatched_pipeline(refs, spec)
        else:
            _keyed_pipeline(refs, spec, batch)
        runs[name] = time.perf_counter() - t
    base = runs["plain loop"]
    for name, s in runs.items():
        print(f"  {name:32} {s:7.2f} s  {n / s:8,.0f} pairs/s  x{s / base:.2f} of the plain loop")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts and print their tables."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--part", choices=("all", "hashes", "languages", "filters", "inference"), default="all"
    )
    p.add_argument("--scenes", type=int, default=200, help="demo scenes for the hash part")
    p.add_argument("--shards", default="out/demo/shards", help="downloaded shards to measure on")
    p.add_argument("--max-shards", type=int, default=2)
    p.add_argument("--weights", default="out/demo/train/checkpoint.pt", help="CLIP weights")
    p.add_argument("--batch", type=int, default=256, help="CLIP batch size")
    p.add_argument("--quick", action="store_true", help="fewer scenes and one shard (make bench)")
    a = p.parse_args(argv)
    if a.quick:
        a.scenes, a.max_shards = min(a.scenes, 60), 1
    if a.part in ("all", "hashes"):
        part_hashes(a.scenes)
    if a.part in ("all", "languages"):
        part_languages()
    if a.part in ("all", "filters"):
        part_filters(a.shards, a.max_shards, a.weights)
    if a.part in ("all", "inference"):
        part_inference(a.shards, a.max_shards, a.weights, a.batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
