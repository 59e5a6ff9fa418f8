"""The dask.distributed cluster that ``--runner dask`` runs on: joined, or started for the run.

With ``--dask-scheduler`` (an address such as ``tcp://host:8786`` or a scheduler file) the run
joins a cluster the user started (``dask scheduler`` / ``dask worker``, dask-jobqueue on SLURM,
the Dask operator on Kubernetes); without it a local cluster of ``--workers`` processes is started
and shut down when the command ends. Before any work the cluster is checked: reachable, with
workers, running the same versions of Python, Beam and this project as the driver, and (for a
local ``--out``) able to see the output directory. Each problem is a configuration error that
names what to fix, never a hang or a traceback.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import uuid
from dataclasses import dataclass
from importlib import metadata

from pipeline import fs
from pipeline.config import ConfigError, RunConfig

CONNECT_TIMEOUT_S = 10
WORKERS_TIMEOUT_S = 30
KEY = "run.dask_scheduler"


@dataclass
class Session:
    """A client connected to the cluster (and the cluster, when this process started it)."""

    key: tuple
    address: str
    client: object
    cluster: object | None
    threads: int

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


_SESSION: Session | None = None


def _is_address(target: str) -> bool:
    return "://" in target or bool(re.fullmatch(r"[\w.-]+:\d+", target))


def _connect(run: RunConfig):
    """(client, cluster or None) for the configured scheduler, or a local cluster."""
    from dask.distributed import Client, LocalCluster

    target = run.dask_scheduler
    if not target:
        cluster = LocalCluster(
            n_workers=run.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            preload=["pipeline.dask_worker"],
        )
        return Client(cluster), cluster
    try:
        if os.path.isfile(target) or not _is_address(target):
            if not os.path.isfile(target):
                raise ConfigError(
                    KEY, f"{target!r} is neither a scheduler address (tcp://host:port) nor a file"
                )
            return Client(scheduler_file=target, timeout=CONNECT_TIMEOUT_S), None
        return Client(target, timeout=CONNECT_TIMEOUT_S), None
    except (OSError, TimeoutError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(KEY, f"cannot reach the Dask scheduler at {target}: {reason}") from None


def _worker_facts(probe: str | None) -> dict:
    """What a worker runs and sees (executed on every worker)."""
    facts = {"python": ".".join(map(str, __import__("sys").version_info[:2]))}
    for dist in ("wit-builder", "apache-beam"):
        try:
            facts[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            facts[dist] = "missing"
    facts["sees_out"] = None if probe is None else os.path.exists(probe)
    return facts


def _check_workers(client, run: RunConfig) -> int:
    """Raise ConfigError unless every worker can run this project's stages; returns threads."""
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
    except (TimeoutError, OSError):
        raise ConfigError(
            KEY, f"the Dask scheduler has no workers after {WORKERS_TIMEOUT_S}s; start some"
        ) from None
    probe = None
    if not fs.is_remote(run.out):
        fs.makedirs(run.out)
        probe = os.path.abspath(os.path.join(run.out, f".dask-probe-{uuid.uuid4().hex[:8]}"))
        with open(probe, "w") as f:
            f.write("probe\n")
    try:
        facts = client.run(_worker_facts, probe)
    except Exception as e:  # a worker that cannot even import this module
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            KEY,
            f"the workers cannot run this project's code ({reason}): install it on every worker",
        ) from None
    finally:
        if probe:
            os.unlink(probe)
    mine = _worker_facts(None)
    for worker, theirs in sorted(facts.items()):
        for what in ("python", "wit-builder", "apache-beam"):
            if theirs[what] != mine[what]:
                raise ConfigError(
                    KEY,
                    f"worker {worker} has {what} {theirs[what]}, this machine {mine[what]}: "
                    "install the same versions on every worker",
                )
        if theirs["sees_out"] is False:
            raise ConfigError(
                "run.out",
                f"worker {worker} cannot see {os.path.abspath(run.out)}: with a Dask cluster, "
                "--out must be storage every worker mounts (NFS) or gs:// / s3://",
            )
    return sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())


def session(run: RunConfig) -> Session:
    """The cluster for ``run``: connected (or started) and checked on first use, then reused."""
    global _SESSION
    key = (run.dask_scheduler, run.workers, run.out)
    if _SESSION is not None and _SESSION.key == key:
        return _SESSION
    close()
    client, cluster = _connect(run)
    try:
        threads = _check_workers(client, run)
    except BaseException:
        client.close()
        if cluster is not None:
            cluster.close()
        raise
    address = client.scheduler.address
    _SESSION = Session(key, address, client, cluster, threads)
    return _SESSION


def close() -> None:
    """Disconnect, and shut down the local cluster if this process started it."""
    global _SESSION
    if _SESSION is not None:
        current, _SESSION = _SESSION, None
        current.close()


atexit.register(close)
