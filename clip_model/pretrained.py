"""Weights from elsewhere: OpenAI's CLIP files, open_clip's, and this trainer's checkpoints.

OpenAI's ``ViT-B-32.pt`` is a TorchScript archive; open_clip ships plain state_dicts (``.bin`` /
``.pt``, or ``.safetensors``) and its training checkpoints wrap one in ``{"state_dict": ...}``
with DDP's ``module.`` prefix. All of them use the parameter names of :mod:`model`, so the model
configuration is read off the tensor shapes (as OpenAI's ``build_model`` does) and the weights load
with ``strict=True``. Only ViTs: the ResNet towers (``visual.layer1...``) are not implemented.
Nothing here downloads; the files must be on disk or behind an fsspec URL.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from dataclasses import dataclass

import torch

from clip_model import files
from clip_model.model import CLIPConfig, TextConfig, VisionConfig

# Buffers of OpenAI's TorchScript models that are not parameters (their build_model drops them).
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


@dataclass
class Weights:
    """A state_dict with what is known about it."""

    state: dict[str, torch.Tensor]
    config: CLIPConfig
    tokenizer: str | None  # tokenizer JSON of our checkpoints; None: external weights
    source: str  # "checkpoint", "torchscript", "state_dict", "safetensors"
    run: dict | None = None  # our checkpoints: the run's configuration (held-out shards...)


def _is_torchscript(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return any(n.endswith("constants.pkl") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _read(path: str) -> tuple[dict, str]:
    """(object, kind) of a weights file: TorchScript, safetensors or a torch.save'd dict."""
    data = files.read_bytes(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load

        return load(data), "safetensors"
    if _is_torchscript(data):  # torch.jit.load runs no Python code, unlike unpickling
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
        return {k: v.detach().clone() for k, v in module.state_dict().items()}, "torchscript"
    obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state_dict or a checkpoint, got {type(obj).__name__}")
    return obj, "checkpoint" if "model" in obj and "config" in obj else "state_dict"


def clean_state_dict(state: dict) -> dict[str, torch.Tensor]:
    """Unwrap open_clip training checkpoints, drop DDP's ``module.`` and OpenAI's extra keys."""
    state = state.get("state_dict", state)
    out = {}
    for key, value in state.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if key not in OPENAI_EXTRA_KEYS:
            out[key] = value
    return out


def _count(state: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def config_from_state_dict(state: dict, quick_gelu: bool = True) -> CLIPConfig:
    """The :class:`CLIPConfig` whose parameters have these shapes (ViT towers only).

    ``quick_gelu`` cannot be read off the weights: OpenAI's models (and open_clip's ``-quickgelu``
    ones) use QuickGELU, open_clip's other ViTs nn.GELU.
    """
    if "visual.conv1.weight" not in state:
        kind = "a ResNet image tower" if "visual.layer1.0.conv1.weight" in state else "no ViT"
        raise ValueError(f"unsupported weights: {kind} (visual.conv1.weight missing)")
    conv = state["visual.conv1.weight"]  # (width, 3, patch, patch)
    width, patch = conv.shape[0], conv.shape[-1]
    grid = round(math.sqrt(state["visual.positional_embedding"].shape[0] - 1))
    text_width = state["ln_final.weight"].shape[0]
    vision = VisionConfig(
        image_size=grid * patch,
        patch_size=patch,
        width=width,
        layers=_count(state, "visual.transformer.resblocks."),
        mlp_ratio=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
    )
    text = TextConfig(
        context_length=state["positional_embedding"].shape[0],
        vocab_size=state["token_embedding.weight"].shape[0],
        width=text_width,
        heads=text_width // 64,
        layers=_count(state, "transformer.resblocks."),
    )
    bias = float(state["logit_bias"]) if "logit_bias" in state else None
    return CLIPConfig(
        embed_dim=state["text_projection"].shape[1],
        vision=vision,
        text=text,
        quick_gelu=quick_gelu,
        init_logit_bias=bias,
    )


def load_weights(path: str, quick_gelu: bool = True) -> Weights:
    """Read a weights file of any supported kind; the configuration comes with our checkpoints
    and is read off the shapes otherwise."""
    obj, kind = _read(path)
    if kind == "checkpoint":
        cfg = CLIPConfig.from_dict(obj["config"]["model"])
        return Weights(obj["model"], cfg, obj.get("tokenizer"), kind, obj["config"])
    state = clean_state_dict(obj)
    return Weights(state, config_from_state_dict(state, quick_gelu), None, kind)


def describe(weights: Weights) -> str:
    """One line about the weights, for logs."""
    v, t = weights.config.vision, weights.config.text
    return (
        f"{weights.source}: ViT {v.width}x{v.layers}, patch {v.patch_size} at {v.image_size} px; "
        f"text {t.width}x{t.layers}, {t.context_length} tokens, vocabulary {t.vocab_size}"
    )
