"""The training loop: AdamW + cosine schedule, bf16 autocast on CUDA, DDP, gradient accumulation
with cached features, CLIP or SigLIP loss, checkpoints and logs.

Checkpoints hold only tensors and plain containers (the tokenizer as a JSON string), so they load
with ``torch.load(weights_only=True)``; they are written atomically through :mod:`files` (local
paths or ``gs://`` / ``s3://``). Besides the model, optimizer and scheduler they store the *data
position* of every loader worker on every rank, so a resumed run reads exactly the batches an
uninterrupted run would have read.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import math
import sys
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from clip_model import files, preprocess
from clip_model.data import Position, StreamConfig, make_loader
from clip_model.distributed import DistEnv
from clip_model.gradcache import cached_step
from clip_model.loss import LOSSES
from clip_model.options import FitOptions

CHECKPOINT = "checkpoint.pt"


def no_decay(name: str, p: torch.Tensor) -> bool:
    """Gains, biases, embeddings and the temperature get no weight decay."""
    return p.ndim < 2 or "embedding" in name or "logit_scale" in name or name.endswith(".bias")


def build_optimizer(model: nn.Module, train: FitOptions) -> torch.optim.AdamW:
    """AdamW with two parameter groups (decayed matrices; undecayed gains/biases/embeddings)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": train.weight_decay},
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
    ]
    fused = next(model.parameters()).is_cuda  # the fused CUDA kernel is the fastest AdamW there
    return torch.optim.AdamW(
        groups,
        lr=train.lr,
        betas=(train.beta1, train.beta2),
        eps=train.adam_eps,
        fused=fused or None,
    )


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to 1, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(opt, train: FitOptions) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine schedule with warmup, stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, train.warmup, train.steps))


def autocast(device: str, precision: str):
    """bf16 autocast on CUDA (precision auto/bf16) or on CPU when asked; fp32 otherwise."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    use_bf16 = precision == "bf16" or (precision == "auto" and kind == "cuda")
    return torch.autocast(kind, dtype=torch.bfloat16) if use_bf16 else nullcontext()


@dataclass
class DataState:
    """Where the stream stands: per rank, per logical worker, (epoch, raw samples drawn)."""

    positions: dict = field(default_factory=dict)  # {rank: {worker: [epoch, drawn]}}
    workers: int = 0
    world: int = 1
    samples_seen: int = 0
    counts: dict = field(default_factory=dict)  # skipped samples by reason, all ranks

    def epoch(self) -> int:
        """The furthest epoch any worker has reached."""
        return max((e for ws in self.positions.values() for e, _ in ws.values()), default=0)


def save_checkpoint(
    path: str, model, opt, sched, step: int, data: DataState, tokenizer, config: dict
) -> None:
    """Write a weights_only-loadable checkpoint atomically (tmp + rename)."""
    blob = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "data": dataclasses.asdict(data),
        "tokenizer": tokenizer.to_json(),
        "config": config,
        "torch_rng": torch.get_rng_state(),
    }
    buf = io.BytesIO()
    torch.save(blob, buf)
    files.write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: str) -> dict:
    """Read a checkpoint with ``weights_only=True`` (no pickled code runs)."""
    return torch.load(io.BytesIO(files.read_bytes(path)), map_location="cpu", weights_only=True)


def _stream_config(
    shards, train, image_size, env: DistEnv, seed: int, data: DataState, step: int, sizes
):
    """This rank's stream, positioned where the checkpoint left it."""
    nw = max(1, train.loader_workers)
    start = {}
    same_layout = data.workers == nw and data.world == env.world
    if data.positions and same_layout:
        start = {int(w): Position(*p) for w, p in data.positions.get(str(env.rank), {}).items()}
    elif data.positions:  # a different layout cannot continue exactly: start the next epoch
        start = {w: Position(data.epoch() + 1, 0) for w in range(nw)}
    return StreamConfig(
        shards=shards,
        batch_size=train.batch_size // env.world,
        image_size=image_size,
        seed=seed,
        rank=env.rank,
        world=env.world,
        shuffle_buffer=train.shuffle_buffer,
        start=start,
        worker_offset=step % nw if same_layout else 0,
        sizes=sizes,
    )


def _gather_positions(local: dict, env: DistEnv) -> dict:
    """{rank: {worker: [epoch, drawn]}} from every rank."""
    if not env.distributed:
        return {str(env.rank): local}
    out: list = [None] * env.world
    dist.all_gather_object(out, local)
    return {str(r): p for r, p in enumerate(out)}


def _merge_counts(base: Counter, session: Counter, env: DistEnv) -> dict:
    """Skip counts so far: the checkpoint's plus this session's on every rank (keys may differ)."""
    parts = [dict(session)]
    if env.distributed:
        parts = [None] * env.world
        dist.all_gather_object(parts, dict(session))
    total = Counter(base)
    for p in parts:
        total.update(p)
    return dict(total)


class Logger:
    """CSV + TensorBoard on the main rank, and a progress line on stderr."""

    def __init__(self, train_dir: str, enabled: bool, total: int):
        self.path, self.enabled, self.total = files.join(train_dir, "log.csv"), enabled, total
        self.rows: list[dict] = []
        self.tb = None
        if enabled:
            if not files.is_url(train_dir):  # TensorBoard's writer needs TensorFlow for URLs
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(files.join(train_dir, "tensorboard"))
            if files.exists(self.path):  # resumed: keep the earlier rows
                self.rows = list(csv.DictReader(io.StringIO(files.read_text(self.path))))

    def log(self, row: dict, started: float, first_step: int) -> None:
        if not self.enabled:
            return
        step = row["step"]
        self.rows = [r for r in self.rows if int(r["step"]) < step] + [row]
        for k, v in row.items():
            if k != "step" and self.tb is not None:
                self.tb.add_scalar(f"train/{k}", v, step)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(row))
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in row} for r in self.rows)
        files.write_text_atomic(self.path, buf.getvalue())
        done = step - first_step
        eta = (time.perf_counter() - started) / max(1, done) * (self.total - step)
        mem = f" | mem {row['gpu_mem_gb']:.1f} GB" if row.get("gpu_mem_gb") else ""
        print(
            f"step {step}/{self.total} loss {row['loss']:.4f} lr {row['lr']:.2e} "
            f"scale {row['logit_scale']:.1f} | {row['samples_per_s']:.0f} samples/s "
            f"(data wait {row['data_wait']:.0%}){mem} | eta {eta:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


@dataclass
class FitResult:
    """What a call to :func:`fit` did."""

    step: int
    losses: list[tuple[int, float]]  # (step, loss) of every step run in this call
    seconds: float
    samples_per_s: float
    data: DataState
    peak_mem_gb: float = 0.0


def backward(model, raw, images, texts, train: FitOptions, device: str) -> torch.Tensor:
    """Loss of the batch with its gradients accumulated (in ``accum_steps`` micro-batches)."""
    loss_fn = LOSSES[train.loss]
    if train.accum_steps > 1:
        ctx = functools.partial(autocast, device, train.precision)
        return cached_step(model, raw, images, texts, loss_fn, train.accum_steps, ctx)
    with autocast(device, train.precision):
        out = model(images, texts)  # (image, text, scale[, bias])
    loss = loss_fn(*(x.float() for x in out))
    loss.backward()
    return loss


def train_step(model, raw, opt, sched, batch: dict, train: FitOptions, device: str):
    """One optimizer step on a loader batch; returns the (detached-later) loss."""
    images = preprocess.normalize(batch["images"].to(device, non_blocking=True))  # (B, 3, S, S)
    texts = batch["texts"].to(device, non_blocking=True)  # (B, T)
    opt.zero_grad(set_to_none=True)
    loss = backward(model, raw, images, texts, train, device)
    if train.grad_clip > 0:
        nn.utils.clip_grad_norm_(raw.parameters(), train.grad_clip)
    opt.step()
    sched.step()
    raw.clamp_logit_scale()
    return loss


def _wrap(raw: nn.Module, train: FitOptions, env: DistEnv) -> nn.Module:
    """DDP (device_ids only on CUDA: gloo on CPU must not get any) and torch.compile."""
    model = raw
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        cuda = env.device.startswith("cuda")
        model = DDP(raw, device_ids=[env.local_rank] if cuda else None, broadcast_buffers=False)
    if train.compile:
        model = torch.compile(model)
    return model


def check_options(raw: nn.Module, train: FitOptions, world: int) -> None:
    """Raise ValueError when the batch does not split evenly or the loss does not fit the model."""
    if train.loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {train.loss!r}")
    if train.batch_size % (world * train.accum_steps):
        raise ValueError(
            f"batch_size {train.batch_size} is not a multiple of ranks x accum_steps "
            f"({world} x {train.accum_steps})"
        )
    if (train.loss == "siglip") != (getattr(raw, "logit_bias", None) is not None):
        raise ValueError("the siglip loss needs a model with a logit_bias, and only it does")


def _restore(raw, opt, sched, resume: dict | None, train: FitOptions, env: DistEnv):
    """Load a checkpoint's states; returns (step, DataState)."""
    if not resume:
        return 0, DataState(workers=max(1, train.loader_workers), world=env.world)
    raw.load_state_dict(resume["model"])
    opt.load_state_dict(resume["optimizer"])
    sched.load_state_dict(resume["scheduler"])
    return int(resume["step"]), DataState(**resume["data"])


def fit(
    raw: nn.Module,
    tokenizer,
    shards: list[str],
    train: FitOptions,
    env: DistEnv,
    train_dir: str,
    seed: int = 0,
    config: dict | None = None,
    resume: dict | None = None,
    stop_at: int | None = None,
    sizes: dict[str, int] | None = None,
) -> FitResult:
    """Train ``raw`` (a :class:`CLIP`) to ``train.steps`` (or ``stop_at``), saving checkpoints.

    ``sizes`` (samples per shard, from the shard manifest) balances the shards across ranks and
    loader workers by samples rather than by count."""
    check_options(raw, train, env.world)
    raw.to(env.device)
    raw.set_grad_checkpointing(train.grad_checkpointing)
    opt, cuda = build_optimizer(raw, train), env.device.startswith("cuda")
    sched = build_scheduler(opt, train)
    step, data = _restore(raw, opt, sched, resume, train, env)
    first_step, base_counts = step, Counter(data.counts)
    image_size = raw.cfg.vision.image_size
    stream = _stream_config(shards, train, image_size, env, seed, data, step, sizes)
    local_pos = {str(w): [p.epoch, p.drawn] for w, p in stream.start.items()}
    model = _wrap(raw, train, env)
    logger = Logger(train_dir, env.is_main, train.steps)
    worker_counts: dict = {}
    losses: list = []
    end = train.steps if stop_at is None else min(stop_at, train.steps)
    started = window = time.perf_counter()
    wait, win_steps = 0.0, 0

    def checkpoint() -> None:
        positions = _gather_positions(local_pos, env)
        session = Counter()
        for c in worker_counts.values():  # each worker's counts are cumulative since it started
            session.update(c)
        data.positions, data.counts = positions, _merge_counts(base_counts, session, env)
        data.workers, data.world = max(1, train.loader_workers), env.world
        data.samples_seen = step * train.batch_size
        if env.is_main:
            save_checkpoint(
                files.join(train_dir, CHECKPOINT),
                raw,
                opt,
                sched,
                step,
                data,
                tokenizer,
                config or {},
            )

    loader = make_loader(stream, tokenizer, train.loader_workers, pin_memory=cuda)
    batches = iter(loader)
    model.train()
    while step < end:
        t0 = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t0
        loss = train_step(model, raw, opt, sched, batch, train, env.device)
        step += 1
        local_pos[str(batch["worker"])] = [batch["epoch"], batch["drawn"]]
        worker_counts[batch["worker"]] = batch["counts"]
        losses.append((step, loss.detach()))  # no .item() per step: it would sync CUDA
        win_steps += 1
        if step % train.log_every == 0 or step == end:
            elapsed = max(time.perf_counter() - window, 1e-9)
            row = {
                "step": step,
                "loss": float(loss.detach()),
                "lr": sched.get_last_lr()[0],
                "logit_scale": float(raw.logit_scale.detach().exp()),
                "samples_per_s": win_steps * train.batch_size / elapsed,
                "data_wait": wait / elapsed,
                "epoch": batch["epoch"],
                "gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
            }
            logger.log(row, started, first_step)
            window, wait, win_steps = time.perf_counter(), 0.0, 0
        if step % train.save_every == 0 or step == end:
            checkpoint()
    seconds = time.perf_counter() - started
    del batches, loader  # stops the loader workers
    logger.close()
    return FitResult(
        step=step,
        losses=[(s, float(v)) for s, v in losses],
        seconds=seconds,
        samples_per_s=(step - first_step) * train.batch_size / max(seconds, 1e-9),
        data=data,
        peak_mem_gb=torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
    )
