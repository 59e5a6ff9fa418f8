"""Options of :func:`clip_model.train.fit` (a module without torch, so that command-line
parsers can read the defaults cheaply)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FitOptions:
    """Optimisation, precision, data loading and logging of :func:`fit`."""

    steps: int = 600  # optimizer steps
    batch_size: int = 128  # global: all ranks and micro-batches together
    accum_steps: int = 1  # micro-batches per step (cached-feature accumulation when > 1)
    loss: str = "clip"  # "clip" (softmax) or "siglip" (sigmoid; the model needs a logit_bias)
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98  # the paper's
    adam_eps: float = 1e-6  # the paper's
    grad_clip: float = 1.0  # 0: no clipping
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; or fp32, bf16
    loader_workers: int = 2
    shuffle_buffer: int = 1000
    compile: bool = False
    grad_checkpointing: bool = False
    save_every: int = 200
    log_every: int = 10
