"""One run: seed, build the model and the method, loop, evaluate, meter.

Seeding: the data split uses ``derive_seed(seed, scenario, source)``; the model initialisation
uses ``run_seed = derive_seed(seed, scenario, source, "run")``, and the train batches, the meta
batches and the method's RNG each have their own seed derived from it. Methods at the same seed
therefore share Dt, Dm, the initial model and, when they draw from the same pool, the sequence of
train batches (common random numbers), and a run repeated on the same machine gives identical
curves on the CPU.

Batches: the train pool the method declares is shuffled once per epoch and cut into batches of
``min(round(pool.batch_scale·batch_size), |pool|)``; Bm likewise from Dm with
``min(meta_batch_size, N_m)``.
Metering: steps 1 and 2 (0-based) are metered for peak memory; every other step is timed.
A method's offline ``prepare()`` (e.g. CDS's scoring) runs before the loop and is timed apart.
Divergence: a logged scalar or diagnostic that is not finite at an evaluation, or a method's
``NonFiniteError`` (in ``prepare`` or a step), ends the run as ``diverged``.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from methods import Batch, Context, Method, NonFiniteError, Pool, get_method

from .config import RunSpec, derive_seed
from .metering import StepTimer, peak_memory
from .scenarios import Scenario, ScenarioData, Split, make_optimizer
from .weight_health import weight_stats, weights_status

METERED_STEPS = (1, 2)


class Diverged(RuntimeError):
    """A logged training scalar (e.g. the loss) became non-finite."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EpochSampler:
    """Indices 0..n-1 in a fresh random order each epoch, ``batch`` at a time."""

    def __init__(self, n: int, batch: int, generator: torch.Generator) -> None:
        if n < 1:
            raise ValueError("cannot sample batches from an empty pool")
        self.n, self.batch, self.gen = n, min(batch, n), generator
        self.order = torch.empty(0, dtype=torch.long)

    def __next__(self) -> Tensor:
        if len(self.order) < self.batch:
            self.order = torch.cat([self.order, torch.randperm(self.n, generator=self.gen)])
        out, self.order = self.order[: self.batch], self.order[self.batch:]
        return out


class PoolBatches:
    """Training batches from a method's pool: Dt[pool.train] plus pool.meta_copies copies of Dm."""

    def __init__(self, pool: Pool, train: Split, meta: Split, batch: int,
                 generator: torch.Generator, device: torch.device) -> None:
        n_t = len(train)
        t_idx = torch.arange(n_t) if pool.train is None else pool.train.long().cpu()
        if len(t_idx) and (t_idx.min() < 0 or t_idx.max() >= n_t):
            raise ValueError(f"pool indices must lie in [0, {n_t})")
        m_idx = torch.arange(len(meta)).repeat(pool.meta_copies)
        self.mixed = pool.meta_copies > 0
        # entries index the concatenation [Dt; Dm]; Dm rows are offset by N_t
        self.entries = torch.cat([t_idx, m_idx + n_t]).to(device)
        self.n_t = n_t
        if self.mixed:
            self.x = torch.cat([train.x, meta.x]).to(device)
            self.y = torch.cat([train.y, meta.y]).to(device)
        else:
            self.x, self.y = train.x.to(device), train.y.to(device)
        self.sampler = EpochSampler(len(self.entries), max(1, round(batch * pool.batch_scale)),
                                    generator)
        self.device = device

    def __next__(self) -> Batch:
        rows = self.entries[next(self.sampler).to(self.device)]
        if not self.mixed:
            return Batch(self.x[rows], self.y[rows], rows)
        from_meta = rows >= self.n_t
        return Batch(self.x[rows], self.y[rows], rows - self.n_t * from_meta, from_meta)


class SplitBatches:
    """Batches of a whole split (Bm from Dm)."""

    def __init__(self, split: Split, batch: int, generator: torch.Generator,
                 device: torch.device) -> None:
        self.x, self.y = split.x.to(device), split.y.to(device)
        self.sampler = EpochSampler(len(split), batch, generator)
        self.device = device

    def __next__(self) -> Batch:
        idx = next(self.sampler).to(self.device)
        return Batch(self.x[idx], self.y[idx], idx)


def _on_device(split: Split, device: torch.device) -> Split:
    return Split(split.x.to(device), split.y.to(device), split.group)


@dataclass
class RunOutcome:
    """What one run produced: summary fields, curves rows, and per-example weights (or None)."""

    status: str
    error: str
    final_metric: float
    best_metric: float
    time_per_step_ms: float
    peak_mem_mb: float
    wall_s: float
    curves: pd.DataFrame
    weights: pd.DataFrame | None = None
    prepare_s: float = 0.0
    weights_status: str = ""  # ok | collapsed | uniform at the last evaluation; '' without weights


def evaluate(scenario: Scenario, model: torch.nn.Module, data: ScenarioData, split: Split,
             settings, device: torch.device) -> float:
    """The scenario's metric of ``model`` on ``split`` (:meth:`Scenario.evaluate`): a classifier
    scores logits, a generator decodes and scores text. Never inside a timed step."""
    return scenario.evaluate(model, data, split, settings, device)


def _group_means(weights: Tensor, groups: Tensor, names: tuple[str, ...]) -> dict[str, float]:
    w = weights.detach().float().cpu()  # NaN marks an example without a weight yet (l2rw)
    return {f"mean_weight:{n}": float(w[groups == c].nanmean()) for c, n in enumerate(names)
            if (groups == c).any()}


def target_count(spec: RunSpec, scenario: Scenario, n_train: int) -> float | None:
    """⌊β·N_t⌋ for the run's β (its own hyperparameter, else the scenario's shared one)."""
    beta = spec.hparams.get("beta")
    if beta is None:
        beta = scenario.hparam_defaults(spec.method, {"beta"}, spec.profile, spec.source).get("beta")
    return None if beta is None else math.floor(beta * n_train + 1e-9)


@dataclass
class RunSetup:
    """A method set up on a scenario's data, with its batch streams: everything a loop needs."""

    method: Method
    ctx: Context
    train_batches: PoolBatches
    meta_batches: SplitBatches | None
    datasets: list[Tensor]  # the data tensors the method may reference: not step memory
    prepare_s: float
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None
    augment_generators: tuple[torch.Generator, torch.Generator] | None = None  # (Bt, Bm)
    replicas: object = None  # methods.replicas.Replicas of a data-parallel run, else None

    def next_batches(self) -> tuple[Batch, Batch | None]:
        """The next Bt and Bm, with the scenario's augmentation applied to both (if any)."""
        bt = next(self.train_batches)
        bm = next(self.meta_batches) if self.meta_batches is not None else None
        if self.augment is not None:
            # one generator per stream: drawing Bm never changes how Bt is augmented
            gen_train, gen_meta = self.augment_generators
            bt = dataclasses.replace(bt, x=self.augment(bt.x, gen_train))
            if bm is not None:
                bm = dataclasses.replace(bm, x=self.augment(bm.x, gen_meta))
        if self.replicas is not None:  # every rank drew the global batch alike: take its shard
            r = self.replicas
            bt = shard(bt, r.rank, r.world)
            bm = shard(bm, r.rank, r.world) if bm is not None else None
        return bt, bm


def shard(batch: Batch, rank: int, world: int) -> Batch:
    """Rows [rank·b, (rank+1)·b) of ``batch``, b = len(batch) / world (data-parallel runs);
    ValueError when the batch does not split evenly (a batch capped by a small split, e.g. Bm of
    an odd N_m), since the ranks' shares of the global batch would then differ."""
    if len(batch) % world:
        raise ValueError(f"a batch of {len(batch)} examples does not split evenly over {world} "
                         "processes (--ddp); choose batch_size and meta_batch_size (and N_m, when "
                         "Bm is all of Dm) divisible by the number of processes")
    b = len(batch) // world
    rows = slice(rank * b, (rank + 1) * b)
    return Batch(batch.x[rows], batch.y[rows], batch.index[rows],
                 None if batch.from_meta is None else batch.from_meta[rows])


def set_up(spec: RunSpec, scenario: Scenario, data: ScenarioData, device: torch.device,
           replicas=None) -> RunSetup:
    """Seed, build the model, the Context and the method, run its ``prepare``, make the batches.
    ``replicas`` (``methods.replicas.Replicas``): one rank of a data-parallel run; every rank
    seeds and draws alike, and :meth:`RunSetup.next_batches` gives each its shard."""
    settings = scenario.Settings(**spec.settings)
    run_seed = derive_seed(spec.seed, spec.scenario, spec.source, "run")
    seed_everything(run_seed)
    model = scenario.make_model(data, settings).to(device)
    train, meta = _on_device(data.train, device), _on_device(data.meta, device)
    cls = get_method(spec.method)

    ctx = Context(
        model=model, make_optimizer=make_optimizer(settings), n_train=len(train),
        n_meta=len(meta), loss=scenario.loss, embed=lambda x: model.features(x).detach(),
        device=device, num_classes=data.num_classes,
        generator=torch.Generator().manual_seed(derive_seed(run_seed, "method")),
        train_set=Batch(train.x, train.y, torch.arange(len(train), device=device)),
        meta_set=Batch(meta.x, meta.y, torch.arange(len(meta), device=device)),
        total_steps=settings.steps,
        offline_chunk=scenario.offline_chunk(data, settings),
        # only for a method that asks (askllm_o): the scenario's judge prompts are not free
        judge=scenario.judge(model, data, settings, device) if "judge" in cls.requires else None,
        replicas=replicas,
    )
    method: Method = cls(ctx, cls.Hparams(**spec.hparams))
    prepare_started = time.perf_counter()
    method.prepare()
    prepare_s = time.perf_counter() - prepare_started
    # one generator per stream, so that drawing Bm never shifts the order of the train batches
    train_gen = torch.Generator().manual_seed(derive_seed(run_seed, "train"))
    meta_gen = torch.Generator().manual_seed(derive_seed(run_seed, "meta"))
    train_batches = PoolBatches(method.pool(), train, meta, settings.batch_size, train_gen, device)
    meta_batches = (SplitBatches(meta, settings.meta_batch_size, meta_gen, device)
                    if cls.uses_meta_batch else None)
    datasets = [t for split in (train, meta) for t in (split.x, split.y)]
    datasets += [ctx.train_set.index, ctx.meta_set.index]
    augment = scenario.augment(data, settings)
    augment_gens = (torch.Generator().manual_seed(derive_seed(run_seed, "augment-train")),
                    torch.Generator().manual_seed(derive_seed(run_seed, "augment-meta")))
    return RunSetup(method, ctx, train_batches, meta_batches, datasets, prepare_s, augment,
                    augment_gens, replicas)


OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch < 2.5


def _oom_message(e: BaseException, where: str, device: torch.device) -> str:
    """What ran out, where, and the memory it needed: the allocator's own line (CUDA's names the
    allocation it tried and the device's capacity) and, on CUDA, the peak allocated before the
    failure."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    peak = ""
    if device.type == "cuda":
        peak = (f"; {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB allocated at the "
                "peak before it failed")
    return (f"out of memory at {where} on {device} ({first}{peak}); use a smaller --set "
            "batch_size=... or profile, fewer --jobs, or another device")


def _free(device: torch.device) -> None:
    """Return the failed run's memory (after its exception, and the tensors its traceback
    held, are gone)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run(spec: RunSpec, scenario: Scenario, data: ScenarioData, device: torch.device,
        on_step: Callable[[int], None] | None = None, replicas=None) -> RunOutcome:
    """Train ``spec.method`` on ``data`` for ``settings.steps`` steps and evaluate it.

    Raises nothing for a diverging run (status ``diverged``) or one that runs out of memory
    (status ``oom``): it returns that status with the step and a hint.
    """
    started = time.perf_counter()
    settings = scenario.Settings(**spec.settings)
    failure = None
    try:
        setup = set_up(spec, scenario, data, device, replicas)
    except NonFiniteError as e:  # e.g. scores from a model trained on a non-finite Dm
        failure = ("diverged", f"{e} (in the method's prepare)")
    except (OUT_OF_MEMORY, MemoryError) as e:  # moving the data, or the method's prepare
        if replicas is not None:  # the other ranks wait in a collective: end them all
            raise
        failure = ("oom", _oom_message(e, "setting up (data to the device, the method's "
                                          "prepare)", device))
    if failure is not None:
        _free(device)
        return RunOutcome(status=failure[0], error=failure[1],
                          final_metric=float("nan"), best_metric=float("nan"),
                          time_per_step_ms=float("nan"), peak_mem_mb=float("nan"),
                          wall_s=time.perf_counter() - started,
                          curves=pd.DataFrame(columns=["step", "split", "metric_name", "value"]))
    method, model = setup.method, setup.ctx.model

    timer = StepTimer(device)
    peaks: list[float] = []
    curves: list[tuple[int, str, str, float]] = []
    sums: dict[str, Tensor | float] = {}
    count = 0
    status, error = "ok", ""
    weights: Tensor | None = None  # as of the last evaluation, which is the last step
    status_of_weights = ""
    target = target_count(spec, scenario, len(data.train))
    evals = {name: split for name, split in
             (("test", data.test), ("meta", data.meta), ("val", data.val)) if len(split)}
    try:
        for step in range(settings.steps):
            bt, bm = setup.next_batches()
            if step in METERED_STEPS:
                with peak_memory(device, method, bt, bm, exclude=setup.datasets) as mem:
                    logs = method.step(bt, bm)
                peaks.append(mem["peak_bytes"])
            else:
                with timer.time():
                    logs = method.step(bt, bm)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + (v.detach() if isinstance(v, Tensor) else v)
            count += 1
            done = step + 1
            if done % settings.eval_every == 0 or done == settings.steps:
                for k, v in sums.items():
                    value = float(v) / count
                    if not math.isfinite(value):
                        raise Diverged(f"training {k} became {value} by step {done}")
                    curves.append((done, "train", k, value))
                sums, count = {}, 0
                for name, split in evals.items():
                    curves.append((done, name, scenario.metric_name,
                                   evaluate(scenario, model, data, split, settings, device)))
                for k, value in method.diagnostics().items():
                    if not math.isfinite(value):
                        raise Diverged(f"diagnostic {k} became {value} by step {done}")
                    curves.append((done, "weights", k, value))
                weights = method.weights()
                if weights is not None:
                    for k, v in _group_means(weights, data.train.group, data.group_names).items():
                        curves.append((done, "weights", k, v))
                    stats = weight_stats(weights, data.train.group)
                    curves += [(done, "weights", k, stats[k])
                               for k in ("ess", "spread", "max", "auroc")]
                    status_of_weights = weights_status(stats, target, method.weights_relative)
            if on_step is not None:
                on_step(done)
    except (Diverged, NonFiniteError) as e:
        status = "diverged"
        lr_fields = [k for k in spec.hparams if k.startswith("lr") or k.endswith("_lr")]
        hint = " or ".join(["--set lr=..."] + [f"--set {spec.method}.{k}=..." for k in lr_fields])
        error = f"{e}; lower the learning rate ({hint})"
    except (OUT_OF_MEMORY, MemoryError) as e:
        if replicas is not None:  # one rank out of memory: stop every rank (torchrun does)
            raise
        status = "oom"
        error = _oom_message(e, f"step {step + 1}", device)
        curves = [c for c in curves if c[0] <= step]
    if status == "oom":
        _free(device)

    frame = pd.DataFrame(curves, columns=["step", "split", "metric_name", "value"])
    test = frame[(frame.split == "test")]["value"]
    weights_frame = None
    if weights is not None and status == "ok":
        weights_frame = pd.DataFrame({
            "index": np.arange(len(data.train)),
            "weight": weights.detach().float().cpu().numpy(),
            "group": np.asarray(data.group_names)[data.train.group.numpy()],
        })
        if data.categories is not None:
            weights_frame["category"] = list(data.categories)
    return RunOutcome(
        status=status, error=error,
        final_metric=float(test.iloc[-1]) if status == "ok" and len(test) else float("nan"),
        best_metric=float(test.max()) if len(test) else float("nan"),
        time_per_step_ms=timer.median_ms(),
        peak_mem_mb=max(peaks) / 2**20 if peaks else float("nan"),
        wall_s=time.perf_counter() - started,
        curves=frame, weights=weights_frame, prepare_s=setup.prepare_s,
        weights_status=status_of_weights if status == "ok" else "",
    )
