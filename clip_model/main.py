"""``wit train`` / ``python -m clip_model.main``: train CLIP on the shards, then evaluate.

One process: ``wit train --out out/demo``. Several GPUs: ``torchrun --nproc_per_node 8 -m
clip_model.main --config configs/x.yaml --out out/x`` (same flags). Writes, under ``<out>/train/``:
``checkpoint.pt``, ``log.csv``, ``tensorboard/`` and ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import torch

from clip_model import data as D
from clip_model import distributed, zero_shot
from clip_model.config import TrainConfig
from clip_model.model import CLIP, CLIPConfig, num_params
from clip_model.presets import preset
from clip_model.tokenizer import ClipBPE, Tokenizer, TrainedBPE, from_json
from clip_model.train import CHECKPOINT, fit, load_checkpoint
from pipeline import fs
from pipeline.config import ConfigError, RunConfig
from pipeline.layout import Layout


def find_shards(run: RunConfig, train: TrainConfig) -> tuple[list[str], list[str]]:
    """(training shards, held-out shards); raises ConfigError when there are none."""
    spec = train.shards or fs.join(Layout(run.out).shards, "*.tar")
    shards = D.list_shards(spec)
    if not shards:
        raise ConfigError(
            "train.shards",
            f"no .tar shards found at {spec!r}; run `make shards` first or pass --shards",
        )
    n = train.holdout_shards
    if n and len(shards) - n >= 2:
        return shards[:-n], shards[-n:]
    return shards, []


def make_tokenizer(train: TrainConfig, shards: list[str], context_length: int, env) -> Tokenizer:
    """The CLIP BPE from disk, or a BPE trained on the captions (on rank 0, then broadcast)."""
    if train.tokenizer == "clip":
        return ClipBPE(train.bpe_vocab, context_length)
    blob = [None]
    if env.is_main:
        tok = TrainedBPE.train(
            D.captions(shards, train.bpe_captions), train.bpe_vocab_size, context_length
        )
        blob = [tok.to_json()]
    if env.distributed:
        torch.distributed.broadcast_object_list(blob, src=0)
    return from_json(blob[0])


def _query_names(run: RunConfig) -> set[str] | None:
    path = Layout(run.out).queries_parquet
    if not fs.exists(path):
        return None
    import pyarrow.parquet as pq

    return set(pq.read_table(path, columns=["query"]).column("query").to_pylist())


def _world_seed(run: RunConfig) -> int:
    path = Layout(run.out).world_manifest
    return (
        int(json.loads(fs.read_text(path)).get("seed", run.seed)) if fs.exists(path) else run.seed
    )


def evaluate(
    model: CLIP, tokenizer, run: RunConfig, train: TrainConfig, heldout: list[str], device: str
) -> dict:
    """Zero-shot on held-out demo images and retrieval on a held-out shard (or generated pairs)."""
    model.eval()
    size = model.cfg.vision.image_size
    queries = _query_names(run)
    zs = zero_shot.evaluate_demo(
        model, tokenizer, _world_seed(run), train.zs_images, device, queries, train.zs_ensemble
    )
    if heldout:
        pairs = [p for url in heldout for p in D.read_pairs(url, size, train.retrieval_pairs)]
        pairs = pairs[: train.retrieval_pairs]
        images, texts, source = (
            torch.stack([p.image for p in pairs]),
            [p.text for p in pairs],
            heldout,
        )
    else:
        images, texts = zero_shot.demo_pairs(train.retrieval_pairs, _world_seed(run), size)
        source = "generated held-out demo pairs"
    image_f = zero_shot.encode_images(model, images, device)
    text_f = zero_shot.encode_texts(model, tokenizer, texts, device)
    ret = zero_shot.retrieval(image_f, text_f)
    return {
        "zero_shot": zs,
        "retrieval": {**ret, "source": source},
        "class_source": "queries.parquet" if queries else "demo generator",
    }


def _loss_summary(losses: list[tuple[int, float]]) -> dict:
    if not losses:
        return {}
    vals = [v for _, v in losses]
    k = max(1, min(10, len(vals) // 4))
    curve = [[s, round(v, 4)] for s, v in losses[:: max(1, len(losses) // 20)]]
    return {
        "loss_first": sum(vals[:k]) / k,
        "loss_last": sum(vals[-k:]) / k,
        "loss_min": min(vals),
        "loss_curve": curve,
    }


HEADLINE = "colour_shape/demo"


def metrics_from(ev: dict, result, model: CLIP, train: TrainConfig, heldout, shards) -> dict:
    """The flat metrics.json record. Headline: colour+shape classes (those in the query list) with
    the demo-phrased prompts; every class set (colour, shape, background) and prompt set (single,
    the paper's 80-template ensemble) is under ``zero_shot``."""
    head = ev["zero_shot"][HEADLINE]
    return {
        "zero_shot_task": f"{HEADLINE}: {head['classes']} classes, held-out generated demo images",
        "zero_shot_top1": head["top1"],
        "zero_shot_top5": head["top5"],
        "chance": head["chance_top1"],
        "chance_top5": head["chance_top5"],
        "recall_at_1": ev["retrieval"]["recall_at_1"],
        "recall_at_5": ev["retrieval"]["recall_at_5"],
        "retrieval_chance_at_1": 1 / ev["retrieval"]["pairs"],
        "zero_shot": ev["zero_shot"],
        "retrieval": ev["retrieval"],
        "class_source": ev["class_source"],
        "steps": result.step,
        "samples_seen": result.data.samples_seen,
        "epoch": result.data.epoch(),
        "samples_per_s": result.samples_per_s,
        "train_seconds_this_run": result.seconds,
        "peak_gpu_mem_gb": result.peak_mem_gb,
        "skipped_samples": {k: v for k, v in result.data.counts.items() if k != "shards_opened"},
        "shards_opened": result.data.counts.get("shards_opened", 0),
        "params": num_params(model),
        "model": train.model,
        "train_shards": len(shards),
        "heldout_shards": len(heldout),
        **_loss_summary(result.losses),
    }


def run(run: RunConfig, train: TrainConfig) -> dict:
    """Train on the shards under ``run.out`` (or ``train.shards``), evaluate, write metrics.json."""
    started = time.time()
    shards, heldout = find_shards(run, train)
    if train.torch_threads:
        torch.set_num_threads(train.torch_threads)
    env = distributed.init(train.device)
    try:
        return _run(run, train, env, shards, heldout, started)
    finally:
        distributed.cleanup()


def _run(run, train, env, shards, heldout, started) -> dict:
    train_dir = Layout(run.out).train
    fs.makedirs(train_dir)
    ckpt_path = fs.join(train_dir, CHECKPOINT)
    resume = load_checkpoint(ckpt_path) if train.resume and fs.exists(ckpt_path) else None
    if resume:
        tokenizer, cfg = (
            from_json(resume["tokenizer"]),
            CLIPConfig.from_dict(resume["config"]["model"]),
        )
    else:
        ctx = train.context_length or preset(train.model).text.context_length
        tokenizer = make_tokenizer(train, shards, ctx, env)
        cfg = preset(
            train.model,
            image_size=train.model_image_size or None,
            patch_size=train.model_patch_size or None,
            context_length=ctx,
            vocab_size=tokenizer.vocab_size,
        )
    torch.manual_seed(run.seed)  # the same initial weights on every rank
    model = CLIP(cfg)
    if env.is_main:
        print(
            f"[train] {train.model}: {num_params(model) / 1e6:.1f}M params, {len(shards)} shards "
            f"({len(heldout)} held out), {env.world} process(es) on {env.device}"
            + (f", resuming at step {resume['step']}" if resume else ""),
            file=sys.stderr,
        )
    config = {"model": cfg.to_dict(), "train": dataclasses.asdict(train), "seed": run.seed}
    result = fit(model, tokenizer, shards, train, env, train_dir, run.seed, config, resume)
    if not env.is_main:
        distributed.barrier(env)
        return {}
    ev = evaluate(model, tokenizer, run, train, heldout, env.device)
    metrics = metrics_from(ev, result, model, train, heldout, shards)
    fs.write_text_atomic(fs.join(train_dir, "metrics.json"), json.dumps(metrics, indent=2) + "\n")
    distributed.barrier(env)
    zs = ev["zero_shot"]
    print(
        f"[train] zero-shot top-1: colour+shape {metrics['zero_shot_top1']:.1%} (chance {metrics['chance']:.1%}, "
        f"{zs['colour_shape/demo']['classes']} classes), "
        f"background {zs['background/demo']['top1']:.1%} (chance {zs['background/demo']['chance_top1']:.1%}), "
        f"colour {zs['colour/demo']['top1']:.1%} (chance {zs['colour/demo']['chance_top1']:.1%}), "
        f"shape {zs['shape/demo']['top1']:.1%} (chance {zs['shape/demo']['chance_top1']:.1%}); "
        f"retrieval R@1 {metrics['recall_at_1']:.1%} R@5 {metrics['recall_at_5']:.1%} "
        f"over {ev['retrieval']['pairs']} pairs",
        file=sys.stderr,
    )
    return {
        "steps": result.step,
        "zero_shot_top1": round(metrics["zero_shot_top1"], 4),
        "chance": round(metrics["chance"], 4),
        "recall_at_1": round(metrics["recall_at_1"], 4),
        "recall_at_5": round(metrics["recall_at_5"], 4),
        "samples_per_s": round(result.samples_per_s, 1),
        "seconds": round(time.time() - started, 1),
        "metrics": fs.join(train_dir, "metrics.json"),
        "checkpoint": ckpt_path,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m clip_model.main [wit train flags]`` (what torchrun launches on each rank)."""
    from pipeline import cli
    from pipeline import config as C

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _, configs, _ = cli.parse(["train", *argv])
    except ConfigError as e:
        print(f"clip_model: configuration error: {e}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":
        C.write_resolved(configs, configs["run"].out)
    try:
        summary = run(configs["run"], configs["train"])
    except ConfigError as e:
        print(f"clip_model: configuration error: {e}", file=sys.stderr)
        return 2
    if summary:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # a torchrun rank: see exit_rank
        distributed.exit_rank(code)
    sys.exit(code)
