"""Caption language identification with py3langid (its model ships inside the package).

Chosen by measuring on a multilingual sample of alt-text-like captions
(``python -m bench.bench_filter --part languages``; figures in the README): close to the most
accurate library tried on short captions at many times its speed, a 4.5 MB model loaded in well
under a second, pure Python and NumPy (no compiler or protobuf at install).
"""

from __future__ import annotations

import functools

UNDETERMINED = "und"


@functools.lru_cache(maxsize=4)
def identifier(min_confidence: float):
    """py3langid's identifier with probabilities; below ``min_confidence`` it answers 'und'."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(
        MODEL_FILE, norm_probs=True, min_confidence=min_confidence
    )


def known_codes() -> set[str]:
    """The language codes the model can answer, and 'und'."""
    return set(identifier(0.0).labels) | {UNDETERMINED}


def check_codes(codes: list[str]) -> list[str]:
    """The codes of ``codes`` that no caption can ever get (for the configuration check)."""
    known = known_codes()
    return sorted(c for c in codes if c not in known)


def identify(caption: str | None, min_confidence: float) -> tuple[str, float]:
    """(ISO 639-1 code or 'und', probability) of one caption; empty text is undetermined."""
    text = (caption or "").strip()
    if not any(ch.isalpha() for ch in text):  # digits, punctuation, emoji: no language to name
        return UNDETERMINED, 0.0
    code, probability = identifier(min_confidence).classify(text)
    return code, round(float(probability), 4)
