"""Beam's PyTorch model handler for the CLIP score (imported only when the CLIP score is on).

:class:`ClipScoreHandler` keeps the PyTorch handler's device handling and inference-function hook
and replaces its loading, so any weights :mod:`pipeline.filter.clip_score` reads (ours, OpenAI's,
open_clip's) load into the bundled model. Use it as ``ClipScoreHandler(spec).with_no_batching()``:
each element is a batch built upstream (see :mod:`pipeline.filter.transforms` for why).
"""

from __future__ import annotations

import pickle

from apache_beam.ml.inference.base import PredictionResult
from apache_beam.ml.inference.pytorch_inference import PytorchModelHandlerTensor

from pipeline.filter.clip_score import ScorerSpec, load_scorer, score_refs


def _score_fn(batch, model, device, inference_args=None, model_id=None):
    """RunInference's inference_fn: one pre-built batch (a shard's pairs) -> a score per pair."""
    refs = list(batch)
    return [PredictionResult(r, s, model_id) for r, s in zip(refs, score_refs(model, refs))]


class ClipScoreHandler(PytorchModelHandlerTensor):
    """The PyTorch handler, loading any weights :mod:`pipeline.filter.clip_score` reads (ours,
    OpenAI's, open_clip's) and scoring :class:`~pipeline.filter.clip_score.SampleRef` batches."""

    def __init__(self, spec: ScorerSpec):
        super().__init__(device="GPU" if spec.device == "gpu" else "CPU", inference_fn=_score_fn)
        self.spec = spec

    def load_model(self):
        scorer = load_scorer(self.spec)
        self._device = scorer.device
        return scorer

    def get_num_bytes(self, batch) -> int:
        return len(pickle.dumps(list(batch)))
