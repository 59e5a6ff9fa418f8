"""Entry point of the local runner's worker processes: Beam's SDK harness, started cheaply.

    python -m pipeline.beam_worker [MODULE ...]

With ``--workers N`` (N > 1) the local runner starts N of these for the stages whose workers are
processes (queries, select; the download's are threads) instead of Beam's own
``python -m apache_beam.runners.worker.sdk_worker_main``; they run the same harness. The
difference is start-up: Beam and the named modules (the stage's transforms, which the workers
would otherwise import while unpickling them) are imported with the cyclic garbage collector
paused and then frozen, as the main process does (:func:`pipeline.stages.import_frozen`). That
saves a part of each worker process's start-up CPU (``python -m bench.bench_download`` measures
start-up) and keeps later collections from rescanning Beam's long-lived objects. A worker also
keeps one malloc arena and lets Arrow allocate through it
(:func:`pipeline.memory.lean_allocators`).
"""

from __future__ import annotations

import gc
import importlib
import sys


def main(argv: list[str]) -> None:
    """Import the harness and ``argv``'s modules frozen, then run Beam's SDK worker main."""
    from pipeline.memory import lean_allocators

    lean_allocators()
    gc.disable()
    try:
        from apache_beam.runners.worker import sdk_worker_main

        for module in argv:
            importlib.import_module(module)
    finally:
        gc.freeze()
        gc.enable()
    sdk_worker_main.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
