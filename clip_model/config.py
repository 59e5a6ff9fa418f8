"""Configuration of ``wit train`` and ``wit eval`` (sections ``train`` and ``eval``).

This module and :mod:`clip_model.main` are the trainer's application layer: they wire the
pipeline's configuration and output layout to the library modules (model, loss, tokenizer, data,
train, zero_shot...), which import nothing from ``pipeline``. The optimisation defaults are the
library's own (:class:`clip_model.options.FitOptions`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from clip_model.options import FitOptions
from pipeline.config import ConfigError, at_least, opt

_FIT = FitOptions()


@dataclass(frozen=True)
class TrainConfig:
    """Model, tokenizer, optimisation and data of the bundled trainer (also the model side of
    ``wit eval``: device, tokenizer vocabulary)."""

    shards: str = opt(
        "",
        "shard tar files or glob/brace pattern (local or fsspec URL); empty: <out>/filtered/*.tar "
        "when `wit filter` completed there, else <out>/shards/*.tar",
    )
    model: str = opt("tiny", "model preset", choices=("tiny", "ViT-B-32", "ViT-B-16", "ViT-L-14"))
    model_image_size: int = opt(0, "input image side in pixels; 0: the preset's")
    model_patch_size: int = opt(0, "ViT patch side in pixels; 0: the preset's")
    context_length: int = opt(
        0, "text tokens per caption; 0: the preset's (77 for the paper's models)"
    )
    pretrained: str = opt(
        "",
        "start from these weights (OpenAI's TorchScript .pt, an open_clip state_dict or "
        ".safetensors, or a checkpoint of ours); the model shape comes from the weights",
    )
    quick_gelu: str = opt(
        "auto",
        "QuickGELU activations; auto: the preset's, and on for external weights (OpenAI's)",
        choices=("auto", "on", "off"),
    )
    tokenizer: str = opt(
        "trained",
        "BPE: trained on the captions, or the standard CLIP vocabulary file",
        choices=("trained", "clip"),
    )
    bpe_vocab: str = opt(
        "", "path of bpe_simple_vocab_16e6.txt.gz (--tokenizer clip, external weights)"
    )
    bpe_vocab_size: int = opt(4096, "vocabulary size of the BPE trained on the captions")
    bpe_captions: int = opt(200_000, "captions read to train the BPE")
    steps: int = opt(_FIT.steps, "optimizer steps (see --epochs)")
    epochs: float = opt(
        0.0, "train this many passes over the training shards (needs the manifest); 0: --steps"
    )
    batch_size: int = opt(_FIT.batch_size, "global batch size (all GPUs and micro-batches)")
    accum_steps: int = opt(
        _FIT.accum_steps,
        "micro-batches per step: the full batch's loss and gradients with one micro-batch's "
        "memory (cached-feature accumulation)",
    )
    loss: str = opt(
        _FIT.loss, "CLIP's softmax loss or SigLIP's sigmoid loss", choices=("clip", "siglip")
    )
    lr: float = opt(_FIT.lr, "peak learning rate")
    warmup: int = opt(_FIT.warmup, "warmup steps")
    weight_decay: float = opt(
        _FIT.weight_decay, "AdamW weight decay (not on gains, biases, embeddings)"
    )
    beta1: float = opt(_FIT.beta1, "AdamW beta1")
    beta2: float = opt(_FIT.beta2, "AdamW beta2 (the paper's 0.98)")
    adam_eps: float = opt(_FIT.adam_eps, "AdamW epsilon (the paper's 1e-6)")
    grad_clip: float = opt(_FIT.grad_clip, "clip the gradient norm to this; 0: no clipping")
    precision: str = opt(
        _FIT.precision,
        "auto: bf16 autocast on CUDA, fp32 on CPU",
        choices=("auto", "fp32", "bf16"),
    )
    device: str = opt("auto", "auto (cuda if available), cpu, cuda")
    loader_workers: int = opt(_FIT.loader_workers, "data loader worker processes")
    torch_threads: int = opt(
        0,
        "intra-op CPU threads of the training process; 0: torch's default (on a busy or 2-core machine 1 is often faster: OpenMP threads spin while waiting for a core)",
    )
    shuffle_buffer: int = opt(_FIT.shuffle_buffer, "samples in each loader worker's shuffle buffer")
    compile: bool = opt(_FIT.compile, "torch.compile the model")
    grad_checkpointing: bool = opt(_FIT.grad_checkpointing, "gradient checkpointing in both towers")
    resume: bool = opt(True, "continue from the last checkpoint in <out>/train if there is one")
    save_every: int = opt(
        _FIT.save_every, "steps between checkpoints (one is always written at the end)"
    )
    log_every: int = opt(_FIT.log_every, "steps between log lines (CSV, TensorBoard, progress)")
    holdout_shards: int = opt(
        1, "trailing shards kept out of training for retrieval (when at least 2 remain)"
    )

    def fit_options(self, steps: int | None = None) -> FitOptions:
        """The library's options, with the same names (``steps`` overrides, e.g. from epochs)."""
        values = {f.name: getattr(self, f.name) for f in fields(FitOptions)}
        return FitOptions(**{**values, **({"steps": steps} if steps else {})})

    def validate(self) -> None:
        at_least(
            self,
            "train",
            1,
            "steps",
            "batch_size",
            "accum_steps",
            "bpe_vocab_size",
            "save_every",
            "log_every",
        )
        at_least(
            self,
            "train",
            0,
            "warmup",
            "loader_workers",
            "model_image_size",
            "context_length",
            "holdout_shards",
            "shuffle_buffer",
            "torch_threads",
            "epochs",
        )
        if self.lr <= 0:
            raise ConfigError("train.lr", f"must be > 0, got {self.lr}")
        if self.context_length and self.context_length < 3:
            raise ConfigError(
                "train.context_length", f"must be 0 or >= 3, got {self.context_length}"
            )
        if self.bpe_vocab_size < 300:
            raise ConfigError(
                "train.bpe_vocab_size", "must be >= 300 (256 byte symbols + merges + 2 specials)"
            )
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError("train.device", f"must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.batch_size % self.accum_steps:
            raise ConfigError(
                "train.accum_steps",
                f"must divide the batch size {self.batch_size}, got {self.accum_steps}",
            )
        if self.tokenizer == "clip" and not self.bpe_vocab:
            raise ConfigError(
                "train.bpe_vocab", "--tokenizer clip needs the path of bpe_simple_vocab_16e6.txt.gz"
            )


@dataclass(frozen=True)
class EvalConfig:
    """What ``wit eval`` scores, and what ``wit train`` scores after training."""

    checkpoint: str = opt(
        "",
        "wit eval: weights to evaluate (a checkpoint of ours, OpenAI's .pt, an open_clip "
        "state_dict); empty: <out>/train/checkpoint.pt",
    )
    image_folder: str = opt(
        "", "labelled images <folder>/<class>/*.{jpg,png,webp} for zero-shot top-1/top-5"
    )
    class_names: str = opt(
        "",
        "class names for --image-folder: one per line in folder order, folder<TAB>name lines, or "
        "JSON {folder: name}; empty: folder names with _ as space",
    )
    templates: str = opt(
        "openai", "prompt templates: openai (the paper's 80), simple, or a file, one per line"
    )
    retrieval_shards: str = opt(
        "",
        "shards for image-text retrieval R@1/5/10; empty: the held-out shards of the training run",
    )
    retrieval_pairs: int = opt(1000, "held-out image-text pairs for retrieval")
    extra_eval: str = opt(
        "",
        "one more evaluation, as module:function, called with the model after the standard "
        "ones (configs/train_demo.yaml plugs in its example world's held-out images); empty: none",
    )
    zs_images: int = opt(960, "images an --extra-eval may generate for itself")
    eval_batch_size: int = opt(256, "images per forward pass when evaluating")
    eval_workers: int = opt(2, "image decoding worker processes when evaluating")

    def validate(self) -> None:
        at_least(self, "eval", 1, "retrieval_pairs", "eval_batch_size")
        at_least(self, "eval", 0, "zs_images", "eval_workers")
        if self.extra_eval and not re.fullmatch(r"[\w.]+:\w+", self.extra_eval):
            raise ConfigError(
                "eval.extra_eval", f"expected module:function, got {self.extra_eval!r}"
            )
