"""``wit train`` / ``wit eval`` / ``python -m clip_model.main``: the trainer's entry point.

The only module of ``clip_model`` (with :mod:`clip_model.config`) that knows the pipeline: it
reads the configuration, finds the shards and the manifest under ``<out>``, plugs in the extra
evaluation the configuration names (``eval.extra_eval``), and calls the library.

One process: ``wit train --out out/demo``. Several GPUs: ``torchrun --nproc_per_node 8 -m
clip_model.main --config configs/x.yaml --out out/x`` (same flags). Writes, under
``<out>/train/``: ``checkpoint.pt``, ``log.csv``, ``tensorboard/`` and ``metrics.json``;
``wit eval`` writes ``<out>/eval/metrics.json``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from clip_model import data as D
from clip_model import distributed, files, pretrained
from clip_model import zero_shot as Z
from clip_model.config import EvalConfig, TrainConfig
from clip_model.model import CLIP, CLIPConfig, forward_flops, num_params
from clip_model.presets import preset
from clip_model.tokenizer import ClipBPE, Tokenizer, TrainedBPE, from_json
from clip_model.train import CHECKPOINT, check_options, fit, load_checkpoint
from pipeline.config import ConfigError, RunConfig
from pipeline.layout import Layout


def default_shards_dir(out: str) -> str:
    """``<out>/filtered`` when the filter stage completed there, else ``<out>/shards``."""
    layout = Layout(out)
    done = files.exists(files.join(layout.filtered, "_SUCCESS.json"))
    return layout.filtered if done else layout.shards


def find_shards(run: RunConfig, train: TrainConfig) -> tuple[list[str], list[str]]:
    """(training shards, held-out shards); raises ConfigError when there are none.

    The held-out shards are the last ``holdout_shards`` ones (when at least 2 remain), passing
    over shards the manifest shows to be less than half the median size: a download's last shard
    is usually a remainder, too small to measure retrieval on.
    """
    spec = train.shards or files.join(default_shards_dir(run.out), "*.tar")
    shards = D.list_shards(spec)
    if not shards:
        raise ConfigError(
            "train.shards",
            f"no .tar shards found at {spec!r}; run `make shards` first or pass --shards",
        )
    n = train.holdout_shards
    if not n or len(shards) - n < 2:
        return shards, []
    sizes = D.read_manifests(shards).samples
    median = statistics.median(sizes.values()) if sizes else 0
    full = [s for s in shards if sizes.get(s, median) * 2 >= median]
    heldout = full[-n:] if len(full) >= n else shards[-n:]
    return [s for s in shards if s not in heldout], heldout


def clip_tokenizer(train: TrainConfig, context_length: int) -> ClipBPE:
    """The standard CLIP BPE from ``--bpe-vocab``, or a ConfigError naming the flag."""
    try:
        return ClipBPE(train.bpe_vocab, context_length)
    except FileNotFoundError as e:
        raise ConfigError("train.bpe_vocab", str(e)) from None


def make_tokenizer(train: TrainConfig, shards: list[str], context_length: int, env) -> Tokenizer:
    """The CLIP BPE from disk, or a BPE trained on the captions (on rank 0, then broadcast)."""
    if train.tokenizer == "clip":
        return clip_tokenizer(train, context_length)
    blob = [None]
    if env.is_main:
        tok = TrainedBPE.train(
            D.captions(shards, train.bpe_captions), train.bpe_vocab_size, context_length
        )
        blob = [tok.to_json()]
    if env.distributed:
        torch.distributed.broadcast_object_list(blob, src=0)
    return from_json(blob[0])


def load_pretrained(path: str, key: str, train: TrainConfig):
    """(model, tokenizer, weights) from a weights file; ``key``: the flag to blame."""
    if not files.exists(path):
        raise ConfigError(key, f"no weights file at {path!r}")
    try:
        weights = pretrained.load_weights(path, quick_gelu=train.quick_gelu != "off")
    except (ValueError, RuntimeError, ImportError) as e:  # ImportError: .safetensors, no package
        raise ConfigError(key, f"cannot load {path!r}: {e}") from None
    if weights.tokenizer is not None:
        tokenizer = from_json(weights.tokenizer)
    else:
        tokenizer = clip_tokenizer(train, weights.config.text.context_length)
        if tokenizer.vocab_size != weights.config.text.vocab_size:
            raise ConfigError(
                "train.bpe_vocab",
                f"{tokenizer.vocab_size} ids in the vocabulary, the weights embed "
                f"{weights.config.text.vocab_size}",
            )
    model = CLIP(weights.config)
    model.load_state_dict(weights.state, strict=True)
    return model, tokenizer, weights


def _quick_gelu(train: TrainConfig) -> bool | None:
    return {"on": True, "off": False}.get(train.quick_gelu)


def build_model(run, train: TrainConfig, shards, env, resume: dict | None):
    """(model, tokenizer, origin): resumed, pretrained, or a fresh preset."""
    torch.manual_seed(run.seed)  # the same initial weights on every rank
    if resume:  # fit() restores the weights with the optimizer state
        model = CLIP(CLIPConfig.from_dict(resume["config"]["model"]))
        return model, from_json(resume["tokenizer"]), f"resuming at step {resume['step']}"
    if train.pretrained:
        model, tokenizer, weights = load_pretrained(train.pretrained, "train.pretrained", train)
        if (train.loss == "siglip") != (model.logit_bias is not None):
            raise ConfigError("train.loss", f"{train.loss} loss does not fit these weights")
        return model, tokenizer, f"from {pretrained.describe(weights)}"
    ctx = train.context_length or preset(train.model).text.context_length
    tokenizer = make_tokenizer(train, shards, ctx, env)
    siglip = train.loss == "siglip"
    cfg = preset(
        train.model,
        image_size=train.model_image_size or None,
        patch_size=train.model_patch_size or None,
        context_length=ctx,
        vocab_size=tokenizer.vocab_size,
        quick_gelu=_quick_gelu(train),
        # SigLIP's initial temperature 10 and bias -10 (Zhai et al. 2023)
        init_logit_scale=math.log(10.0) if siglip else None,
        init_logit_bias=-10.0 if siglip else None,
    )
    return CLIP(cfg), tokenizer, "fresh"


@dataclass(frozen=True)
class EpochPlan:
    """What the manifest says about the training shards."""

    sizes: dict[str, int] | None  # samples per shard when the manifest lists every one
    epoch_samples: int | None
    steps: int
    note: str


def epoch_plan(train: TrainConfig, shards: list[str]) -> EpochPlan:
    """Epoch length and balancing from ``manifest.json``; ``--epochs`` needs it."""
    sizes = D.read_manifests(shards)
    total = sizes.total(shards)
    if total is None:
        if train.epochs:
            raise ConfigError(
                "train.epochs",
                f"needs manifest.json beside the shards listing each of them; {len(sizes.missing)} "
                "of the training shards are in none (the download stage writes it)",
            )
        note = f"no manifest for {len(sizes.missing)} shard(s): epoch length unknown"
        return EpochPlan(None, None, train.steps, note)
    steps = math.ceil(train.epochs * total / train.batch_size) if train.epochs else train.steps
    note = f"{total:,} samples per epoch (manifest) = {total / train.batch_size:.1f} steps"
    return EpochPlan(sizes.samples, total, max(1, steps), note)


@dataclass(frozen=True)
class EvalPlan:
    """What the evaluation will score, checked before any training."""

    folder: Z.ImageFolder | None
    templates: tuple[str, ...]
    extra: object | None  # the eval.extra_eval callable


def plan_eval(run: RunConfig, ev: EvalConfig) -> EvalPlan:
    """Read the templates and scan the image folder now: a bad flag fails before any work."""
    try:
        templates = Z.read_templates(ev.templates)
    except (OSError, ValueError) as e:
        raise ConfigError("eval.templates", str(e)) from None
    folder = None
    if ev.image_folder:
        try:
            folder = Z.scan_folder(ev.image_folder, ev.class_names)
        except (OSError, ValueError) as e:
            key = (
                "eval.class_names" if ev.class_names and "class" in str(e) else "eval.image_folder"
            )
            raise ConfigError(key, str(e)) from None
    return EvalPlan(folder, templates, _extra_eval(ev.extra_eval))


def _extra_eval(name: str):
    """The ``module:function`` named by ``eval.extra_eval``, imported now (None if empty)."""
    if not name:
        return None
    module, func = name.split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise ConfigError("eval.extra_eval", f"cannot import {name}: {e}") from None


def _retrieval(model, tokenizer, shards: list[str], pairs: int, device: str) -> dict:
    size = model.cfg.vision.image_size
    samples = [p for url in shards for p in D.read_pairs(url, size, pairs)][:pairs]
    if not samples:
        return {}
    image_f = Z.encode_images(model, torch.stack([p.image for p in samples]), device)
    text_f = Z.encode_texts(model, tokenizer, [p.text for p in samples], device)
    return {**Z.retrieval(image_f, text_f), "source": shards}


def evaluate(model, tokenizer, run, ev: EvalConfig, plan: EvalPlan, shards, device) -> dict:
    """Zero-shot on the image folder, the extra evaluation if any, retrieval on ``shards``."""
    model.eval()
    out: dict = {}
    if plan.folder is not None:
        out["image_folder"] = Z.evaluate_folder(
            model, tokenizer, plan.folder, plan.templates, device, ev.eval_batch_size,
            ev.eval_workers,
        )  # fmt: skip
    if plan.extra is not None:  # its result: {name: figures}, "headline", "lines", "retrieval"
        extra = plan.extra(
            model, tokenizer, run.out, run.seed, ev, plan.templates, device, not shards
        )
        out.update({k: v for k, v in extra.items() if k not in ("headline", "lines")})
        out["extra"] = {k: extra[k] for k in ("headline", "lines") if k in extra}
    if shards:
        out["retrieval"] = _retrieval(model, tokenizer, shards, ev.retrieval_pairs, device)
    out.update(headline(out))
    return out


def headline(ev: dict) -> dict:
    """The headline: top-1 on the image folder, else the extra evaluation's, else retrieval."""
    if "image_folder" in ev:
        task, r = f"zero-shot top-1 on {ev['image_folder']['root']}", ev["image_folder"]
    elif (ev.get("extra") or {}).get("headline"):
        task, r = ev["extra"]["headline"]["task"], ev["extra"]["headline"]
    elif ev.get("retrieval"):
        ret = ev["retrieval"]
        return {"headline_task": "retrieval R@1 (mean of both directions)",
                "headline": ret["recall_at_1"], **_recalls(ret)}  # fmt: skip
    else:
        return {}
    flat = {"zero_shot_top1": r["top1"], "zero_shot_top5": r["top5"], "chance": r["chance_top1"]}
    return {"headline_task": task, "headline": r["top1"], **flat, **_recalls(ev.get("retrieval"))}


def _recalls(ret: dict | None) -> dict:
    return {f"recall_at_{k}": ret[f"recall_at_{k}"] for k in (1, 5, 10)} if ret else {}


def print_eval(ev: dict) -> None:
    """The figures a person reads first, on stderr."""
    lines = []
    if "image_folder" in ev:
        r = ev["image_folder"]
        lines.append(
            f"{r['root']}: zero-shot top-1 {r['top1']:.1%} top-5 {r['top5']:.1%} "
            f"(chance {r['chance_top1']:.1%} / {r['chance_top5']:.1%}; {r['images']} images, "
            f"{r['classes']} classes, mean per class {r['mean_per_class_top1']:.1%})"
        )
    lines += (ev.get("extra") or {}).get("lines", [])
    if ev.get("retrieval"):
        r = ev["retrieval"]
        lines.append(
            f"retrieval over {r['pairs']} pairs: image->text R@1/5/10 "
            f"{r['image_to_text_r1']:.1%}/{r['image_to_text_r5']:.1%}/{r['image_to_text_r10']:.1%}"
            f", text->image {r['text_to_image_r1']:.1%}/{r['text_to_image_r5']:.1%}/"
            f"{r['text_to_image_r10']:.1%}"
        )
    for line in lines:
        print(f"[eval] {line}", file=sys.stderr)


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


def training_metrics(result, model: CLIP, train: TrainConfig, plan: EpochPlan, heldout, shards):
    """What the run did: steps, samples, epochs, speed, skipped samples, loss curve."""
    seen = result.step * train.batch_size
    return {
        "steps": result.step,
        "samples_seen": seen,
        "epochs": seen / plan.epoch_samples if plan.epoch_samples else None,
        "epoch_samples": plan.epoch_samples,
        "samples_per_s": result.samples_per_s,
        "train_seconds_this_run": result.seconds,
        "peak_gpu_mem_gb": result.peak_mem_gb,
        "train_gflop_per_sample": 3 * forward_flops(model.cfg)["total"] / 1e9,
        "skipped_samples": {k: v for k, v in result.data.counts.items() if k != "shards_opened"},
        "shards_opened": result.data.counts.get("shards_opened", 0),
        "params": num_params(model),
        "model": train.model if not train.pretrained else train.pretrained,
        "loss": train.loss,
        "accum_steps": train.accum_steps,
        "train_shards": len(shards),
        "heldout_shards": len(heldout),
        **_loss_summary(result.losses),
    }


def run(run: RunConfig, train: TrainConfig, eval: EvalConfig) -> dict:
    """Train on the shards under ``run.out`` (or ``train.shards``), evaluate, write metrics.json."""
    started = time.time()
    shards, heldout = find_shards(run, train)
    plan, eplan = epoch_plan(train, shards), plan_eval(run, eval)
    if train.torch_threads:
        torch.set_num_threads(train.torch_threads)
    env = distributed.init(train.device)
    try:
        return _run(run, train, eval, env, shards, heldout, plan, eplan, started)
    finally:
        distributed.cleanup()


def _run(run, train, ev, env, shards, heldout, plan: EpochPlan, eplan: EvalPlan, started) -> dict:
    train_dir = Layout(run.out).train
    files.makedirs(train_dir)
    ckpt_path = files.join(train_dir, CHECKPOINT)
    resume = load_checkpoint(ckpt_path) if train.resume and files.exists(ckpt_path) else None
    model, tokenizer, origin = build_model(run, train, shards, env, resume)
    options = train.fit_options(plan.steps)
    try:
        check_options(model, options, env.world)
    except ValueError as e:
        raise ConfigError(
            "train.loss" if "loss" in str(e) else "train.batch_size", str(e)
        ) from None
    if env.is_main:
        print(
            f"[train] {num_params(model) / 1e6:.1f}M params ({origin}), {len(shards)} shards "
            f"({len(heldout)} held out), {plan.note}; {options.steps} steps of "
            f"{options.batch_size} in {options.accum_steps} micro-batch(es), {options.loss} loss, "
            f"{env.world} process(es) on {env.device}",
            file=sys.stderr,
        )
    config = {
        "model": model.cfg.to_dict(),
        "train": dataclasses.asdict(train),
        "seed": run.seed,
        "heldout_shards": heldout,
    }
    result = fit(
        model, tokenizer, shards, options, env, train_dir, run.seed, config, resume,
        sizes=plan.sizes,
    )  # fmt: skip
    if not env.is_main:
        distributed.barrier(env)
        return {}
    ev = evaluate(model, tokenizer, run, ev, eplan, heldout, env.device)
    metrics = {**ev, **training_metrics(result, model, train, plan, heldout, shards)}
    path = files.join(train_dir, "metrics.json")
    files.write_text_atomic(path, json.dumps(metrics, indent=2) + "\n")
    distributed.barrier(env)
    print_eval(ev)
    return _summary(metrics, path, ckpt_path, time.time() - started)


def _summary(metrics: dict, path: str, ckpt: str, seconds: float) -> dict:
    keys = ("headline_task", "headline", "zero_shot_top1", "zero_shot_top5", "chance",
            "recall_at_1", "recall_at_5", "recall_at_10", "steps", "epochs", "samples_per_s")  # fmt: skip
    out = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items() if k in keys}
    return {**out, "seconds": round(seconds, 1), "metrics": path, "checkpoint": ckpt}


def evaluate_checkpoint(run: RunConfig, train: TrainConfig, eval: EvalConfig) -> dict:
    """``wit eval``: score a checkpoint (ours, OpenAI's or open_clip's) and write metrics.json."""
    started = time.time()
    path = eval.checkpoint or files.join(Layout(run.out).train, CHECKPOINT)
    eplan = plan_eval(run, eval)
    model, tokenizer, weights = load_pretrained(path, "eval.checkpoint", train)
    if eval.retrieval_shards:
        shards = D.list_shards(eval.retrieval_shards)
    else:  # a checkpoint of ours names the shards its run held out
        stored = (weights.run or {}).get("heldout_shards", [])
        shards = [s for s in stored if files.exists(s)]
    if eplan.folder is None and eplan.extra is None and not shards:
        raise ConfigError(
            "eval.image_folder", "nothing to evaluate: pass --image-folder or --retrieval-shards"
        )
    if train.torch_threads:
        torch.set_num_threads(train.torch_threads)
    device = distributed.pick_device(train.device)
    print(
        f"[eval] {num_params(model) / 1e6:.1f}M params ({pretrained.describe(weights)}) on {device}",
        file=sys.stderr,
    )
    model.to(device)
    ev = evaluate(model, tokenizer, run, eval, eplan, shards, device)
    out_dir = files.join(run.out, "eval")
    files.makedirs(out_dir)
    metrics_path = files.join(out_dir, "metrics.json")
    record = {**ev, "checkpoint": path, "params": num_params(model), "device": device,
              "train_options": dataclasses.asdict(train)}  # fmt: skip
    files.write_text_atomic(metrics_path, json.dumps(record, indent=2))
    print_eval(ev)
    return _summary(ev, metrics_path, path, time.time() - started)


def main(argv: list[str] | None = None) -> int:
    """``python -m clip_model.main [wit train flags]`` (what torchrun launches on each rank)."""
    from pipeline import cli
    from pipeline import config as C

    argv = list(sys.argv[1:] if argv is None else argv)
    command = "eval" if argv[:1] == ["eval"] else "train"
    argv = argv[1:] if argv[:1] in (["eval"], ["train"]) else argv
    try:
        _, configs, _ = cli.parse([command, *argv])
    except ConfigError as e:
        print(f"clip_model: configuration error: {e}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":
        C.write_resolved(cli.recorded_sections(command, configs), configs["run"].out)
    entry = run if command == "train" else evaluate_checkpoint
    try:
        summary = entry(configs["run"], configs["train"], configs["eval"])
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
