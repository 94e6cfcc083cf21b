"""CDS and ClassAct: scores prefer target-like examples; in-batch selection and its floor."""

from __future__ import annotations

import math

import pandas as pd
import pytest
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


def imbalanced_problem(n_major=190, n_minor=10, n_meta=40):
    """Dt: class 1 (x0 > 0) is the rare one; Dm: balanced. Both labelled by the sign of x0."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_major + n_minor, 2, generator=g)
    x[:, 0] = x[:, 0].abs() * torch.cat([-torch.ones(n_major), torch.ones(n_minor)])
    xm = torch.randn(n_meta, 2, generator=g)
    model = Net(hidden=16)
    n = n_major + n_minor
    return Context(model=model, make_optimizer=lambda p: torch.optim.SGD(p, lr=0.5),
                   n_train=n, n_meta=n_meta, loss=bce, embed=lambda v: model.features(v).detach(),
                   device=torch.device("cpu"), num_classes=2,
                   generator=torch.Generator().manual_seed(1),
                   train_set=Batch(x, (x[:, 0] > 0).float(), torch.arange(n)),
                   meta_set=Batch(xm, (xm[:, 0] > 0).float(), torch.arange(n_meta)))


def classact(ctx, **hp):
    cls = get_method("classact")
    return cls(ctx, cls.Hparams(**{"proxy_steps": 200, "meta_steps": 200, **hp}))


def test_classact_scores_the_held_out_minority_above_the_majority():
    torch.manual_seed(0)
    ctx = imbalanced_problem()
    before = [p.detach().clone() for p in ctx.model.parameters()]
    method = classact(ctx, beta=0.05)
    method.prepare()
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.model.parameters(), strict=True))
    major, minor = method.scores[:190], method.scores[190:]
    assert minor.mean() > major.mean() + 0.1
    w = method.weights()
    assert w.sum() == math.floor(0.05 * 200)
    assert w[190:].sum() >= 4  # chance would put 0.5 of the 10 minority points in the top 10


def test_classact_scores_prefer_clean_labels_over_flipped_ones():
    torch.manual_seed(0)
    method = classact(noisy_problem(), beta=0.25)
    method.prepare()
    assert method.scores[:100].mean() > method.scores[100:].mean()


def test_classact_proxies_never_score_a_point_they_trained_on():
    """A duplicated point with a unique label is predicted well only by a proxy that saw it."""
    torch.manual_seed(0)
    ctx = noisy_problem(n=200)
    method = classact(ctx, beta=0.25, folds=2, meta_steps=0)
    seen: list[set[int]] = []
    import methods.classact as mod

    def spy(model, c, data, steps, batch):
        seen.append(set(data.index.tolist()))
        return model

    def scored(model, c, data):
        scored_sets.append((len(seen), set(data.index.tolist())))
        return torch.zeros(len(data))

    scored_sets: list[tuple[int, set[int]]] = []
    orig = mod.train_copy, mod.losses_of
    mod.train_copy, mod.losses_of = spy, scored
    try:
        method.prepare()
    finally:
        mod.train_copy, mod.losses_of = orig
    # seen[0] is Dm (target proxy); each fold proxy's training set is disjoint from what it scores
    fold_pairs = [(seen[k - 1], s) for k, s in scored_sets if k > 1]
    assert len(fold_pairs) == 2
    for trained, scored_idx in fold_pairs:
        assert trained.isdisjoint(scored_idx) and trained | scored_idx == set(range(200))


def test_classact_rejects_a_single_fold():
    with pytest.raises(ValueError, match="folds must be at least 2"):
        get_method("classact").Hparams(folds=1)
