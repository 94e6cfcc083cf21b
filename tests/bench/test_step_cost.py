"""Cost of one training step of every registered method, against BADS's physical limit.

Run with ``tox -e bench`` (pytest-benchmark; not part of the unit tests). For each scenario's
quick model and data, each case times ``method.step`` alone (batches drawn in the set-up of
each round, CUDA synchronised), with warm-up rounds and the median over many rounds, and records
the step's peak memory (the harness's metering) in ``extra_info``.

The limit of a BADS step is one forward and backward pass over Bt ∪ Bm plus the weight network:
it is benchmarked directly as a plain SGD step (``train_only``) on |Bt| + |Bm| examples, and the
last test checks, within this run, BADS time ≤ 1.15x and BADS peak memory ≤ 1.15x the limit's,
timing the two in alternating blocks of steps (``blocked.py``).
``conftest.pytest_sessionfinish`` writes results/benchmarks/COST.md from the measurements.
"""

from __future__ import annotations

import os

import pytest
import torch

from methods import get_method, list_methods

from .blocked import blocked_medians, sync
from .conftest import BENCH_SCENARIOS, device, metered_step, quick_setup, source_label

pytestmark = pytest.mark.bench

ROUNDS, WARMUP = int(os.environ.get("DPS_BENCH_ROUNDS", 200)), int(os.environ.get("DPS_BENCH_WARMUP", 20))
LIMIT_RATIO = 1.15
# DPS_BENCH_NO_BOUNDS=1: record the ratio checks without failing on them (the CPU test of the GPU
# script, whose few rounds measure nothing stable)
ENFORCE = os.environ.get("DPS_BENCH_NO_BOUNDS", "0") != "1"
BLOCKS = int(os.environ.get("DPS_BENCH_BLOCKS", 20))
BLOCK_STEPS = int(os.environ.get("DPS_BENCH_BLOCK_STEPS", 40))
RESULTS: dict[tuple[str, str], dict] = {}  # (scenario, case) -> measurements
CHECKS: dict[str, dict] = {}  # scenario -> the BADS-limit check's measurements


def cases() -> list[tuple[str, str, dict]]:
    """Every registered method, each followed by what it is compared with, so that compared
    cases are timed back to back, in as close to the same machine state as a sequential run
    allows: bads by its limit, each BLO case (torch.func, the default) by the same case on
    ``higher``."""
    out = []
    for name in list_methods():
        if get_method(name).requires:  # askllm_o needs a language model: not on these models
            continue
        out.append((name, name, {}))
        if name == "bads":
            out.append(("bads_limit", "train_only", {}))
        if name in ("blo", "l2rw", "mwn"):
            out.append((f"{name}_higher", name, {"backend": "higher"}))
        if name == "blo":
            for k in (2, 5):
                out += [(f"blo_k{k}", "blo", {"k": k}),
                        (f"blo_k{k}_higher", "blo", {"k": k, "backend": "higher"})]
    return out


def limit_settings(scenario: str) -> dict:
    """train_only's batch = |Bt| + |Bm| of a BADS step on this scenario's quick profile."""
    probe = quick_setup(scenario, "bads")
    return {"batch_size": probe.train_batches.sampler.batch + probe.meta_batches.sampler.batch}


@pytest.mark.parametrize("scenario", list(BENCH_SCENARIOS))
@pytest.mark.parametrize("case, method, hparams", cases(), ids=[c[0] for c in cases()])
def test_step_cost(benchmark, scenario, case, method, hparams):
    settings = limit_settings(scenario) if case == "bads_limit" else None
    setup = quick_setup(scenario, method, hparams, settings)
    dev = device()
    peak_bytes, bt, bm = metered_step(setup)

    def step(bt, bm):
        setup.method.step(bt, bm)
        sync(dev)

    benchmark.extra_info.update(
        scenario=scenario, source=source_label(scenario), case=case, method=method,
        hparams=hparams, device=str(dev), peak_mb=peak_bytes / 2**20,
        prepare_s=setup.prepare_s, batch=len(bt), meta_batch=len(bm) if bm is not None else 0,
        threads=torch.get_num_threads())
    benchmark.pedantic(step, setup=lambda: (setup.next_batches(), {}), rounds=ROUNDS,
                       warmup_rounds=WARMUP)
    if benchmark.stats is not None:  # None under --benchmark-disable
        RESULTS[(scenario, case)] = {"ms": benchmark.stats.stats.median * 1e3,
                                     **benchmark.extra_info}


@pytest.mark.parametrize("scenario", list(BENCH_SCENARIOS))
def test_bads_costs_at_most_its_limit(scenario):
    """BADS step ≤ 1.15x its limit in time and in peak memory.

    Time: the two cases take turns in blocks of consecutive steps (``blocked.py``), so that the
    ratio is not the machine's drift between two sequential benchmarks. Memory: the metering."""
    setups = {"bads_limit": quick_setup(scenario, "train_only", settings=limit_settings(scenario)),
              "bads": quick_setup(scenario, "bads")}
    peak = {name: metered_step(setup)[0] for name, setup in setups.items()}
    ms = blocked_medians(setups, BLOCKS, BLOCK_STEPS)
    time_ratio = ms["bads"] / ms["bads_limit"]
    mem_ratio = peak["bads"] / peak["bads_limit"]
    CHECKS[scenario] = {"ms": ms, "time_ratio": time_ratio, "mem_ratio": mem_ratio,
                        "blocks": BLOCKS, "block_steps": BLOCK_STEPS}
    if ENFORCE:
        assert time_ratio <= LIMIT_RATIO, f"BADS step {time_ratio:.3f}x its limit's time"
        assert mem_ratio <= LIMIT_RATIO, f"BADS step {mem_ratio:.3f}x its limit's peak memory"
