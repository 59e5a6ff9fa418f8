"""Model presets: the paper's ViTs and a tiny CPU demo model (open_clip's JSON configs, as Python)."""

from __future__ import annotations

from dataclasses import replace

from clip_model.model import CLIPConfig, TextConfig, VisionConfig

PRESETS: dict[str, CLIPConfig] = {
    # Small enough to learn coloured shapes in minutes on 2 slow CPU cores (a small fraction of
    # ViT-B-32's FLOPs per sample). Patch 8 at 64 px: small shapes cover whole patches.
    "tiny": CLIPConfig(
        embed_dim=128,
        vision=VisionConfig(image_size=64, patch_size=8, width=128, layers=3),
        text=TextConfig(context_length=24, vocab_size=4096, width=128, heads=2, layers=3),
        quick_gelu=False,
    ),
    # Radford et al. 2021, table 20 (open_clip's ViT-B-32.json / ViT-B-16.json / ViT-L-14.json).
    "ViT-B-32": CLIPConfig(
        embed_dim=512,
        vision=VisionConfig(image_size=224, patch_size=32, width=768, layers=12),
        text=TextConfig(context_length=77, vocab_size=49408, width=512, heads=8, layers=12),
    ),
    "ViT-B-16": CLIPConfig(
        embed_dim=512,
        vision=VisionConfig(image_size=224, patch_size=16, width=768, layers=12),
        text=TextConfig(context_length=77, vocab_size=49408, width=512, heads=8, layers=12),
    ),
    "ViT-L-14": CLIPConfig(
        embed_dim=768,
        vision=VisionConfig(image_size=224, patch_size=14, width=1024, layers=24),
        text=TextConfig(context_length=77, vocab_size=49408, width=768, heads=12, layers=12),
    ),
}


def preset(name: str, **overrides) -> CLIPConfig:
    """A preset with overrides: ``image_size``, ``context_length``, ``vocab_size``, ``quick_gelu``."""
    cfg = PRESETS[name]
    vision = {k: overrides.pop(k) for k in ("image_size", "patch_size") if overrides.get(k)}
    text = {k: overrides.pop(k) for k in ("context_length", "vocab_size") if overrides.get(k)}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(
        cfg, vision=replace(cfg.vision, **vision), text=replace(cfg.text, **text), **overrides
    )
