"""Configuration of the curation filters after download (section ``filter``)."""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

from pipeline import fs
from pipeline.config import ConfigError, opt

# Measured on the demo world's images (python -m bench.bench_filter --part hashes): re-encoded,
# resized and symmetrically trimmed copies stay within these, see the README's filter table.
NEAR_DISTANCE = 14
NEAR_THUMB_DIFF = 2.5
MAX_BAND_KEYS = 4096  # keys per image: each is an element shuffled to its bucket


@dataclass(frozen=True)
class FilterConfig:
    """Duplicate images, CLIP image-text score and caption language, over downloaded shards."""

    in_shards: bool = opt(False, "wit shards / make shards: run the filter stage after download")
    dedup_exact: bool = opt(
        True,
        "drop exact duplicate images (same sha256 of the downloaded bytes), keeping the "
        "smallest uid of each group",
    )
    dedup_near: bool = opt(
        True,
        "drop near-duplicate images: perceptual hashes (pHash, 64 bits) within --near-distance "
        "bits whose colour thumbnails also differ by at most --near-thumb-diff",
    )
    near_distance: int = opt(
        NEAR_DISTANCE, "largest Hamming distance of two near-duplicates' pHashes"
    )
    near_bands: int = opt(
        0,
        "pHash bands for finding candidate pairs without comparing all pairs: a pair within "
        "--near-distance shares all bits of at least (bands - distance) bands, so each image "
        "gets one key per such set of bands (0: distance + 1 bands, one key per band; more "
        "bands make longer keys and smaller buckets, for large datasets)",
    )
    near_thumb_diff: float = opt(
        NEAR_THUMB_DIFF,
        "largest mean absolute difference (0-255) of two near-duplicates' 16x16 colour "
        "thumbnails (pHash sees grey levels only)",
    )
    clip: bool = opt(
        False,
        "score every pair's image-text cosine similarity with a CLIP model (a column), kept "
        "by --clip-min-score and --clip-top-fraction",
    )
    clip_weights: str = opt(
        "",
        "CLIP weights: a checkpoint of `wit train`, OpenAI's ViT .pt or an open_clip ViT "
        "state_dict (empty: <out>/train/checkpoint.pt)",
    )
    clip_bpe_vocab: str = opt(
        "", "bpe_simple_vocab_16e6.txt.gz for OpenAI / open_clip weights (ours carry a tokenizer)"
    )
    clip_quick_gelu: bool = opt(
        True, "OpenAI weights use QuickGELU; false for open_clip's plain-GELU ViTs"
    )
    clip_min_score: float = opt(-1.0, "keep pairs whose CLIP score is at least this (-1: all)")
    clip_top_fraction: float = opt(
        1.0,
        "keep this fraction of the scored pairs, those of highest score (an exact global "
        "quantile; 1: all)",
    )
    clip_batch_size: int = opt(256, "pairs per forward pass of the CLIP model")
    clip_device: str = opt("cpu", "where the CLIP model runs", choices=("cpu", "gpu"))
    clip_threads: int = opt(0, "torch threads per worker process (0: cores / workers)")
    languages: list = opt(
        [],
        "keep only captions identified as one of these ISO 639-1 codes, 'und' for "
        "undetermined (empty: keep every language; the language is a column either way)",
    )
    language_min_confidence: float = opt(
        0.5, "below this probability a caption's language is 'und' (undetermined)"
    )
    reshard_samples: int = opt(
        0, "successes per filtered shard (0: the download's samples_per_shard, else 1000)"
    )
    filter_examples: int = opt(12, "examples per drop reason and duplicate groups in the report")

    def validate(self) -> None:
        """Raise ConfigError for values no run could use."""
        if not 0 <= self.near_distance <= 32:
            raise ConfigError("filter.near_distance", f"must be in 0..32, got {self.near_distance}")
        if self.near_bands and not self.near_distance < self.near_bands <= 64:
            raise ConfigError(
                "filter.near_bands",
                f"must be 0 or in {self.near_distance + 1}..64 (more than --near-distance), "
                f"got {self.near_bands}",
            )
        if comb(self.bands, self.bands - self.near_distance) > MAX_BAND_KEYS:
            raise ConfigError(
                "filter.near_bands",
                f"{self.bands} bands at distance {self.near_distance} give "
                f"{comb(self.bands, self.bands - self.near_distance)} keys per image "
                f"(at most {MAX_BAND_KEYS}): use fewer bands",
            )
        if self.near_thumb_diff < 0:
            raise ConfigError("filter.near_thumb_diff", f"must be >= 0, got {self.near_thumb_diff}")
        if not -1 <= self.clip_min_score <= 1:
            raise ConfigError(
                "filter.clip_min_score", f"must be in -1..1, got {self.clip_min_score}"
            )
        if not 0 < self.clip_top_fraction <= 1:
            raise ConfigError(
                "filter.clip_top_fraction", f"must be in (0, 1], got {self.clip_top_fraction}"
            )
        if self.clip_batch_size < 1:
            raise ConfigError("filter.clip_batch_size", f"must be >= 1, got {self.clip_batch_size}")
        if self.clip_threads < 0:
            raise ConfigError("filter.clip_threads", f"must be >= 0, got {self.clip_threads}")
        if not 0 <= self.language_min_confidence <= 1:
            raise ConfigError(
                "filter.language_min_confidence",
                f"must be in 0..1, got {self.language_min_confidence}",
            )
        if self.reshard_samples < 0:
            raise ConfigError("filter.reshard_samples", f"must be >= 0, got {self.reshard_samples}")
        if self.filter_examples < 0:
            raise ConfigError("filter.filter_examples", f"must be >= 0, got {self.filter_examples}")
        if self.languages:
            from pipeline.filter.language import check_codes

            unknown = check_codes(self.languages)
            if unknown:
                raise ConfigError("filter.languages", f"unknown language codes: {unknown}")

    @property
    def bands(self) -> int:
        """The number of pHash bands (``near_bands``, or ``near_distance + 1``)."""
        return self.near_bands or self.near_distance + 1

    @property
    def clip_filters(self) -> bool:
        """Whether the CLIP score drops anything (not only a column)."""
        return self.clip and (self.clip_min_score > -1 or self.clip_top_fraction < 1)

    def inputs(self, out: str = "") -> list[str]:
        """External input files (for the stage fingerprint): the CLIP weights (by default the
        training run's checkpoint under ``out``) and vocabulary, when the score is on."""
        if not self.clip:
            return []
        from pipeline.layout import Layout

        weights = self.clip_weights or fs.join(Layout(out).train, "checkpoint.pt")
        return [p for p in (weights, self.clip_bpe_vocab) if p]
