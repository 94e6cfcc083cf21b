"""A grid of runs (methods x seeds) on one scenario, source and profile; resumable.

Runs already complete in the store (same run_id, i.e. the same resolved configuration) are
skipped. The scenario's data is built once per seed and shared by all methods (per process). A
run that raises is recorded with status ``error``, one that runs out of memory with ``oom`` (both
retried by the next invocation); the sweep goes on. Several processes can share an output
directory: each run is trained by the one that claims it first (``Store.claim``). Each row records
the code that made it (``code_sha``, ``git_sha``), the threads, the parallel jobs and the machine's
load at its start, so stale or contended numbers can be told apart.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import multiprocessing
import os
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from .config import (
    SUITE_VERSION,
    RunSpec,
    check_requirements,
    derive_seed,
    resolve_hparams,
    resolve_settings,
)
from .data import load_source
from .errors import ConfigError
from .harness import run
from .scenarios import get_scenario
from .store import Store
from .weight_health import DEGENERATE


@dataclass
class SweepResult:
    ran: int
    skipped: int
    failed: list[str]
    elsewhere: int = 0  # left to another process training them in the same store
    diverged: int = 0  # of the runs trained now, those whose loss became non-finite


@functools.cache
def git_sha() -> str:
    """The suite's git commit (``-dirty`` if its code is modified), or ``unknown`` outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, text=True,
                             capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "methods", "benchmarks"],
                               cwd=here, text=True, capture_output=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; anything else is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: this machine has no CUDA device (use cpu or auto)")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: only cpu and cuda are supported")
    return device


Axes = list[tuple[str, list]]


def _points(axes: Axes) -> list[dict]:
    """Every combination of the axes' values ([{}] for no axes)."""
    names = [name for name, _ in axes]
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(v for _, v in axes))]


def plan(scenario_name: str, source: str | None, profile: str, methods: list[str],
         seeds: list[int], settings_overrides: dict, hparam_overrides: dict[str, dict],
         method_settings: dict[str, dict] | None = None, setting_axes: Axes | None = None,
         hparam_axes: dict[str, Axes] | None = None) -> list[RunSpec]:
    """The resolved RunSpecs of the grid, seeds outer, then methods, then grid points (settings
    axes and each method's hyperparameter axes, see ``config.parse_grid``). ``method_settings``
    adds per-method scenario-setting overrides (a tuned model lr) on top of ``settings_overrides``."""
    scenario = get_scenario(scenario_name)
    source = source or scenario.default_source
    for method in methods:
        check_requirements(scenario, method)
    specs = []
    for seed in seeds:
        for method in methods:
            for s_point in _points(setting_axes or []):
                for h_point in _points((hparam_axes or {}).get(method, [])):
                    overrides = {**settings_overrides, **(method_settings or {}).get(method, {}),
                                 **s_point}
                    settings = resolve_settings(scenario, source, profile, overrides)
                    hp = resolve_hparams(scenario, method,
                                         {**hparam_overrides.get(method, {}), **h_point},
                                         profile, source)
                    specs.append(RunSpec(scenario_name, source, profile, method, seed,
                                         asdict(settings), asdict(hp)))
    return specs


# the code that computes a run's numbers: methods, models, data, scenarios, the training harness
RESULT_CODE = ("methods", "benchmarks/data", "benchmarks/models", "benchmarks/scenarios",
               "benchmarks/harness.py", "benchmarks/config.py", "benchmarks/metering.py",
               "benchmarks/weight_health.py")


def code_sha() -> str:
    """SHA-256 (12 hex digits) of the code that computes results (RESULT_CODE: every ``.py``
    file's path and content) and the suite version. Unlike ``git_sha`` it needs no checkout and
    sees uncommitted edits; a change to the report, the store or the command line leaves it."""
    return _code_sha()


@functools.cache
def _code_sha() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"suite_version={SUITE_VERSION}".encode())
    files = sorted(p for part in RESULT_CODE for p in
                   ([root / part] if part.endswith(".py") else (root / part).rglob("*.py")))
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def code_sha_of(method: str, base: str | None = None) -> str:
    """The code version a run of ``method`` records: ``base`` (default :func:`code_sha`) for a
    method in this suite's ``methods/``; for one from another package (an entry point or a
    ``module:Class`` name) a hash of ``base`` and the source of the module that defines it, so
    that editing that module marks its stored runs as made by other code."""
    import inspect

    from methods import get_method

    base = base or code_sha()
    try:
        path = Path(inspect.getfile(get_method(method))).resolve()
    except (TypeError, OSError):
        return base
    if (Path(__file__).resolve().parent.parent / "methods") in path.parents:
        return base
    return hashlib.sha256(base.encode() + b"\0" + path.read_bytes()).hexdigest()[:12]


def default_threads() -> int:
    """Intra-op threads per run when none is given: 1. The suite's models are small; on a busy
    2-core machine torch's default of one thread per core made their steps 15-200x slower
    (OpenMP threads spinning against each other), and one thread per run with ``--jobs`` runs
    side by side uses the cores better."""
    return 1


def oversubscribed(jobs: int, threads: int) -> str | None:
    """A warning if the machine's 1-minute load plus this sweep's ``jobs``·``threads`` exceeds
    its cores (times per step then include waiting for a core), else None."""
    cores = usable_cpus()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load + jobs * threads > (cores or 1) + 0.5:
        return (f"warning: the machine looks oversubscribed (load {load:.1f} on {cores} cores, "
                f"and this sweep adds {jobs} job(s) x {threads} thread(s)); times per step will "
                "be inflated. Compare times only within a quiet run (the column load_avg records "
                "the load at each run's start).")
    return None


BACKENDS = ("local", "ray")


def run_sweep(specs: list[RunSpec], out: str | Path, data_dir: str | None = None,
              device: str = "auto", progress: bool | None = None, force: bool = False,
              threads: int | None = None, jobs: int = 1, backend: str = "local",
              ray_address: str | None = None) -> SweepResult:
    """Run every spec not yet complete in ``out`` (every spec with ``force``, replacing the old
    rows once each new run is done); returns what ran, was skipped, failed.

    ``threads`` intra-op threads per run (default ``default_threads()``), ``jobs`` runs at once
    (separate processes; their times are then taken under contention, which the rows record in
    ``jobs``). ``backend``: ``local`` (this process, or ``jobs`` worker processes) or ``ray``
    (each run a Ray task: ``benchmarks.ray_backend``; ``ray_address`` joins a cluster). The
    destination is checked before anything trains (StoreError). Runs that another process is
    training in the same ``out`` (see ``Store.claim``) are left to it."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "ray":
        from .ray_backend import ray_module

        ray_module()  # not installed: say so before anything is loaded
    threads = threads or default_threads()
    if threads < 1 or jobs < 1:
        raise ConfigError(f"--threads and --jobs must be at least 1 (got {threads}, {jobs})")
    most = 4 * usable_cpus()
    if threads * jobs > most:
        raise ConfigError(f"--threads {threads} x --jobs {jobs} asks for {threads * jobs} threads "
                          f"on {usable_cpus()} usable cores: at most {most} (4 per core) are "
                          "allowed, and one thread per core in all is fastest for small models")
    dev = resolve_device(device)
    git_sha(), code_sha()  # read the code version now, before the checkout can change mid-sweep
    store = Store(out)
    store.prepare()
    specs = list({s.run_id: s for s in specs}.values())  # --seeds 0,0: one run, not two
    done = set() if force else store.completed()
    todo = [s for s in specs if s.run_id not in done]
    skipped = len(specs) - len(todo)
    failed: list[str] = []
    if skipped:
        tqdm.write(f"{skipped} of {len(specs)} runs already complete in {out}; skipping them")
        stale = _stale(store, {s.run_id for s in specs} & done)
        if stale:
            tqdm.write(stale.replace("OUT", str(out)))
    if not todo:
        return SweepResult(0, skipped, failed)
    warning = oversubscribed(jobs, threads)
    if warning:
        tqdm.write(warning)
    disable = {True: False, False: True, None: None}[progress]  # None: only on a terminal
    context = RunContext(str(out), data_dir, str(dev), threads, jobs, force, code_sha(), git_sha(),
                       usable_cpus())
    elsewhere: list[str] = []
    diverged: list[str] = []
    try:
        _train(todo, context, jobs, threads, disable, failed, elsewhere, diverged,
               backend=backend, ray_address=ray_address)
    finally:  # also after Ctrl-C, SIGTERM or an error: the finished runs' records are saved;
        store.refresh_views()  # bring the views up to date with them (atomic, a few seconds)
    if elsewhere:
        tqdm.write(f"{len(elsewhere)} runs were being trained by another process on {out} "
                   f"({'; '.join(elsewhere[:3])}{'; ...' if len(elsewhere) > 3 else ''}); they "
                   "are left to it: run this command again once it has finished")
    return SweepResult(len(todo) - len(elsewhere), skipped, failed, len(elsewhere),
                       len(diverged))


def _train(todo: list[RunSpec], context: RunContext, jobs: int, threads: int,
           disable: bool | None, failed: list[str], elsewhere: list[str],
           diverged: list[str], worker=None, backend: str = "local",
           ray_address: str | None = None) -> None:
    """Train ``todo``: in this process (``jobs`` 1, a progress bar over steps), in ``jobs``
    worker processes, or as Ray tasks (``backend="ray"``; a bar over runs). ``worker(task,
    context, advance)`` trains one task and returns (line, error) (default ``_run_one``;
    ``retrain`` passes its own); a task has ``run_id``, ``method``, ``seed`` and
    ``settings["steps"]``."""
    worker = worker or _run_one
    if backend == "ray":
        from .ray_backend import run_on_ray

        bar = tqdm(total=len(todo), unit="run", disable=disable, dynamic_ncols=True,
                   desc="sweep (ray)")
        count = [0]

        def report(spec, line, error):
            count[0] += 1
            _report(count[0], len(todo), spec, line, error, failed, elsewhere, diverged)

        def record_crash(spec, message):
            store_error(Store(context.out), spec, torch.device(context.device), message,
                        float("nan"), context, float("nan"))

        try:
            run_on_ray(todo, context, jobs, threads, bar, report, record_crash, ray_address,
                       worker)
        finally:
            bar.close()
        return
    if jobs == 1:
        torch.set_num_threads(threads)
        total_steps = sum(s.settings["steps"] for s in todo)
        bar = tqdm(total=total_steps, unit="step", disable=disable, dynamic_ncols=True,
                   desc="sweep")
        try:
            for i, spec in enumerate(todo, 1):
                bar.set_postfix_str(f"{spec.method} seed={spec.seed}")
                line, error = worker(spec, context, bar.update)
                _report(i, len(todo), spec, line, error, failed, elsewhere, diverged)
        finally:
            bar.close()
    else:
        bar = tqdm(total=len(todo), unit="run", disable=disable, dynamic_ncols=True, desc="sweep")
        try:
            _run_parallel(todo, context, jobs, threads, bar, failed, elsewhere, diverged,
                          worker=worker)
        finally:
            bar.close()


def _run_parallel(todo: list[RunSpec], context: RunContext, jobs: int, threads: int, bar,
                  failed: list[str], elsewhere: list[str], diverged: list[str],
                  restarts: int = 2, worker=None) -> None:
    """Run ``todo`` in ``jobs`` worker processes. A worker that dies (killed, out of memory)
    breaks the pool: it is started afresh, up to ``restarts`` times, for the runs not yet done.
    Ctrl-C or SIGTERM stops the workers at once (their leases end with them) and re-raises."""
    pending, done = list(todo), 0
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(restarts + 1):
        pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                   initargs=(threads, os.getpid()))
        futures = {pool.submit(worker or _run_one, spec, context, None): spec for spec in pending}
        broken = False
        try:
            for future in as_completed(futures):
                spec = futures[future]
                try:
                    line, error = future.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                pending.remove(spec)
                done += 1
                _report(done, len(todo), spec, line, error, failed, elsewhere, diverged)
                bar.update(1)
        except BaseException:  # Ctrl-C, SIGTERM, or an error writing a result: stop at once
            _stop_workers(pool)
            raise
        pool.shutdown(wait=True)
        if not broken or not pending:
            return
        tqdm.write(f"a worker process died (killed or out of memory); {len(pending)} runs left"
                   + ("; starting the workers again" if attempt < restarts else ""))
    for spec in pending:
        failed.append(f"{spec.method} seed={spec.seed}: its worker process died {restarts + 1} "
                      "times (out of memory?); run it with --jobs 1 to see why")


POOL_STOPPED = threading.Event()  # set once a pool's workers were stopped (see cli.entry)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the pool's worker processes now (a run in progress is abandoned, as with Ctrl-C
    without --jobs) instead of waiting for their runs to finish."""
    POOL_STOPPED.set()
    for process in list(getattr(pool, "_processes", {}).values()):
        with contextlib.suppress(Exception):
            process.terminate()
    with contextlib.suppress(Exception):  # do not flush tasks into dead workers' queue at exit
        pool._call_queue.cancel_join_thread()
    pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class RunContext:
    out: str
    data_dir: str | None
    device: str
    threads: int
    jobs: int
    force: bool
    code_sha: str
    git_sha: str
    cpus: int


class _ViewsPacer:
    """When a sweep process rewrites the store's views after a run: when at least ten times as
    long has passed since its last rewrite as that rewrite took, so the O(runs) rewrites cost
    at most about a tenth of the sweep however large the store grows (each run's record is
    written at once regardless; the views are brought up to date at the end)."""

    def __init__(self) -> None:
        self._last_end = -float("inf")
        self._last_cost = 0.0

    def write(self, store: Store, row: dict, curves: pd.DataFrame, weights) -> None:
        now = time.monotonic()
        views = now - self._last_end >= 10 * self._last_cost
        store.write(row, curves, weights, views=views)
        if views:
            self._last_end = time.monotonic()
            self._last_cost = self._last_end - now


_PACERS: dict[str, _ViewsPacer] = {}  # per process and store


def _pacer(out: str) -> _ViewsPacer:
    return _PACERS.setdefault(out, _ViewsPacer())


_BUILT: dict[str, object] = {}  # per process: the scenario data of the last (seed, settings)
_SOURCES: dict[tuple, object] = {}  # per process: the last source loaded


def source_of(spec: RunSpec, data_dir: str | None):
    """``spec``'s data source, loaded once per process (one kept at a time). Raises
    DpsBenchError for missing or corrupt data."""
    key = (spec.source, data_dir)
    if key not in _SOURCES:
        _SOURCES.clear()
        _SOURCES[key] = load_source(spec.source, data_dir)
    return _SOURCES[key]


def scenario_data(spec: RunSpec, data_dir: str | None):
    """The scenario's data for ``spec``'s (scenario, source, seed, settings), split with
    ``derive_seed(seed, scenario, source)`` and built once per process (one kept at a time:
    the methods of one seed share it)."""
    key = json.dumps([spec.scenario, spec.source, spec.seed, spec.settings], sort_keys=True)
    if key not in _BUILT:
        scenario = get_scenario(spec.scenario)
        source = source_of(spec, data_dir)
        _BUILT.clear()
        _BUILT[key] = scenario.build(source, scenario.Settings(**spec.settings),
                                     derive_seed(spec.seed, spec.scenario, spec.source))
    return _BUILT[key]


def _init_worker(threads: int, parent: int) -> None:
    """Set up a worker process of the sweep whose process id is ``parent``."""
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool on Ctrl-C

    def orphaned() -> None:  # the parent was killed (kill -9): end with it, not linger forever
        while os.getppid() == parent:  # (checked against the pid the parent passed: a worker
            time.sleep(1.0)            # started just as its parent died is orphaned at birth)
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True, name="dps-bench-parent-watch").start()


def _run_one(spec: RunSpec, context: RunContext, advance) -> tuple[str, str | None]:
    """Train one run (unless another process holds it) and write it to the store. Returns the
    line to print and, for a failed run, its error with a short traceback."""
    store = Store(context.out)
    with leased(store, spec.run_id, context.force) as refused:
        if refused:
            return refused, None
        dev = torch.device(context.device)
        scenario = get_scenario(spec.scenario)
        data = scenario_data(spec, context.data_dir)
        last = [0]

        def on_step(step: int) -> None:
            if advance is not None:
                advance(step - last[0])
            last[0] = step

        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        t0 = time.perf_counter()
        try:
            outcome = run(spec, scenario, data, dev, on_step=on_step)
        except Exception as e:  # recorded, the sweep goes on; retried on the next invocation
            tb = traceback.format_exc(limit=-3)
            store_error(store, spec, dev, f"{type(e).__name__}: {e}", time.perf_counter() - t0,
                        context, load)
            if advance is not None:
                advance(spec.settings["steps"] - last[0])
            return f"ERROR {e}", f"{spec.method} seed={spec.seed}: {type(e).__name__}: {e}\n{tb}"
        row = outcome_row(spec, dev, outcome, context, load)
        _pacer(context.out).write(store, row, outcome.curves, outcome.weights)
        if advance is not None:
            advance(spec.settings["steps"] - last[0])
        line = (f"{outcome.status} {scenario.metric_name}={outcome.final_metric:.4f} "
                f"({outcome.time_per_step_ms:.2f} ms/step, {outcome.peak_mem_mb:.2f} MB, "
                f"{outcome.wall_s:.1f} s)" + (f" {outcome.error}" if outcome.error else "")
                + (f" WEIGHTS {outcome.weights_status.upper()}"
                   if outcome.weights_status in DEGENERATE else ""))
        return line, (f"{spec.method} seed={spec.seed}: {outcome.error}"
                      if outcome.status == "oom" else None)


@contextlib.contextmanager
def leased(store: Store, run_id: str, force: bool) -> Iterator[str | None]:
    """Hold ``run_id``'s lease (``Store.claim``, renewed by :class:`_Renewal`) while the block
    trains it. Yields None when this process holds the lease, else the line a worker returns
    instead of training: the run is complete (unless ``force``) or another live process holds it
    (``ELSEWHERE pid P on HOST``).

    The lease is given back however the block ends, also when Ctrl-C or SIGTERM lands between
    the lease file being written and the block starting: the release sits in a ``finally`` that
    encloses the claim, and ``Store.release`` removes only a lease this process holds."""
    renewing: _Renewal | None = None
    try:
        if not force and store.is_complete(run_id):
            yield "already complete (finished by another process)"
            return
        if not store.claim(run_id, force=force):
            holder = store.holder(run_id) or {}
            yield f"ELSEWHERE pid {holder.get('pid')} on {holder.get('host')}"
            return
        renewing = _Renewal(store, run_id)
        yield None
    finally:
        if renewing is not None:
            renewing.stop()
        store.release(run_id)


class _Renewal:
    """Renews a lease every 60 s from a background thread while its run trains (set-up,
    offline scoring and evaluations included), for leases read from another host."""

    def __init__(self, store: Store, run_id: str, every: float = 60.0) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(store, run_id, every),
                                        daemon=True)
        self._thread.start()

    def _loop(self, store: Store, run_id: str, every: float) -> None:
        while not self._stop.wait(every):
            store.renew(run_id)

    def stop(self) -> None:
        self._stop.set()


def usable_cpus() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _report(i: int, n: int, spec: RunSpec, line: str, error: str | None, failed: list[str],
            elsewhere: list[str], diverged: list[str]) -> None:
    if error:
        failed.append(error)
    if line.startswith("diverged"):
        diverged.append(spec.run_id)
    if line.startswith("ELSEWHERE"):
        elsewhere.append(f"{spec.method} seed={spec.seed}: {line[len('ELSEWHERE '):]}")
        line = "left to another process (" + line[len("ELSEWHERE "):] + ")"
    tqdm.write(f"[{i}/{n}] {spec.method} seed={spec.seed}: {line}")


def _stale(store: Store, ids: set[str]) -> str | None:
    """A note if some of the complete runs ``ids`` were made by other code (``code_sha``) or
    another torch version than this process's."""
    runs = store.runs()
    runs = runs[runs["run_id"].isin(ids)]
    recorded = runs["code_sha"] if "code_sha" in runs.columns else pd.Series("", index=runs.index)
    recorded = recorded.astype(object).where(recorded.notna(), "")
    torch_then = runs["torch_version"].astype(object).where(runs["torch_version"].notna(), "")
    expected = {m: code_sha_of(m) for m in set(runs["method"])}
    other = runs[(recorded != runs["method"].map(expected)) | (torch_then != torch.__version__)]
    if other.empty:
        return None
    versions = ", ".join(sorted({f"code {c or 'unrecorded'} (git {g}), torch {t}" for c, g, t in
                                 zip(recorded[other.index], other["git_sha"],
                                     torch_then[other.index], strict=True)}))
    return (f"note: {len(other)} of these complete runs were made by other code or torch "
            f"({versions}; this is code {code_sha()}, torch {torch.__version__}), so their "
            "numbers may differ from what this code gives. `dps-bench verify OUT` reruns a "
            "sample and compares; `--force` reruns them all.")


def store_error(store: Store, spec: RunSpec, device: torch.device, message: str, wall_s: float,
                context: RunContext, load_avg: float) -> None:
    """Write ``spec``'s run as an ``error`` row with ``message`` (not complete: the next
    invocation trains it again)."""
    row = _row(spec, device, "error", message, wall_s, context, load_avg)
    _pacer(context.out).write(store, row, _empty_curves(), None)


def _empty_curves():
    return pd.DataFrame(columns=["step", "split", "metric_name", "value"])


def outcome_row(spec: RunSpec, device: torch.device, outcome, context: RunContext,
                load_avg: float) -> dict:
    """The runs.csv row of a finished run (``outcome``: harness.RunOutcome)."""
    row = _row(spec, device, outcome.status, outcome.error, outcome.wall_s, context, load_avg)
    row.update(final_metric=outcome.final_metric, best_metric=outcome.best_metric,
               time_per_step_ms=outcome.time_per_step_ms, peak_mem_mb=outcome.peak_mem_mb,
               prepare_s=round(outcome.prepare_s, 3), weights_status=outcome.weights_status)
    return row


def _row(spec: RunSpec, device: torch.device, status: str, error: str, wall_s: float,
         context: RunContext, load_avg: float) -> dict:
    scenario = get_scenario(spec.scenario)
    return {
        "run_id": spec.run_id, "scenario": spec.scenario, "source": spec.source,
        "profile": spec.profile, "method": spec.method, "seed": spec.seed,
        "steps": spec.settings["steps"], "metric_name": scenario.metric_name,
        "final_metric": float("nan"), "best_metric": float("nan"),
        "time_per_step_ms": float("nan"), "peak_mem_mb": float("nan"),
        "device": str(device), "status": status, "error": error,
        "config_json": spec.to_json(), "torch_version": torch.__version__,
        "git_sha": context.git_sha,
        "wall_s": round(wall_s, 3), "threads": torch.get_num_threads(), "prepare_s": 0.0,
        "weights_status": "", "code_sha": code_sha_of(spec.method, context.code_sha),
        "jobs": context.jobs,
        "load_avg": round(load_avg, 2), "cpus": context.cpus,
    }
