"""Configuration of the bundled CLIP trainer (section ``train``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, at_least, opt


@dataclass(frozen=True)
class TrainConfig:
    """Model preset, optimisation and evaluation of the bundled trainer."""

    shards: str = opt(
        "", "shard tar files or glob/brace pattern (local or fsspec URL); empty: <out>/shards/*.tar"
    )
    model: str = opt("tiny", "model preset", choices=("tiny", "ViT-B-32", "ViT-B-16", "ViT-L-14"))
    model_image_size: int = opt(0, "input image side in pixels; 0: the preset's")
    model_patch_size: int = opt(0, "ViT patch side in pixels; 0: the preset's")
    context_length: int = opt(
        0, "text tokens per caption; 0: the preset's (77 for the paper's models)"
    )
    tokenizer: str = opt(
        "trained",
        "BPE: trained on the captions, or the standard CLIP vocabulary file",
        choices=("trained", "clip"),
    )
    bpe_vocab: str = opt(
        "", "path of OpenAI's bpe_simple_vocab_16e6.txt.gz (--tokenizer clip); never downloaded"
    )
    bpe_vocab_size: int = opt(4096, "vocabulary size of the BPE trained on the captions")
    bpe_captions: int = opt(200_000, "captions read to train the BPE")
    steps: int = opt(600, "optimizer steps")
    batch_size: int = opt(128, "global batch size")
    lr: float = opt(1e-3, "peak learning rate")
    warmup: int = opt(50, "warmup steps")
    weight_decay: float = opt(0.1, "AdamW weight decay (not on gains, biases, embeddings)")
    beta1: float = opt(0.9, "AdamW beta1")
    beta2: float = opt(0.98, "AdamW beta2 (the paper's 0.98)")
    adam_eps: float = opt(1e-6, "AdamW epsilon (the paper's 1e-6)")
    grad_clip: float = opt(1.0, "clip the gradient norm to this; 0: no clipping")
    precision: str = opt(
        "auto", "auto: bf16 autocast on CUDA, fp32 on CPU", choices=("auto", "fp32", "bf16")
    )
    device: str = opt("auto", "auto (cuda if available), cpu, cuda")
    loader_workers: int = opt(2, "data loader worker processes")
    torch_threads: int = opt(
        0,
        "intra-op CPU threads of the training process; 0: torch's default (on a busy or 2-core machine 1 is often faster: OpenMP threads spin while waiting for a core)",
    )
    shuffle_buffer: int = opt(1000, "samples in each loader worker's shuffle buffer")
    compile: bool = opt(False, "torch.compile the model")
    grad_checkpointing: bool = opt(False, "gradient checkpointing in both towers")
    resume: bool = opt(True, "continue from the last checkpoint in <out>/train if there is one")
    save_every: int = opt(200, "steps between checkpoints (one is always written at the end)")
    log_every: int = opt(10, "steps between log lines (CSV, TensorBoard, progress)")
    holdout_shards: int = opt(
        1, "trailing shards kept out of training for retrieval (when at least 2 remain)"
    )
    retrieval_pairs: int = opt(1000, "held-out image-text pairs for retrieval recall@k")
    zs_ensemble: bool = opt(
        True, "also score the paper's 80-prompt ImageNet ensemble (besides 'a photo of a {}.')"
    )
    zs_images: int = opt(960, "held-out generated demo images for zero-shot accuracy")

    def validate(self) -> None:
        at_least(
            self, "train", 1, "steps", "batch_size", "bpe_vocab_size", "save_every", "log_every"
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
            "retrieval_pairs",
            "zs_images",
            "shuffle_buffer",
            "torch_threads",
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
        if self.tokenizer == "clip" and not self.bpe_vocab:
            raise ConfigError(
                "train.bpe_vocab", "--tokenizer clip needs the path of bpe_simple_vocab_16e6.txt.gz"
            )
