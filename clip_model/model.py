"""CLIP dual encoder (Radford et al. 2021): a Vision Transformer and a causal text Transformer.

Parameter names and shapes follow the OpenAI / open_clip layout (``visual.conv1.weight``,
``visual.transformer.resblocks.{i}.attn.in_proj_weight``, ``text_projection``, ``logit_scale``...),
so their ViT state_dicts load with ``strict=True``. Deviations, all invisible in the state_dict:

- attention is our own module calling ``F.scaled_dot_product_attention`` (flash / memory-efficient
  kernels on CUDA, ``is_causal`` for text) instead of ``nn.MultiheadAttention``; its parameters
  keep the ``in_proj_weight`` / ``in_proj_bias`` / ``out_proj`` names and the packed q,k,v order;
- the causal mask is not a buffer (open_clip keeps a non-persistent one; OpenAI none);
- the text feature is taken at ``text.argmax(-1)`` as OpenAI does: in both our vocabularies the
  end-of-text token has the largest id, and padding is 0.

This module imports nothing from data or training code.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class VisionConfig:
    """Vision Transformer tower."""

    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    head_width: int = 64  # heads = width // head_width, as open_clip
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class TextConfig:
    """Causal text Transformer tower."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12


@dataclass(frozen=True)
class CLIPConfig:
    """The whole dual encoder."""

    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    quick_gelu: bool = True  # OpenAI's weights were trained with QuickGELU
    init_logit_scale: float = math.log(1 / 0.07)
    max_logit_scale: float = math.log(100.0)
    init_logit_bias: float | None = None  # SigLIP's learnable bias (-10); None: no parameter

    def to_dict(self) -> dict:
        """Plain data (for checkpoints and metrics)."""
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CLIPConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        return cls(vision=VisionConfig(**d.pop("vision")), text=TextConfig(**d.pop("text")), **d)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation OpenAI's CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter names, on SDPA kernels."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        assert width % heads == 0, (width, heads)
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, t, c = x.shape  # (B, T, C)
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, T, 3C)
        qkv = qkv.view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, T, C/H)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, T, C/H)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, c))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN Transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        act = QuickGELU() if quick_gelu else nn.GELU()
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(width, hidden), gelu=act, c_proj=nn.Linear(hidden, width))
        )

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of residual attention blocks (``resblocks``), optionally checkpointed."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, quick_gelu: bool):
        super().__init__()
        self.width, self.layers = width, layers
        self.grad_checkpointing = False
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, mlp_ratio, quick_gelu) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:  # x: (B, T, C) throughout
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, causal, use_reentrant=False)
            else:
                x = block(x, causal)
        return x

    def init_weights(self) -> None:
        """OpenAI's initialisation (std scaled by width and depth)."""
        proj_std = (self.width**-0.5) * ((2 * self.layers) ** -0.5)
        attn_std, fc_std = self.width**-0.5, (2 * self.width) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.zeros_(block.attn.out_proj.bias)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)


class VisionTransformer(nn.Module):
    """ViT: patch embedding, class token, pre-LN blocks, ln_post on the class token, projection."""

    def __init__(self, cfg: VisionConfig, embed_dim: int, quick_gelu: bool):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(
                f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}"
            )
        w, grid = cfg.width, cfg.image_size // cfg.patch_size
        scale = w**-0.5
        self.image_size = cfg.image_size
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(
            w, cfg.layers, w // cfg.head_width, cfg.mlp_ratio, quick_gelu
        )
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, embed_dim))
        self.transformer.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (B, C, g, g)
        x = x.flatten(2).transpose(1, 2)  # (B, g*g, C)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # (B, 1, C)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (B, 1+g*g, C)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj  # (B, D)


class CLIP(nn.Module):
    """The dual encoder; the text tower's modules sit at the top level, as in OpenAI's layout."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.cfg = cfg
        t = cfg.text
        self.visual = VisionTransformer(cfg.vision, cfg.embed_dim, cfg.quick_gelu)
        self.token_embedding = nn.Embedding(t.vocab_size, t.width)
        self.positional_embedding = nn.Parameter(torch.empty(t.context_length, t.width))
        self.transformer = Transformer(t.width, t.layers, t.heads, 4.0, cfg.quick_gelu)
        self.ln_final = nn.LayerNorm(t.width)
        self.text_projection = nn.Parameter(torch.empty(t.width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(cfg.init_logit_scale))
        # Only SigLIP models have it, so OpenAI's state_dicts still load with strict=True.
        self.logit_bias = (
            nn.Parameter(torch.tensor(cfg.init_logit_bias))
            if cfg.init_logit_bias is not None
            else None
        )
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=t.width**-0.5)
        self.transformer.init_weights()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass (less memory, one more forward pass of compute)."""
        self.visual.transformer.grad_checkpointing = enable
        self.transformer.grad_checkpointing = enable

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels -> (B, D) image embeddings."""
        x = self.visual(image)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(B, T) token ids (EOT = largest id, pad 0) -> (B, D) text embeddings."""
        x = self.token_embedding(text) + self.positional_embedding[: text.shape[1]]  # (B, T, C)
        x = self.ln_final(self.transformer(x, causal=True))
        eot = text.argmax(dim=-1)  # (B,) position of the end-of-text token
        x = x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection  # (B, D)
        return F.normalize(x, dim=-1) if normalize else x

    def clamp_logit_scale(self) -> None:
        """Keep the temperature at most 100 (the paper clips it); call after each optimizer step."""
        with torch.no_grad():
            self.logit_scale.clamp_(0, self.cfg.max_logit_scale)

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        """Normalised (B, D) image and text features, the scale exp(logit_scale) and, for a
        SigLIP model, the bias (as open_clip: a 3-tuple, or a 4-tuple with the bias)."""
        out = (
            self.encode_image(image, normalize=True),
            self.encode_text(text, normalize=True),
            self.logit_scale.exp(),
        )
        return out if self.logit_bias is None else (*out, self.logit_bias)


def num_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def _transformer_flops(tokens: int, width: int, layers: int, mlp_ratio: float) -> int:
    """Matmul FLOPs (2 per multiply-add) of ``layers`` blocks over ``tokens`` tokens."""
    hidden = int(width * mlp_ratio)
    per_layer = (
        2 * tokens * width * 3 * width  # q, k, v projection
        + 2 * 2 * tokens * tokens * width  # scores and weighted values (full square, as kernels do)
        + 2 * tokens * width * width  # output projection
        + 2 * 2 * tokens * width * hidden  # MLP
    )
    return layers * per_layer


def forward_flops(cfg: CLIPConfig) -> dict[str, int]:
    """Matmul FLOPs of one sample's forward pass per tower (a training step costs ~3x: the
    backward pass computes two products per forward one). Norms and activations are left out."""
    v, t = cfg.vision, cfg.text
    patches = (v.image_size // v.patch_size) ** 2
    image = (
        2 * patches * 3 * v.patch_size**2 * v.width  # patch embedding
        + _transformer_flops(patches + 1, v.width, v.layers, v.mlp_ratio)
        + 2 * v.width * cfg.embed_dim  # projection of the class token
    )
    text = (
        _transformer_flops(t.context_length, t.width, t.layers, 4.0) + 2 * t.width * cfg.embed_dim
    )
    return {"image": image, "text": text, "total": image + text}
