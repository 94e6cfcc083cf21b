"""Shared set-up for the step-cost benchmarks: each scenario's quick data, built once."""

from __future__ import annotations

import functools

import torch

from benchmarks.config import derive_seed
from benchmarks.data import load_source
from benchmarks.harness import RunSetup, set_up
from benchmarks.scenarios import get_scenario
from benchmarks.sweep import plan

BENCH_SCENARIOS = {"balancing": "mnist1d"}  # scenario -> the source of its quick profile


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.cache
def scenario_data(scenario: str, source: str, settings_key: str):
    import json

    scen = get_scenario(scenario)
    settings = scen.Settings(**json.loads(settings_key))
    return scen.build(load_source(source), settings, derive_seed(0, scenario, source))


def quick_setup(scenario: str, method: str, hparams: dict | None = None,
                settings: dict | None = None) -> RunSetup:
    """``method`` set up on the scenario's quick profile (seed 0), ready to step."""
    import json

    source = BENCH_SCENARIOS[scenario]
    spec = plan(scenario, source, "quick", [method], [0], settings or {},
                {method: hparams or {}})[0]
    data_settings = {k: v for k, v in spec.settings.items()}
    data = scenario_data(scenario, source, json.dumps(data_settings, sort_keys=True))
    return set_up(spec, get_scenario(scenario), data, device())


def pytest_sessionfinish(session, exitstatus):
    """Write COST.md (in $DPS_BENCH_OUT, default results/benchmarks/) from this run's step-cost
    measurements."""
    from pathlib import Path

    from .cost_table import OUT, write_cost_table
    from .test_step_cost import CHECKS, LIMIT_RATIO, RESULTS

    if RESULTS:
        write_cost_table(RESULTS, Path(OUT) / "COST.md", CHECKS, LIMIT_RATIO)


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
