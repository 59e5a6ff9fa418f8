"""Configuration of the bundled CLIP trainer (section ``train``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, opt


@dataclass(frozen=True)
class TrainConfig:
    """Model preset, optimisation and evaluation of the bundled trainer."""

    shards: str = opt("", "shard tar files or glob/brace pattern (local or fsspec URL); empty: <out>/shards/*.tar")
    model: str = opt("tiny", "model preset", choices=("tiny", "ViT-B-32", "ViT-B-16", "ViT-L-14"))
    tokenizer: str = opt("trained", "BPE: trained on the captions, or the standard CLIP vocabulary file", choices=("trained", "clip"))
    steps: int = opt(600, "optimizer steps")
    batch_size: int = opt(128, "global batch size")
    lr: float = opt(1e-3, "peak learning rate")
    warmup: int = opt(50, "warmup steps")
    weight_decay: float = opt(0.1, "AdamW weight decay (not on gains, biases, embeddings)")
    precision: str = opt("auto", "auto: bf16 autocast on CUDA, fp32 on CPU", choices=("auto", "fp32", "bf16"))
    loader_workers: int = opt(2, "data loader worker processes")
    compile: bool = opt(False, "torch.compile the model")
    grad_checkpointing: bool = opt(False, "gradient checkpointing in both towers")
    resume: bool = opt(True, "continue from the last checkpoint in <out>/train if there is one")

    def validate(self) -> None:
        for key in ("steps", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}", f"must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ConfigError("train.lr", f"must be > 0, got {self.lr}")
        if self.loader_workers < 0:
            raise ConfigError("train.loader_workers", f"must be >= 0, got {self.loader_workers}")
