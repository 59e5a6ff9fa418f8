"""One place that turns the run configuration into a Beam pipeline, locally or on a cluster.

Stages call :func:`run_pipeline`: it builds the stage's pipeline for the configured runner, refuses
it if some runner would execute it wrongly (:func:`pipeline.portable.check_portable`), runs it
and waits. On ``--runner dask`` the pipeline runs on the cluster of :mod:`pipeline.dask_cluster`.
"""

from __future__ import annotations

import logging
import re
import shlex
import sys
from typing import Callable

from pipeline.config import ConfigError, RunConfig


def pipeline_args(run: RunConfig, job_name: str) -> list[str]:
    """Beam pipeline options for the configured runner."""
    args = list(run.beam_args)
    if run.is_dask:
        from pipeline import dask_cluster

        session = dask_cluster.session(run)
        args.append(f"--dask_client_address={session.address}")
        if not any(a.startswith(("--dask_npartitions", "--dask_partition_size")) for a in args):
            # A Create's elements (the stages' work units: input files, dump splits, buckets,
            # shards) are cut into this many Dask partitions, one task each, and every later step
            # keeps the count: two per worker thread balance the load, and a GroupByKey's task
            # shuffle costs about the square of the count in tasks, so it stays small.
            args.append(f"--dask_npartitions={2 * session.threads}")
        if not any(a.endswith("pipeline_type_check") for a in args):
            args.append("--no_pipeline_type_check")
    elif run.is_local:
        # With several workers, make_pipeline hands the runner its workers' environment (threads
        # or processes); the running mode stays "in_memory" so the runner keeps it.
        args += [f"--direct_num_workers={run.workers}", "--direct_running_mode=in_memory"]
        if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
            args.append("--default_sdk_harness_log_level=ERROR")  # worker processes' INFO chatter
        if not any(a.endswith("pipeline_type_check") for a in args):
            # Construction-time type inference disassembles every lambda's bytecode: a visible share
            # of a download run's start-up. Our transforms declare no hints it could check.
            args.append("--no_pipeline_type_check")
    else:
        args.append(f"--runner={run.runner}")
        if not any(a.startswith("--job_name") for a in args):
            args.append("--job_name=" + re.sub(r"[^a-z0-9-]", "-", job_name.lower()))
    return args


class _NotAWarning(logging.Filter):
    """Drops the runner's warning that in_memory mode with several workers runs one worker.

    It is true only of the runner's default environment; :func:`make_pipeline` gives it its own
    (worker threads or ``pipeline.beam_worker`` processes), one per ``--direct_num_workers``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("If direct_num_workers is not equal to 1")


_NOT_A_WARNING = _NotAWarning()


def worker_environment(worker_imports: tuple[str, ...] = (), threads: bool = False):
    """The local runner's workers: threads of this process, or SDK harness processes.

    Threads suit stages whose work releases the GIL (the download: sockets and image codecs in
    C); processes suit the Python-bound stages. A worker process runs :mod:`pipeline.beam_worker`,
    which imports ``worker_imports`` (the stage's transform modules) at start-up.
    """
    from apache_beam.transforms import environments

    if threads:
        return environments.EmbeddedPythonGrpcEnvironment.default()
    command = [sys.executable, "-m", "pipeline.beam_worker", *worker_imports]
    return environments.SubprocessSDKEnvironment.from_command_string(shlex.join(command))


def make_pipeline(
    run: RunConfig,
    job_name: str,
    worker_imports: tuple[str, ...] = (),
    worker_threads: bool = False,
):
    """A ``beam.Pipeline`` for ``run``: the FnApiRunner locally, else the named runner.

    The local runner is chosen explicitly: Beam's DirectRunner would first try to download a
    Prism binary, which fails (noisily) on machines without network. One local worker runs in
    this process; several run as threads of this process (``worker_threads``) or as worker
    processes, see :func:`worker_environment`.
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(pipeline_args(run, job_name))
    if run.is_dask:
        import dask
        from apache_beam.runners.dask.dask_runner import DaskRunner

        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        # Bags shuffle as tasks on a cluster either way; saying so spares the driver the import
        # of dask.dataframe that Dask's default lookup makes.
        dask.config.set({"dataframe.shuffle.method": "tasks"})
        return beam.Pipeline(runner=DaskRunner(), options=options)
    if run.is_local:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        # worker logs relayed by the local job service ("No semi_persistent_directory found")
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(
            logging.ERROR
        )
        environment = None
        if run.workers > 1:
            environment = worker_environment(worker_imports, worker_threads)
            logging.getLogger(FnApiRunner.__module__).addFilter(_NOT_A_WARNING)
        return beam.Pipeline(runner=FnApiRunner(default_environment=environment), options=options)
    if "." in run.runner:
        _check_importable(run.runner)
    return beam.Pipeline(options=options)


def _check_importable(runner: str) -> None:
    import importlib

    module, _, name = runner.rpartition(".")
    try:
        getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError("run.runner", f"cannot import runner class {runner!r}: {e}") from None


def run_pipeline(
    run: RunConfig,
    job_name: str,
    build: Callable,
    worker_imports: tuple[str, ...] = (),
    worker_threads: bool = False,
):
    """Build a stage's pipeline with ``build(p)``, check it runs alike everywhere, run it, wait.

    Returns Beam's result; a failed run raises.
    """
    from pipeline.portable import check_portable

    p = make_pipeline(run, job_name, worker_imports, worker_threads)
    build(p)
    check_portable(p)
    result = p.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)  # the Dask runner's own client, one per run
        if client is not None:
            client.close()
    return result
