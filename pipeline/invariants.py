"""Stage-end checks: a stage proves its outputs complete before it declares success.

Whatever the runner, a stage compares what it wrote with what it was given (every input file
reported, every bucket and shard accounted for, rows in = rows out) after its pipeline finished.
A broken check raises :class:`StageFailed`: the stage writes no ``_SUCCESS.json`` and ``wit``
exits 1 with one line holding the counts, so a runner's gap never becomes a smaller dataset.
"""

from __future__ import annotations

from collections.abc import Iterable


class PortabilityError(RuntimeError):
    """A pipeline uses something that some Beam runner executes wrongly (refused before it runs)."""


class StageFailed(RuntimeError):
    """A stage's outputs are incomplete or inconsistent; the message holds the counts."""

    def __init__(self, stage: str, message: str):
        self.stage = stage
        super().__init__(f"{stage} failed: {message}")


def missing_and_repeated(expected: Iterable, seen: Iterable) -> tuple[list, list]:
    """Which of ``expected`` were never seen, and which were seen more than once (sorted)."""
    counts: dict = {}
    for item in seen:
        counts[item] = counts.get(item, 0) + 1
    expected = list(expected)
    missing = sorted(e for e in expected if e not in counts)
    repeated = sorted(k for k, n in counts.items() if n > 1)
    return missing, repeated


def expect_each_once(stage: str, what: str, expected: Iterable, seen: Iterable) -> None:
    """Raise StageFailed unless every expected item was seen exactly once (and nothing else)."""
    expected = list(expected)
    seen = list(seen)
    missing, repeated = missing_and_repeated(expected, seen)
    unexpected = sorted(set(seen) - set(expected), key=repr)
    if missing or repeated or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (first: {missing[:5]})")
        if repeated:
            detail.append(f"{len(repeated)} repeated (first: {repeated[:5]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (first: {unexpected[:5]})")
        raise StageFailed(
            stage, f"{len(expected)} {what} expected, {len(seen)} reported: " + ", ".join(detail)
        )


def expect_equal(stage: str, what: str, expected, got) -> None:
    """Raise StageFailed unless ``got == expected``."""
    if expected != got:
        raise StageFailed(stage, f"{what}: expected {expected}, got {got}")


def input_verdicts(stage: str, stats: dict, kinds: tuple[str, ...]) -> list[str]:
    """Per kind of input file (``<kind>_file:read`` / ``<kind>_file:failed`` counts in ``stats``):
    raise StageFailed when every file of a kind failed; returns a warning line per kind where
    only some did."""
    warnings = []
    for kind in kinds:
        read, failed = stats.get(f"{kind}_file:read", 0), stats.get(f"{kind}_file:failed", 0)
        if not failed:
            continue
        prefix = f"{kind}_file:failed:"
        why = ", ".join(
            f"{k[len(prefix) :]} {n}" for k, n in sorted(stats.items()) if k.startswith(prefix)
        )
        detail = f" ({why})" if why else ""
        if failed >= read:
            raise StageFailed(stage, f"every {kind} file failed: {failed} of {read}{detail}")
        warnings.append(f"{failed} of {read} {kind} files could not be read{detail}")
    return warnings
