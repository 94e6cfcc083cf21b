"""The registry, and each non-DPS baseline's sampling rule (its pool)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import methods
from benchmarks.harness import PoolBatches
from methods import Method, get_method, hparam_fields, list_methods

BASELINES = ["train_only", "mixing", "meta_only", "dup_meta", "random_select"]


def test_registry_lists_and_resolves_every_method():
    assert set(BASELINES) <= set(list_methods())
    for name in list_methods():
        cls = get_method(name)
        assert issubclass(cls, Method)
        assert dataclasses.is_dataclass(cls.Hparams)


def test_unknown_method_names_the_available_ones():
    with pytest.raises(methods.UnknownMethodError, match="available: train_only"):
        get_method("no_such_method")


def test_adding_a_method_is_one_registry_entry(monkeypatch, tmp_path):
    (tmp_path / "my_baseline.py").write_text(
        "from methods.erm import ERM\nclass Mine(ERM):\n    '''Mine.'''\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(methods.REGISTRY, "mine", "my_baseline:Mine")
    assert get_method("mine").__name__ == "Mine"
    assert "mine" in list_methods()


def epoch_entries(method, splits, batch=7):
    """All (from_meta, index) pairs drawn over exactly one epoch of the method's pool."""
    train, meta = splits
    pb = PoolBatches(method.pool(), train, meta, batch, torch.Generator().manual_seed(1),
                     torch.device("cpu"))
    n = len(pb.entries)
    drawn = []
    while len(drawn) < n:
        b = next(pb)
        fm = b.from_meta if b.from_meta is not None else torch.zeros(len(b), dtype=torch.bool)
        drawn += list(zip(fm.tolist(), b.index.tolist(), strict=True))
        # inputs must be the rows the indices name
        for k in range(len(b)):
            src = meta if fm[k] else train
            assert torch.equal(b.x[k], src.x[b.index[k]])
    return drawn[:n]


def test_train_only_draws_each_train_example_once_per_epoch(make_ctx, splits):
    m = get_method("train_only")(make_ctx())
    drawn = epoch_entries(m, splits)
    assert sorted(drawn) == [(False, i) for i in range(40)]
    assert m.uses_meta_batch is False


def test_mixing_draws_from_the_union(make_ctx, splits):
    drawn = epoch_entries(get_method("mixing")(make_ctx()), splits)
    assert sorted(drawn) == [(False, i) for i in range(40)] + [(True, j) for j in range(6)]


def test_meta_only_draws_only_meta(make_ctx, splits):
    drawn = epoch_entries(get_method("meta_only")(make_ctx()), splits)
    assert sorted(drawn) == [(True, j) for j in range(6)]


def test_dup_meta_copies_meta_until_as_many_as_train(make_ctx, splits):
    drawn = epoch_entries(get_method("dup_meta")(make_ctx()), splits)
    copies = round(40 / 6)
    assert sum(fm for fm, _ in drawn) == copies * 6
    assert sum(not fm for fm, _ in drawn) == 40
    assert all(sum(1 for fm, i in drawn if fm and i == j) == copies for j in range(6))


def test_random_select_keeps_meta_and_a_beta_fraction_of_train(make_ctx, splits):
    cls = get_method("random_select")
    m = cls(make_ctx(), cls.Hparams(beta=0.25))
    drawn = epoch_entries(m, splits)
    train_ids = sorted(i for fm, i in drawn if not fm)
    assert len(train_ids) == 10 == len(set(train_ids))
    assert sorted(i for fm, i in drawn if fm) == list(range(6))
    other = cls(make_ctx(seed=5), cls.Hparams(beta=0.25))
    assert not torch.equal(m.subset, other.subset)  # the subset comes from the method's RNG


def test_random_select_rejects_bad_beta():
    cls = get_method("random_select")
    with pytest.raises(ValueError, match="beta"):
        cls.Hparams(beta=1.5)
    assert hparam_fields(cls) == {"beta": 0.05}


def test_erm_step_lowers_the_loss_on_its_batch(make_ctx, splits):
    train, _ = splits
    m = get_method("train_only")(make_ctx())
    from methods import Batch

    b = Batch(train.x, train.y, torch.arange(40))
    first = float(m.step(b, None)["loss"])
    for _ in range(20):
        last = float(m.step(b, None)["loss"])
    assert last < first
    assert m.weights() is None
