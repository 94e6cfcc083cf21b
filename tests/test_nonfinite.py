"""Non-finite values are never swallowed: a NaN in Dm (or an empty meta batch) must surface as a
non-finite logged value or a NonFiniteError, so that the harness records the run as diverged,
never as ok with finite logs (e.g. NaN sent to a uniform fallback). Every registered method."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn
from toys import bce, methods_without_requirements

from benchmarks import harness
from benchmarks.data import load_source
from benchmarks.harness import PoolBatches, SplitBatches
from benchmarks.scenarios import Split, get_scenario
from benchmarks.sweep import plan
from methods import Batch, Context, NonFiniteError, get_method

# never read Dm at all, so a NaN there cannot reach them (blo_frozen: no look-ahead, pool Dt)
BLIND_TO_DM = {"train_only", "blo_frozen"}


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
        self.head = nn.Linear(6, 1)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def problem(meta_x: torch.Tensor):
    g = torch.Generator().manual_seed(0)
    n_t, n_m = 60, len(meta_x)
    train = Split(torch.randn(n_t, 4, generator=g), (torch.arange(n_t) < 10).float(),
                  (torch.arange(n_t) >= 10).long())
    meta = Split(meta_x, (torch.arange(n_m) % 2).float())
    torch.manual_seed(0)
    model = Small()
    ctx = Context(model=model, make_optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                  n_train=n_t, n_meta=n_m, loss=bce, embed=lambda x: model.features(x).detach(),
                  device=torch.device("cpu"), num_classes=2,
                  generator=torch.Generator().manual_seed(1),
                  train_set=Batch(train.x, train.y, torch.arange(n_t)),
                  meta_set=Batch(meta.x, meta.y, torch.arange(n_m)), total_steps=3)
    return ctx, train, meta


def small_hparams(name: str, **overrides):
    """Defaults, with the offline scoring of the selection baselines cut to a few steps."""
    cls = get_method(name)
    fields = {f.name for f in dataclasses.fields(cls.Hparams)}
    fast = {k: 5 for k in ("pretrain_steps", "finetune_steps", "ref_steps") if k in fields}
    return cls.Hparams(**{**cls.fixed, **fast, **overrides})


def first_steps(name: str, ctx, train, meta, steps: int = 3, **overrides) -> list[float]:
    """Every value logged or diagnosed over ``steps`` steps (raises NonFiniteError through)."""
    cls = get_method(name)
    method = cls(ctx, small_hparams(name, **overrides))
    method.prepare()
    tb = PoolBatches(method.pool(), train, meta, 20, torch.Generator().manual_seed(2), ctx.device)
    mb = SplitBatches(meta, 10, torch.Generator().manual_seed(3), ctx.device)
    values = []
    for _ in range(steps):
        logs = method.step(next(tb), next(mb) if cls.uses_meta_batch else None)
        values += [float(v) for v in logs.values()]
    values += list(method.diagnostics().values())
    return values


# mwn's other form and l2rw's other all-clipped rule (every method's defaults: the conformance
# suite's rule non-finite-surfaces, tests/test_conformance.py)
VARIANTS = [("mwn", {"normalize": True, "detach_input": False}),
            ("l2rw", {"all_clipped": "uniform"})]


@pytest.mark.parametrize(("name", "overrides"), VARIANTS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}"
                              for n, o in VARIANTS])
def test_a_nan_in_dm_surfaces_as_non_finite(name, overrides):
    """The NaN must show in a logged value (so the harness records the run as diverged) and
    must reach the model (no fallback that trains on with finite but meaningless weights)."""
    ctx, train, meta = problem(torch.full((12, 4), math.nan))
    try:
        values = first_steps(name, ctx, train, meta, **overrides)
    except NonFiniteError:
        return  # surfaced before any step could hide it
    params_finite = all(bool(torch.isfinite(p).all()) for p in ctx.model.parameters())
    if name in BLIND_TO_DM:
        assert all(math.isfinite(v) for v in values) and params_finite
    else:
        assert not all(math.isfinite(v) for v in values), f"{name} hid a NaN in Dm"
        assert not params_finite, f"{name} trained on finite values despite a NaN in Dm"


@pytest.mark.parametrize("name", [m for m in methods_without_requirements() if get_method(m).uses_meta_batch])
def test_an_empty_meta_batch_is_an_error_or_non_finite(name):
    ctx, train, meta = problem(torch.randn(12, 4))
    method = get_method(name)(ctx, small_hparams(name))
    method.prepare()
    empty = Batch(meta.x[:0], meta.y[:0], torch.arange(0))
    try:
        logs = method.step(Batch(train.x[:20], train.y[:20], torch.arange(20)), empty)
    except ValueError as e:
        assert "non-empty meta batch" in str(e)
        return
    assert not all(math.isfinite(float(v)) for v in logs.values())


@pytest.mark.parametrize("name", ["l2rw", "mwn", "cds", "classact"])
def test_the_harness_records_a_nan_in_dm_as_diverged(name):
    scenario, source = get_scenario("balancing"), load_source("digits")
    spec = plan("balancing", "digits", "quick", [name], [0],
                {"steps": 20, "eval_every": 10},
                {name: {k: 5 for k in ("pretrain_steps", "finetune_steps", "ref_steps")
                        if k in {f.name for f in dataclasses.fields(get_method(name).Hparams)}}})[0]
    data = scenario.build(source, scenario.Settings(**spec.settings), 123)
    poisoned = Split(torch.full_like(data.meta.x, math.nan), data.meta.y)
    data = dataclasses.replace(data, meta=poisoned)
    out = harness.run(spec, scenario, data, torch.device("cpu"))
    assert out.status == "diverged" and ("non-finite" in out.error or "nan" in out.error), out.error
