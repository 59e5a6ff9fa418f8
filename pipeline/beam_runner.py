"""One place that turns the run configuration into a Beam pipeline, locally or on a cluster."""

from __future__ import annotations

import logging
import re

from pipeline.config import RunConfig


def pipeline_args(run: RunConfig, job_name: str) -> list[str]:
    """Beam pipeline options for the configured runner."""
    args = list(run.beam_args)
    if run.is_local:
        mode = "multi_processing" if run.workers > 1 else "in_memory"
        args += [f"--direct_num_workers={run.workers}", f"--direct_running_mode={mode}"]
        if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
            args.append("--default_sdk_harness_log_level=ERROR")  # worker processes' INFO chatter
        if not any(a.endswith("pipeline_type_check") for a in args):
            # Construction-time type inference disassembles every lambda's bytecode: ~0.35 CPU-s
            # of a download run's start-up. Our transforms declare no hints it could check.
            args.append("--no_pipeline_type_check")
    else:
        args.append(f"--runner={run.runner}")
        if not any(a.startswith("--job_name") for a in args):
            args.append("--job_name=" + re.sub(r"[^a-z0-9-]", "-", job_name.lower()))
    return args


def make_pipeline(run: RunConfig, job_name: str):
    """A ``beam.Pipeline`` for ``run``: the in-process FnApiRunner locally, else the named runner.

    The local runner is chosen explicitly: Beam's DirectRunner would first try to download a
    Prism binary, which fails (noisily) on machines without network.
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(pipeline_args(run, job_name))
    if run.is_local:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        # worker logs relayed by the local job service ("No semi_persistent_directory found")
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(
            logging.ERROR
        )
        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)
