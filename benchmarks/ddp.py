"""One large run over several processes: ``torchrun --nproc-per-node N -m benchmarks.cli run ...
--ddp``.

torchrun starts N processes (ranks) and sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; each
joins torch.distributed's process group (gloo on the CPU, nccl on CUDA, one GPU per rank by
LOCAL_RANK). Every rank builds the same data and model from the same seeds and draws the same
global batches; the harness gives each rank its 1/N shard of every Bt and Bm, and the method
(``Method.supports_replicas``: ``bads`` and its controls) sums its gradients over the ranks, so
all ranks take the step one process would take with the global batch (``tests/test_ddp.py``
checks this against a single process). Rank 0 writes the run to the store; the runs of a sweep
are trained one after another, each across all ranks.

Why not ``torch.nn.parallel.DistributedDataParallel``: DDP synchronises gradients from hooks that
its own ``forward`` arms, but BADS takes θ's output and embedding from one pass through the
model's parts (``Context.forward_features``) and φ's gradient in closed form, not by autograd;
the explicit all-reduce of ``methods.replicas.Replicas`` is the same arithmetic (DDP averages
the ranks' gradients of a per-rank mean; BADS sums the ranks' shares of the global-batch sum).
Methods without ``supports_replicas`` are refused with that message, ``blo`` included: its
look-ahead would need the all-reduce inside the unrolled inner step (higher's or torch.func's),
which is not written yet.
"""

from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist

from methods import get_method
from methods.replicas import Replicas

from .config import ConfigError, RunSpec
from .errors import DpsBenchError
from .harness import run
from .scenarios import get_scenario
from .store import Store
from .sweep import (
    RunContext,
    SweepResult,
    code_sha,
    git_sha,
    outcome_row,
    resolve_device,
    scenario_data,
    usable_cpus,
)


def init_from_torchrun(device: str) -> tuple[Replicas, torch.device]:
    """Join the process group torchrun describes; (replicas, this rank's device)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise DpsBenchError("--ddp runs under torchrun, which starts one process per rank: "
                            "torchrun --nproc-per-node 2 -m benchmarks.cli run ... --ddp")
    cuda = resolve_device(device).type == "cuda"  # a bad or unavailable name: its ConfigError
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Replicas(dist.get_world_size(), dist.get_rank()), dev


def check_shardable(spec: RunSpec, world: int) -> None:
    """ConfigError unless the method supports replicas and the batches split evenly."""
    cls = get_method(spec.method)
    if not cls.supports_replicas:
        raise ConfigError(f"{spec.method} cannot train one run across processes (--ddp): only "
                          "methods with supports_replicas do (bads and its controls); run it "
                          "without --ddp")
    for name in ("batch_size", "meta_batch_size"):
        size = spec.settings.get(name)
        if size is not None and size % world:
            raise ConfigError(f"--ddp over {world} processes needs {name} divisible by {world} "
                              f"(it is {size}); --set {name}=...")


def run_ddp(specs: list[RunSpec], out: str, data_dir: str | None, device: str,
            threads: int | None, force: bool = False) -> SweepResult:
    """Train ``specs`` one after another, each across every rank; rank 0 stores them."""
    replicas, dev = init_from_torchrun(device)
    torch.set_num_threads(threads or 1)
    for spec in specs:
        check_shardable(spec, replicas.world)
    lead = replicas.rank == 0
    store = Store(out)
    if lead:
        store.prepare()
    done = [set() if force else store.completed()] if lead else [None]
    dist.broadcast_object_list(done)  # one view of what is complete, rank 0's
    todo = [s for s in specs if s.run_id not in done[0]]
    context = RunContext(str(out), data_dir, f"{dev} x{replicas.world} ddp", threads or 1, 1,
                         force, code_sha(), git_sha(), usable_cpus())
    failed: list[str] = []
    for i, spec in enumerate(todo, 1):
        # rank 0 holds the run's lease (another sweep on the same store leaves it alone) and
        # tells the others whether to train it
        claimed = [store.claim(spec.run_id, force=force)] if lead else [None]
        dist.broadcast_object_list(claimed)
        if not claimed[0]:
            if lead:
                print(f"[{i}/{len(todo)}] {spec.method} seed={spec.seed}: left to another "
                      "process (or complete)", flush=True)
            continue
        scenario = get_scenario(spec.scenario)
        data = scenario_data(spec, data_dir)
        started = time.perf_counter()
        outcome = run(spec, scenario, data, dev, replicas=replicas)
        if lead:
            row = outcome_row(spec, dev, outcome, context, os.getloadavg()[0])
            row["device"] = context.device
            store.write(row, outcome.curves, outcome.weights)
            print(f"[{i}/{len(todo)}] {spec.method} seed={spec.seed}: {outcome.status} "
                  f"{scenario.metric_name}={outcome.final_metric:.4f} "
                  f"({outcome.time_per_step_ms:.2f} ms/step on each of {replicas.world} ranks, "
                  f"{time.perf_counter() - started:.1f} s)", flush=True)
            if outcome.status != "ok":
                failed.append(f"{spec.method} seed={spec.seed}: {outcome.error}")
            store.release(spec.run_id)
    if lead:
        store.refresh_views()
    dist.barrier()
    dist.destroy_process_group()
    return SweepResult(len(todo), len(specs) - len(todo), failed)
