"""The harness: determinism, metering, divergence, weights export."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pandas as pd
import pytest
import torch

import methods
from benchmarks import harness
from benchmarks.data import load_source
from benchmarks.metering import CpuTensorMemory, peak_memory, resident_storages
from benchmarks.scenarios import get_scenario
from benchmarks.sweep import plan
from methods.erm import ERM

MIB = 2**20


class Alloc64(ERM):
    """ERM whose step also holds a 64 MiB tensor while it trains."""

    def step(self, train, meta):
        scratch = torch.ones(16 * MIB)  # 16 Mi float32 = 64 MiB
        out = super().step(train, meta)
        scratch.add_(1.0)
        return out


@dataclass
class LrHparams:
    lr: float = 1e30


class Exploding(ERM):
    """ERM with an absurd learning rate of its own, to make the run diverge."""

    Hparams = LrHparams

    def __init__(self, ctx, hparams=None):
        super().__init__(ctx, hparams)
        self.opt = torch.optim.SGD(ctx.model.parameters(), lr=self.hp.lr)


class ConstantWeights(ERM):
    """ERM that reports weight 1 for minority and 0 for majority examples (via a fixed tensor)."""

    def __init__(self, ctx, hparams=None):
        super().__init__(ctx, hparams)
        self.w = torch.linspace(0, 1, ctx.n_train)

    def weights(self):
        return self.w


@pytest.fixture
def extra_methods(monkeypatch):
    for name, cls in {"alloc64": Alloc64, "exploding": Exploding, "constw": ConstantWeights}.items():
        monkeypatch.setitem(methods.REGISTRY, name, f"{__name__}:{cls.__name__}")


@pytest.fixture(scope="module")
def digits():
    scenario = get_scenario("balancing")
    source = load_source("digits")
    return scenario, source


def one_run(digits, method, steps=30, seed=0, **sets):
    scenario, source = digits
    spec = plan("balancing", "digits", "quick", [method], [seed], {"steps": steps,
                "eval_every": 10, **sets}, {})[0]
    settings = scenario.Settings(**spec.settings)
    data = scenario.build(source, settings, 123)
    return harness.run(spec, scenario, data, torch.device("cpu"))


def test_same_seed_gives_identical_curves_on_cpu(digits):
    a, b = one_run(digits, "mixing"), one_run(digits, "mixing")
    assert a.status == "ok"
    pd.testing.assert_frame_equal(a.curves, b.curves)
    assert set(a.curves.split) == {"train", "test", "meta", "val"}
    assert sorted(a.curves[a.curves.split == "test"].step) == [10, 20, 30]
    c = one_run(digits, "mixing", seed=1)
    assert not a.curves["value"].equals(c.curves["value"])


def test_step_that_allocates_64_mib_reports_at_least_64_mib_more(digits, extra_methods):
    plain, heavy = one_run(digits, "train_only", steps=5), one_run(digits, "alloc64", steps=5)
    assert heavy.peak_mem_mb - plain.peak_mem_mb >= 64
    assert heavy.peak_mem_mb - plain.peak_mem_mb < 64 + 1  # nothing else differs


def test_cpu_counter_sees_frees_and_resident_state():
    model = torch.nn.Linear(256, 256)  # 256 KiB of weights
    with peak_memory(torch.device("cpu"), model) as m:
        pass
    assert m["peak_bytes"] == pytest.approx((256 * 256 + 256) * 4)
    counter = CpuTensorMemory()
    with counter:
        for _ in range(5):  # each 4 MiB tensor is freed before the next one is made
            t = torch.zeros(MIB)
            del t
    assert 4 * MIB <= counter.peak < 2 * 4 * MIB
    assert counter.current == 0


def test_resident_storages_are_unique_and_follow_optimisers():
    model = torch.nn.Linear(10, 10)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 10)).sum().backward()
    opt.step()
    found = resident_storages(model, opt, {"again": model})  # the model twice, counted once
    # 110 floats each of parameters, gradients, Adam's exp_avg and exp_avg_sq; 2 step counters
    assert sum(s.nbytes() for s in found.values()) == 4 * 110 * 4 + 2 * 4


def test_step_time_excludes_evaluation(digits, monkeypatch):
    """No evaluation runs while a step is being timed, and every unmetered step is timed."""
    real_evaluate, real_time = harness.evaluate, harness.StepTimer.time
    timing = {"now": False, "evals": 0, "steps": 0}

    def evaluate(*args, **kwargs):
        assert not timing["now"], "evaluation inside a timed step"
        timing["evals"] += 1
        return real_evaluate(*args, **kwargs)

    @contextlib.contextmanager
    def watched(self):
        timing["now"], timing["steps"] = True, timing["steps"] + 1
        with real_time(self):
            yield
        timing["now"] = False

    monkeypatch.setattr(harness, "evaluate", evaluate)
    monkeypatch.setattr(harness.StepTimer, "time", watched)
    out = one_run(digits, "train_only", steps=20)
    assert timing["evals"] == 2 * 3 and timing["steps"] == 20 - len(harness.METERED_STEPS)
    assert out.time_per_step_ms > 0


def test_diverging_run_is_reported_not_raised(digits, extra_methods):
    out = one_run(digits, "exploding", steps=20)
    assert out.status == "diverged"
    assert "lower the learning rate" in out.error
    assert pd.isna(out.final_metric)


def test_weights_are_exported_with_groups(digits, extra_methods):
    out = one_run(digits, "constw", steps=10)
    w = out.weights
    assert list(w.columns) == ["index", "weight", "group"]
    assert set(w.group) == {"minority", "majority"}
    assert w.weight.iloc[-1] == pytest.approx(1.0)
    rows = out.curves[out.curves.split == "weights"]
    assert set(rows.metric_name) == {"mean_weight:minority", "mean_weight:majority", "ess", "spread",
                                     "max", "auroc"}
    last = rows[rows.step == rows.step.max()].set_index("metric_name")["value"]
    v = w.weight.to_numpy()  # 0, 1/89, ..., 1: ESS = (Σw)²/Σw² = 3N/4 + O(1)
    assert last["ess"] == pytest.approx(v.sum() ** 2 / (v**2).sum())
    assert last["spread"] == pytest.approx(v.std())
    assert out.weights_status == "ok"


def test_gradient_freed_and_reallocated_by_a_step_is_counted_once():
    model = torch.nn.Linear(2048, 2048, bias=False)  # 16 MiB of weights
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 2048)
    for metered in (False, True):  # the second step starts with a 16 MiB gradient to free
        ctx = peak_memory(torch.device("cpu"), model, opt) if metered else contextlib.nullcontext({})
        with ctx as m:
            opt.zero_grad(set_to_none=True)
            model(x).sum().backward()
            opt.step()
    assert 32 * MIB <= m["peak_bytes"] < 33 * MIB  # weights + one gradient, not two


def test_objects_with_call_are_walked_for_resident_tensors():
    class Holder:
        def __init__(self):
            self.table = torch.zeros(MIB)  # 4 MiB

        def __call__(self):
            return self.table

    found = resident_storages({"w": Holder(), "fn": lambda: None})
    assert sum(s.nbytes() for s in found.values()) == 4 * MIB


def test_methods_on_the_same_pool_see_the_same_train_batches(digits):
    scenario, source = digits
    orders = []
    for method in ("train_only", "bads"):  # bads also draws Bm every step; train_only does not
        spec = plan("balancing", "digits", "quick", [method], [0], {}, {})[0]
        data = scenario.build(source, scenario.Settings(**spec.settings), 7)
        setup = harness.set_up(spec, scenario, data, torch.device("cpu"))
        orders.append(torch.cat([setup.next_batches()[0].index for _ in range(12)]))
    assert len(orders[0]) > 3 * len(data.train)  # several epochs
    assert torch.equal(orders[0], orders[1])
