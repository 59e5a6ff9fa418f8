"""CLIP score of an (image, caption) pair: the cosine similarity of its two embeddings.

Weights load into the bundled model (:mod:`clip_model.model`) from any file
:func:`clip_model.pretrained.load_weights` reads: a checkpoint of ``wit train`` (which carries its
tokenizer), OpenAI's TorchScript ViT ``.pt`` or an open_clip ViT state_dict (with the CLIP BPE
vocabulary file). Images are read from the shard's tar, resized and centre-cropped like the
trainer's evaluation, and scored in batches. Plain PyTorch: the Beam model handler
(:mod:`pipeline.filter.transforms`) and the benchmark's plain loop call the same functions.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.download import shard_writer as sw
from pipeline.filter.analyse import SampleRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScorerSpec:
    """Where the weights are and how to run them (picklable: it travels to every worker)."""

    weights: str
    bpe_vocab: str = ""
    quick_gelu: bool = True
    batch_size: int = 256
    device: str = "cpu"  # cpu | gpu
    threads: int = 0  # torch threads per process (0: torch's default)


class PairScorer(nn.Module):
    """A CLIP model that maps (images, token ids) to each pair's cosine similarity."""

    def __init__(self, model: nn.Module, tokenizer, image_size: int, batch_size: int):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 images, (B, T) token ids -> (B,) cosine similarities."""
        from clip_model.preprocess import normalize

        image = self.model.encode_image(normalize(images), normalize=True)  # (B, D)
        text = self.model.encode_text(tokens, normalize=True)  # (B, D)
        return (image * text).sum(dim=-1)


def load_model(spec: ScorerSpec):
    """(CLIP model, tokenizer, description) of the weights; ValueError when they cannot be used."""
    from clip_model import pretrained
    from clip_model.model import CLIP
    from clip_model.tokenizer import ClipBPE, from_json

    try:
        weights = pretrained.load_weights(spec.weights, quick_gelu=spec.quick_gelu)
    except (OSError, RuntimeError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot load {spec.weights!r}: {e}") from None
    if weights.tokenizer is not None:
        tokenizer = from_json(weights.tokenizer)
    else:
        try:
            tokenizer = ClipBPE(spec.bpe_vocab, weights.config.text.context_length)
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
        if tokenizer.vocab_size != weights.config.text.vocab_size:
            raise ValueError(
                f"the vocabulary has {tokenizer.vocab_size} ids, the weights embed "
                f"{weights.config.text.vocab_size}"
            )
    model = CLIP(weights.config)
    model.load_state_dict(weights.state, strict=True)
    return model, tokenizer, pretrained.describe(weights)


def torch_device(name: str) -> torch.device:
    """``gpu`` is the first CUDA device when one is usable; otherwise the CPU (with a warning)."""
    if name == "gpu":
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.warning("filter.clip_device is gpu but no CUDA device is usable: scoring on the CPU")
    return torch.device("cpu")


def load_scorer(spec: ScorerSpec) -> PairScorer:
    """The scorer of ``spec``, in eval mode on its device."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    model, tokenizer, _ = load_model(spec)
    model.requires_grad_(False)
    scorer = PairScorer(model, tokenizer, model.cfg.vision.image_size, spec.batch_size)
    return scorer.to(torch_device(spec.device)).eval()


def prepare(scorer: PairScorer, refs: list[SampleRef], images: dict[str, bytes]):
    """(uint8 images, token ids, the positions of ``refs`` whose image decoded)."""
    from clip_model.preprocess import decode, eval_transform

    tensors, ok = [], []
    for i, ref in enumerate(refs):
        data = images.get(ref.key)
        if data is None:
            continue
        try:
            tensors.append(eval_transform(decode(data, scorer.image_size), scorer.image_size))
        except (OSError, ValueError, SyntaxError):  # a member that no longer decodes
            continue
        ok.append(i)
    tokens = scorer.tokenizer([refs[i].caption or "" for i in ok]) if ok else None
    return (torch.stack(tensors) if tensors else None), tokens, ok


@torch.inference_mode()
def score_batch(scorer: PairScorer, refs: list[SampleRef], images: dict[str, bytes]) -> list:
    """Scores of ``refs`` (one forward pass), None where the image is missing or unreadable."""
    pixels, tokens, ok = prepare(scorer, refs, images)
    scores: list = [None] * len(refs)
    if ok:
        device = scorer.device
        out = scorer(pixels.to(device), tokens.to(device)).float().cpu().tolist()
        for i, s in zip(ok, out):
            scores[i] = s
    return scores


def score_refs(scorer: PairScorer, refs: list[SampleRef]) -> list:
    """Scores of pairs of any shards: each tar read once, ``scorer.batch_size`` pairs a pass."""
    by_tar: dict[tuple[str, str], list[int]] = {}
    for i, ref in enumerate(refs):
        by_tar.setdefault((ref.tar, ref.ext), []).append(i)
    scores: list = [None] * len(refs)
    for (tar, ext), positions in by_tar.items():
        images = sw.read_tar_images(tar, ext)
        for lo in range(0, len(positions), scorer.batch_size):
            chunk = positions[lo : lo + scorer.batch_size]
            for i, s in zip(chunk, score_batch(scorer, [refs[i] for i in chunk], images)):
                scores[i] = s
    return scores
