"""The data protocol of the ``balancing`` scenario: Dt, Dm, validation and test, groups, model.

Synthetic sources encode each example's identity in a pixel so splits can be traced back to the
pool; the real offline sources (``digits``, ``mnist1d``) check the per-source defaults.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.data import load_source
from benchmarks.data.base import Labeled, SourceData
from benchmarks.errors import ConfigError
from benchmarks.scenarios import ScenarioData, Split, get_scenario

MINORITY, MAJORITY = 4, 9
PER_CLASS_TRAIN, PER_CLASS_TEST = 80, 30
TEST_OFFSET = 100_000


def _synthetic(name: str = "synthetic", per_class: int = PER_CLASS_TRAIN,
               per_class_test: int = PER_CLASS_TEST, seed: int = 0) -> SourceData:
    """Random 1x8x8 images of 10 classes; pixel [0, 0, 0] holds the example's id (train: its
    pool index; test: TEST_OFFSET + its pool index)."""
    rng = np.random.default_rng(seed)

    def pool(n_per_class: int, offset: int) -> Labeled:
        y = rng.permutation(np.repeat(np.arange(10, dtype=np.int64), n_per_class))
        x = rng.normal(size=(len(y), 1, 8, 8)).astype(np.float32)
        x[:, 0, 0, 0] = offset + np.arange(len(y), dtype=np.float32)
        return Labeled(x, y)

    return SourceData(name, pool(per_class, 0), pool(per_class_test, TEST_OFFSET))


def ids(split: Split) -> np.ndarray:
    return split.x[:, 0, 0, 0].numpy().astype(np.int64)


@pytest.fixture(scope="module")
def scenario():
    return get_scenario("balancing")


@pytest.fixture(scope="module")
def source() -> SourceData:
    return _synthetic()


SMALL = {"n_majority": 40, "n_minority": 6, "meta_per_class": 10}


def _build(scenario, source, seed=0, profile="quick", **overrides) -> ScenarioData:
    settings = scenario.resolve_settings(source.name, profile, {**SMALL, **overrides})
    return scenario.build(source, settings, seed)


def _class_counts(split: Split) -> tuple[int, int]:
    minority = int((split.y == 1).sum())
    return minority, len(split) - minority


# ------------------------------------------------------------------------------- synthetic


def test_counts_and_sizes(scenario, source):
    data = _build(scenario, source)
    assert _class_counts(data.train) == (6, 40)
    assert _class_counts(data.meta) == (10, 10)
    assert _class_counts(data.val) == (10, 10)
    assert len(data.val) == len(data.meta) == 20
    assert data.num_classes == 2
    assert data.input_shape == (1, 8, 8)
    for split in (data.train, data.meta, data.val, data.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.float32
        assert split.x.shape[0] == split.y.shape[0]


@pytest.mark.parametrize("meta", [5, 10, 20])
def test_meta_per_class_and_val_size(scenario, source, meta):
    data = _build(scenario, source, meta_per_class=meta)
    assert _class_counts(data.meta) == (meta, meta)
    assert _class_counts(data.val) == (meta, meta)
    assert _class_counts(data.train) == (6, 40)


def test_val_per_class_override(scenario, source):
    data = _build(scenario, source, val_per_class=7)
    assert _class_counts(data.val) == (7, 7)
    assert _class_counts(data.meta) == (10, 10)


def test_labels_groups_and_provenance(scenario, source):
    data = _build(scenario, source)
    pool_y = source.train.y
    for split in (data.train, data.meta, data.val):
        idx = ids(split)
        assert idx.max() < len(pool_y)  # drawn from the train pool
        np.testing.assert_array_equal(source.train.x[idx], split.x.numpy())
        classes = pool_y[idx]
        assert set(classes.tolist()) == {MINORITY, MAJORITY}
        np.testing.assert_array_equal(split.y.numpy(), (classes == MINORITY).astype(np.float32))
    assert data.meta.group is None and data.val.group is None
    group = data.train.group.numpy()
    np.testing.assert_array_equal(group, np.where(pool_y[ids(data.train)] == MINORITY, 0, 1))
    np.testing.assert_array_equal(group == 0, data.train.y.numpy() == 1.0)
    assert data.group_names == ("minority", "majority")
    assert data.group_names[0] == "minority"


def test_splits_pairwise_disjoint(scenario, source):
    data = _build(scenario, source)
    sets = {name: ids(getattr(data, name)) for name in ("train", "meta", "val")}
    for name, s in sets.items():
        assert len(np.unique(s)) == len(s), f"{name} repeats an example"
    assert not set(sets["train"]) & set(sets["meta"])
    assert not set(sets["train"]) & set(sets["val"])
    assert not set(sets["meta"]) & set(sets["val"])
    test_ids = ids(data.test)
    assert (test_ids >= TEST_OFFSET).all()  # test comes only from the test pool


def test_test_set_is_every_test_example_of_the_two_classes(scenario, source):
    data = _build(scenario, source)
    test_y = source.test.y
    expected = {TEST_OFFSET + int(i) for i in np.flatnonzero(np.isin(test_y, [MINORITY, MAJORITY]))}
    got = ids(data.test)
    assert len(got) == len(expected) == 2 * PER_CLASS_TEST
    assert set(got.tolist()) == expected
    np.testing.assert_array_equal(
        data.test.y.numpy(), (test_y[got - TEST_OFFSET] == MINORITY).astype(np.float32))
    assert _class_counts(data.test) == (PER_CLASS_TEST, PER_CLASS_TEST)
    assert data.test.group is None


def test_other_class_pair(scenario, source):
    data = _build(scenario, source, minority=1, majority=7)
    for split in (data.train, data.meta, data.val):
        classes = source.train.y[ids(split)]
        assert set(classes.tolist()) == {1, 7}
        np.testing.assert_array_equal(split.y.numpy(), (classes == 1).astype(np.float32))
    assert _class_counts(data.train) == (6, 40)
    assert set(source.test.y[ids(data.test) - TEST_OFFSET].tolist()) == {1, 7}


def test_seeds(scenario, source):
    a, b = _build(scenario, source, seed=3), _build(scenario, source, seed=3)
    for name in ("train", "meta", "val", "test"):
        sa, sb = getattr(a, name), getattr(b, name)
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
    assert torch.equal(a.train.group, b.train.group)
    c = _build(scenario, source, seed=4)
    assert set(ids(c.train)) != set(ids(a.train))
    assert set(ids(c.meta)) != set(ids(a.meta))
    assert set(ids(c.test)) == set(ids(a.test))  # test is the whole test pool, seed-independent


def test_examples_are_shuffled(scenario, source):
    # Dt is not ordered minority-first / majority-last (the draw interleaves them).
    data = _build(scenario, source, n_minority=20)
    y = data.train.y.numpy()
    assert not (np.all(y[:20] == 1) or np.all(y[-20:] == 1))


def test_n_majority_minus_one_keeps_all_remaining(scenario, source):
    data = _build(scenario, source, n_majority=-1)
    # 80 nines in the pool, 10 go to Dm and 10 to validation.
    assert _class_counts(data.train) == (6, PER_CLASS_TRAIN - 20)
    every_nine = set(np.flatnonzero(source.train.y == MAJORITY).tolist())
    used = set(ids(data.train)) | set(ids(data.meta)) | set(ids(data.val))
    assert every_nine <= used


@pytest.mark.parametrize(("overrides", "klass", "asked"), [
    ({"n_majority": 100}, MAJORITY, 120),
    ({"n_minority": 61}, MINORITY, 81),
    ({"meta_per_class": 41}, MINORITY, 88),
])
def test_too_many_examples(scenario, source, overrides, klass, asked):
    with pytest.raises(ConfigError) as err:
        _build(scenario, source, **overrides)
    message = str(err.value)
    assert f"has {PER_CLASS_TRAIN} training examples of class {klass}" in message
    assert f"asks for {asked}" in message
    assert "'synthetic'" in message and "--set" in message


def test_n_majority_minus_one_needs_at_least_one_left(scenario, source):
    keep = np.flatnonzero(source.train.y != MAJORITY)
    keep = np.sort(np.concatenate([keep, np.flatnonzero(source.train.y == MAJORITY)[:20]]))
    few_nines = SourceData("few-nines", Labeled(source.train.x[keep], source.train.y[keep]),
                           source.test)
    with pytest.raises(ConfigError, match=r"has 20 training examples of class 9.*asks for 20 "
                                          r"and more"):
        _build(scenario, few_nines, n_majority=-1)
    data = _build(scenario, few_nines, n_majority=-1, meta_per_class=9)
    assert _class_counts(data.train) == (6, 2)


def test_exactly_enough_examples(scenario, source):
    data = _build(scenario, source, n_majority=60, n_minority=60)
    assert _class_counts(data.train) == (60, 60)


@pytest.mark.parametrize("overrides", [
    {"minority": 9, "majority": 9},
    {"n_minority": 0},
    {"meta_per_class": 0},
])
def test_invalid_settings(scenario, overrides):
    with pytest.raises(ValueError):
        scenario.resolve_settings("synthetic", "quick", overrides)


def test_settings_resolution(scenario):
    quick = scenario.resolve_settings("mnist1d", "quick", {})
    assert (quick.minority, quick.majority) == (4, 9)
    assert (quick.n_majority, quick.n_minority, quick.meta_per_class) == (4975, 25, 25)
    assert quick.steps == 1500
    paper = scenario.resolve_settings("mnist", "paper", {"meta_per_class": 5})
    assert (paper.steps, paper.lr, paper.batch_size, paper.meta_per_class) == (15000, 1e-3, 100, 5)
    digits = scenario.resolve_settings("digits", "quick", {"n_minority": 3})
    assert (digits.n_majority, digits.n_minority, digits.meta_per_class) == (-1, 3, 10)


# ------------------------------------------------------------------ model, loss and metric


def test_model_loss_metric_shapes(scenario, source):
    data = _build(scenario, source)
    settings = scenario.resolve_settings(source.name, "quick", SMALL)
    torch.manual_seed(0)
    model = scenario.make_model(data, settings)
    x, y = data.train.x[:7], data.train.y[:7]
    out = model(x)
    assert out.shape == (7, 1)
    assert model.features(x).shape == (7, model.embedding_dim)
    loss = scenario.loss(out, y)
    assert loss.shape == (7,)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y, reduction="none")
    torch.testing.assert_close(loss, expected)
    assert (loss > 0).all()
    loss.sum().backward()  # differentiable per example
    assert all(p.grad is not None for p in model.parameters())
    acc = scenario.metric(out.detach(), y)
    assert 0.0 <= acc <= 1.0


def test_loss_values(scenario):
    out = torch.tensor([[0.0], [2.0], [-3.0]])
    target = torch.tensor([1.0, 0.0, 0.0])
    loss = scenario.loss(out, target)
    expected = torch.tensor([np.log(2.0), np.log1p(np.exp(2.0)), np.log1p(np.exp(-3.0))],
                            dtype=torch.float32)
    torch.testing.assert_close(loss, expected)


def test_metric_hand_made(scenario):
    out = torch.tensor([[2.0], [-1.0], [3.0]])
    target = torch.tensor([1.0, 0.0, 0.0])
    assert scenario.metric(out, target) == pytest.approx(2 / 3)
    assert scenario.metric(out, torch.tensor([1.0, 0.0, 1.0])) == 1.0
    assert scenario.metric(-out, torch.tensor([1.0, 0.0, 1.0])) == 0.0


# ---------------------------------------------------------------------- real offline sources


@pytest.fixture(scope="module")
def mnist1d() -> SourceData:
    return load_source("mnist1d")


@pytest.fixture(scope="module")
def digits() -> SourceData:
    return load_source("digits")


def _real_ids(pool: Labeled, split: Split) -> np.ndarray:
    """Pool indices of ``split``'s examples, found by matching whole inputs (bytes)."""
    where: dict[bytes, list[int]] = {}
    for i, row in enumerate(pool.x.reshape(len(pool), -1)):
        where.setdefault(row.tobytes(), []).append(i)
    out = []
    for row in split.x.numpy().reshape(len(split), -1):
        out.extend(where[row.tobytes()][:1])
    return np.array(out)


def test_mnist1d_defaults(scenario, mnist1d):
    settings = scenario.resolve_settings("mnist1d", "quick", {})
    data = scenario.build(mnist1d, settings, seed=0)
    assert _class_counts(data.train) == (25, 4975)
    assert _class_counts(data.meta) == (25, 25)
    assert _class_counts(data.val) == (25, 25)
    n_test = int(np.isin(mnist1d.test.y, [MINORITY, MAJORITY]).sum())
    assert _class_counts(data.test) == (int((mnist1d.test.y == MINORITY).sum()),
                                        int((mnist1d.test.y == MAJORITY).sum()))
    assert len(data.test) == n_test
    assert data.input_shape == (1, 40)
    assert data.train.group.tolist().count(0) == 25
    model = scenario.make_model(data, settings)
    out = model(data.meta.x)
    assert out.shape == (50, 1)
    assert scenario.loss(out, data.meta.y).shape == (50,)


def test_mnist1d_splits_disjoint_and_labelled(scenario, mnist1d):
    settings = scenario.resolve_settings("mnist1d", "quick", {"n_majority": 400})
    data = scenario.build(mnist1d, settings, seed=1)
    sets = {name: _real_ids(mnist1d.train, getattr(data, name))
            for name in ("train", "meta", "val")}
    assert [len(s) for s in sets.values()] == [425, 50, 50]  # every example found in the pool
    for name, s in sets.items():
        classes = mnist1d.train.y[s]
        np.testing.assert_array_equal(getattr(data, name).y.numpy(),
                                      (classes == MINORITY).astype(np.float32))
    assert not set(sets["train"]) & set(sets["meta"])
    assert not set(sets["train"]) & set(sets["val"])
    assert not set(sets["meta"]) & set(sets["val"])


@pytest.mark.parametrize("meta", [5, 10, 25, 50])
def test_mnist1d_meta_variants(scenario, mnist1d, meta):
    settings = scenario.resolve_settings("mnist1d", "paper", {"meta_per_class": meta})
    data = scenario.build(mnist1d, settings, seed=0)
    assert _class_counts(data.meta) == (meta, meta)
    assert len(data.val) == len(data.meta) == 2 * meta
    assert _class_counts(data.train) == (25, 4975)


def test_digits_defaults(scenario, digits):
    settings = scenario.resolve_settings("digits", "quick", {})
    assert (settings.n_majority, settings.n_minority, settings.meta_per_class) == (-1, 2, 10)
    data = scenario.build(digits, settings, seed=0)
    nines = int((digits.train.y == MAJORITY).sum())
    assert nines > 20
    assert _class_counts(data.train) == (2, nines - 20)  # every nine left after Dm and val
    assert _class_counts(data.meta) == (10, 10)
    assert _class_counts(data.val) == (10, 10)
    assert _class_counts(data.test) == (int((digits.test.y == MINORITY).sum()),
                                        int((digits.test.y == MAJORITY).sum()))
    assert data.input_shape == (1, 8, 8)
    model = scenario.make_model(data, settings)
    assert model(data.train.x[:5]).shape == (5, 1)


def test_digits_too_many(scenario, digits):
    fours = int((digits.train.y == MINORITY).sum())
    with pytest.raises(ConfigError, match=rf"'digits' has {fours} training examples of class 4"):
        scenario.build(digits, scenario.resolve_settings("digits", "quick", {"n_minority": 200}),
                       seed=0)
