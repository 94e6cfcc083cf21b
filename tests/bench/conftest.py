"""Shared set-up for the step-cost benchmarks: each scenario's data, built once.

``DPS_BENCH_PROFILE`` chooses the models: ``quick`` (default: each scenario's quick profile on
its embedded data) or ``paper`` (the paper-profile models and batch sizes: balancing's LeNet-5 on
28x28 MNIST, from the real files when $DPS_DATA_DIR has them, else synthetic pixels of the same
shape and counts, which cost the same per step). ``DPS_BENCH_DEVICE`` is auto (CUDA when
available), cpu or cuda (an error when there is none: ``tox -e bench-gpu`` sets it).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

from benchmarks.config import derive_seed
from benchmarks.data import Labeled, SourceData, load_source
from benchmarks.errors import DataError
from benchmarks.harness import RunSetup, set_up
from benchmarks.scenarios import get_scenario
from benchmarks.sweep import plan

PROFILE = os.environ.get("DPS_BENCH_PROFILE", "quick")
# scenario -> (source, profile) of the models the benchmarks time
BENCH_SCENARIOS = {"quick": {"balancing": ("mnist1d", "quick")},
                   "paper": {"balancing": ("mnist", "paper")}}[PROFILE]


def device() -> torch.device:
    wanted = os.environ.get("DPS_BENCH_DEVICE", "auto")
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DPS_BENCH_DEVICE=cuda (tox -e bench-gpu) but torch sees no CUDA "
                           f"device (torch {torch.__version__}); run it on a machine with a GPU")
    return torch.device(wanted)


def synthetic_like_mnist() -> SourceData:
    """MNIST's shapes and class counts with random pixels: the step cost is that of the real data."""
    g = np.random.default_rng(0)
    train_y = np.repeat(np.arange(10), 6000)
    test_y = np.repeat(np.arange(10), 1000)
    return SourceData("mnist", Labeled(g.random((60000, 1, 28, 28), dtype=np.float32), train_y),
                      Labeled(g.random((10000, 1, 28, 28), dtype=np.float32), test_y))


@functools.cache
def load_bench_source(source: str) -> tuple[SourceData, str]:
    """The source's data and how to describe it (``mnist (synthetic pixels)`` without the files)."""
    try:
        return load_source(source), source
    except DataError:
        if source != "mnist":
            raise
        return synthetic_like_mnist(), "mnist (synthetic pixels)"


@functools.cache
def scenario_data(scenario: str, source: str, settings_key: str):
    import json

    scen = get_scenario(scenario)
    settings = scen.Settings(**json.loads(settings_key))
    return scen.build(load_bench_source(source)[0], settings, derive_seed(0, scenario, source))


def source_label(scenario: str) -> str:
    return load_bench_source(BENCH_SCENARIOS[scenario][0])[1]


def quick_setup(scenario: str, method: str, hparams: dict | None = None,
                settings: dict | None = None) -> RunSetup:
    """``method`` set up on the scenario's benchmark profile (seed 0), ready to step."""
    import json

    source, profile = BENCH_SCENARIOS[scenario]
    spec = plan(scenario, source, profile, [method], [0], settings or {},
                {method: hparams or {}})[0]
    data_settings = {k: v for k, v in spec.settings.items()}
    data = scenario_data(scenario, source, json.dumps(data_settings, sort_keys=True))
    return set_up(spec, get_scenario(scenario), data, device())


def pytest_sessionfinish(session, exitstatus):
    """Write COST.md ($DPS_BENCH_COST, in $DPS_BENCH_OUT, default results/benchmarks/) from this
    run's step-cost and peer measurements."""
    from pathlib import Path

    from .cost_table import COST_FILE, OUT, write_cost_table
    from .test_peers import PEER_BOUND, PEERS
    from .test_step_cost import CHECKS, LIMIT_RATIO, RESULTS

    if RESULTS or PEERS:
        write_cost_table(RESULTS, Path(OUT) / COST_FILE, CHECKS, LIMIT_RATIO, PEERS, PEER_BOUND)


def metered_step(setup: RunSetup) -> tuple[int, object, object]:
    """Peak bytes of one step after three unmetered ones (so optimiser state exists), with the
    metered step's batches."""
    from benchmarks.metering import peak_memory

    for _ in range(3):
        setup.method.step(*setup.next_batches())
    bt, bm = setup.next_batches()
    with peak_memory(device(), setup.method, bt, bm, exclude=setup.datasets) as mem:
        setup.method.step(bt, bm)
    return mem["peak_bytes"], bt, bm
