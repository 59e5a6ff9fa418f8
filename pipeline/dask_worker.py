"""Preloaded by every worker of the local Dask cluster: Beam imported with the GC paused, then frozen.

    dask worker --scheduler-file F --preload pipeline.dask_worker    # the same on your cluster

Importing Beam creates a few hundred thousand objects that live as long as the worker; frozen,
later collections skip them (:func:`pipeline.stages.import_frozen` does the same for the driver, and
:mod:`pipeline.beam_worker` for the local runner's worker processes). Optional on a cluster you
start yourself: the stages run the same without it, only each worker's start-up costs more CPU.
"""

from __future__ import annotations

import gc


def dask_setup(worker) -> None:
    """Dask's preload hook: runs in the worker process before it takes any task."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        import apache_beam  # noqa: F401
        from apache_beam.runners.dask import transform_evaluator  # noqa: F401 (every task)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
