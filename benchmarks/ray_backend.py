"""Sweeps on Ray (``--backend ray``): every run of ``run``, ``tune`` and ``reproduce`` becomes a
Ray task with its resource request, through the same resumable store as the local backend.

Each task trains one run exactly as a local worker process does (``sweep._run_one``: it takes the
run's lease in the store, trains, and writes the run's record), so results land in ``--out`` as
runs finish, a sweep stopped at any point and started again skips the complete runs, and two
sweeps on one store share the work out. A task whose worker dies (killed, out of memory) is
recorded by the driver as an ``error`` row naming the crash, not retried within the sweep (its
lease dies with its process), and trained again by the next invocation; the others go on.

Resources: a task asks for ``threads`` CPUs and, on a CUDA device, one GPU. Without
``--ray-address`` a local Ray instance starts with ``jobs · threads`` CPUs (so ``--jobs`` caps the
runs at once, as locally) and stops at the end; with ``--ray-address`` (e.g. ``auto``) the sweep
joins that cluster and its resources decide. The workers write to ``--out`` themselves: on a
cluster of several machines it must be a shared file system (the runs' leases are renewed by
their workers, so a worker on another host is seen as alive while it trains).

Ray is optional: ``pip install 'dps-bench[ray]'``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import torch

from .errors import DpsBenchError


class RayMissing(DpsBenchError):
    """--backend ray without Ray installed."""


def ray_module():
    """The ``ray`` module, or RayMissing saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayMissing("--backend ray needs Ray, which is not installed: pip install "
                         "'dps-bench[ray]' (or pip install ray), or use --backend local") from None
    return ray


def _task(spec, context, worker) -> tuple[str, str | None]:
    """One run in a Ray worker process: the local backend's worker, with the sweep's threads."""
    torch.set_num_threads(context.threads)
    return worker(spec, context, None)


def run_on_ray(todo: list, context, jobs: int, threads: int, bar, report: Callable,
               record_crash: Callable, address: str | None = None, worker=None) -> None:
    """Train ``todo`` as Ray tasks, reporting each as it finishes (``report(spec, line,
    error)``); ``record_crash(spec, message)`` stores a run whose worker died."""
    ray = ray_module()
    from .sweep import _run_one

    started_here = not ray.is_initialized()
    if started_here:
        options = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": True,
                   # the workers import this checkout's code (and a module:Class method from
                   # the caller's PYTHONPATH) as the driver does
                   "runtime_env": {"env_vars": {"PYTHONPATH": os.pathsep.join(
                       p for p in (os.environ.get("PYTHONPATH", ""), os.getcwd()) if p)}}}
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=jobs * threads, num_gpus=torch.cuda.device_count(), **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the cluster at {address}" if address else "a local Ray instance"
            raise DpsBenchError(f"could not start or join {where}: {e}") from None
    gpus = 1 if context.device.startswith("cuda") else 0
    remote = ray.remote(_task).options(num_cpus=threads, num_gpus=gpus, max_retries=0)
    pending = {remote.remote(spec, context, worker or _run_one): spec for spec in todo}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(ready[0])
            try:
                line, error = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                what = ("its Ray task raised" if isinstance(e, ray.exceptions.RayTaskError)
                        else "its Ray worker died")
                message = (f"{what} ({type(e).__name__}: {first[:300]}); run the same command "
                           "again to train it")
                record_crash(spec, message)
                line, error = f"ERROR {message}", f"{spec.method} seed={spec.seed}: {message}"
            report(spec, line, error)
            bar.update(1)
    except BaseException:  # Ctrl-C, SIGTERM: stop the tasks now; finished runs are stored
        for ref in pending:
            with contextlib.suppress(Exception):  # a task that has just finished
                ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
