"""CDS: the contrastive score prefers target-like examples; in-batch selection and its floor."""

from __future__ import annotations

import math

import pandas as pd
import torch
from toys import Net, bce

from benchmarks.cli import main
from methods import Batch, Context, get_method


def noisy_problem(n=200, n_meta=40):
    """Dt: first half labelled by x0 > 0, second half with flipped labels; Dm: clean."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] > 0).float()
    y[n // 2:] = 1 - y[n // 2:]
    xm = torch.randn(n_meta, 2, generator=g)
    model = Net(hidden=16)
    return Context(model=model, make_optimizer=lambda p: torch.optim.SGD(p, lr=0.5),
                   n_train=n, n_meta=n_meta, loss=bce, embed=lambda v: model.features(v).detach(),
                   device=torch.device("cpu"), num_classes=2,
                   generator=torch.Generator().manual_seed(1),
                   train_set=Batch(x, y, torch.arange(n)),
                   meta_set=Batch(xm, (xm[:, 0] > 0).float(), torch.arange(n_meta)))


def test_scores_prefer_the_examples_that_agree_with_the_meta_set():
    torch.manual_seed(0)
    ctx = noisy_problem()
    cls = get_method("cds")
    method = cls(ctx, cls.Hparams(beta=0.25, pretrain_steps=300, finetune_steps=200))
    before = [p.detach().clone() for p in ctx.model.parameters()]
    method.prepare()
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.model.parameters(), strict=True))
    clean, flipped = method.scores[:100], method.scores[100:]
    assert clean.mean() > flipped.mean()
    w = method.weights()
    assert w.sum() == math.floor(0.25 * 200)
    assert w[:100].sum() > 2 * w[100:].sum()


def test_each_batch_keeps_its_top_examples_with_a_floor():
    ctx = noisy_problem()
    cls = get_method("cds")
    method = cls(ctx, cls.Hparams(beta=0.01, r_floor=0.2))
    method.scores = torch.arange(200, dtype=torch.float)
    batch = Batch(ctx.train_set.x[:50], ctx.train_set.y[:50], torch.arange(150, 200))
    kept = method.keep(batch)
    assert len(kept) == 10  # ⌈max(0.01, 0.2)·50⌉
    assert sorted(batch.index[kept].tolist()) == list(range(190, 200))
    method.hp.r_floor = 0.0
    assert len(method.keep(batch)) == 1  # ⌈0.01·50⌉


def test_offline_scoring_time_is_recorded_apart(tmp_path):
    out = tmp_path / "r"
    assert main(["run", "--scenario", "balancing", "--source", "digits", "--methods", "cds",
                 "--steps", "10", "--set", "cds.pretrain_steps=50", "--out", str(out),
                 "--no-progress"]) == 0
    row = pd.read_csv(out / "runs.csv").iloc[0]
    assert row.prepare_s > 0 and row.status == "ok"
