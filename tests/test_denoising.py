"""The ``denoising`` scenario: splits, noise protocols, CIFAR-10N on both CIFAR sources,
augmentation, and every method of the registry through the harness on a ResNet with BatchNorm."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from cifar_fixtures import write_cifar10n
from toys import methods_without_requirements

from benchmarks import harness
from benchmarks.data.base import Labeled, SourceData
from benchmarks.errors import ConfigError, DataError
from benchmarks.scenarios import get_scenario
from benchmarks.scenarios.denoising import random_crop_flip
from benchmarks.sweep import plan

K, PER_CLASS = 10, 30


def image_source(name: str = "cifar10", per_class: int = PER_CLASS, order: str = "official",
                 seed: int = 0, root=None) -> SourceData:
    """Random 3x32x32 images; pixel [0, 0, 0] holds the example's id in the official order."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(K), per_class))
    x = rng.normal(size=(len(y), 3, 32, 32)).astype(np.float32)
    x[:, 0, 0, 0] = np.arange(len(y))
    if order == "class-folder":  # stable sort by class keeps each class's official order
        perm = np.argsort(y, kind="stable")
        x, y = x[perm], y[perm]
    ty = np.repeat(np.arange(K), 5)
    tx = rng.normal(size=(len(ty), 3, 32, 32)).astype(np.float32)
    return SourceData(name, Labeled(x, y), Labeled(tx, ty), order=order, root=root)


def ids(x: torch.Tensor) -> np.ndarray:
    return x[:, 0, 0, 0].numpy().astype(np.int64)


@pytest.fixture(scope="module")
def scenario():
    return get_scenario("denoising")


def build(scenario, source, profile="paper", seed=0, **overrides):
    settings = scenario.resolve_settings(source.name, profile,
                                         {"meta_per_class": 5, "val_per_class": 2, **overrides})
    return scenario.build(source, settings, seed)


def test_splits_are_disjoint_clean_where_they_must_be_and_sized(scenario):
    src = image_source()
    data = build(scenario, src)
    truth = src.train.y
    dt, dm, val = ids(data.train.x), ids(data.meta.x), ids(data.val.x)
    assert len(dm) == 5 * K and len(val) == 2 * K and len(dt) == K * (PER_CLASS - 7)
    assert not (set(dt) & set(dm)) and not (set(dt) & set(val)) and not (set(dm) & set(val))
    np.testing.assert_array_equal(data.meta.y.numpy(), truth[dm])  # Dm and validation are clean
    np.testing.assert_array_equal(data.val.y.numpy(), truth[val])
    assert np.bincount(data.meta.y.numpy(), minlength=K).tolist() == [5] * K
    np.testing.assert_array_equal(data.test.y.numpy(), src.test.y)
    noisy = data.train.y.numpy() != truth[dt]
    np.testing.assert_array_equal(data.train.group.numpy(), noisy.astype(int))
    assert data.group_names == ("clean", "noisy")


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_symmetric_noise_has_the_exact_rate_and_never_keeps_a_flipped_label(scenario, rate):
    src = image_source()
    data = build(scenario, src, noise_rate=rate)
    wrong = data.train.y.numpy() != src.train.y[ids(data.train.x)]
    assert wrong.sum() == round(rate * len(wrong))


def test_asymmetric_noise_flips_cifar_pairs_once(scenario):
    src = image_source()
    data = build(scenario, src, noise="asymmetric", noise_rate=0.4)
    true = src.train.y[ids(data.train.x)]
    given = data.train.y.numpy()
    pairs = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    for c in range(K):
        flipped = given[(true == c)] != c
        if c in pairs:
            assert flipped.sum() == round(0.4 * (true == c).sum())
            assert set(given[(true == c) & (given != c)]) <= {pairs[c]}
        else:
            assert not flipped.any()


def test_noise_comes_from_the_seed(scenario):
    src = image_source()
    a, b, c = (build(scenario, src, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.train.y, b.train.y) and torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.train.group, c.train.group) or not torch.equal(a.train.x, c.train.x)


@pytest.mark.parametrize("order", ["official", "class-folder"])
def test_cifar10n_labels_follow_the_official_order_on_either_source(scenario, tmp_path, order):
    n = K * PER_CLASS
    official = image_source(order="official")
    clean = official.train.y
    rng = np.random.default_rng(5)
    worse = np.where(rng.random(n) < 0.4, (clean + 1 + rng.integers(0, K - 1, n)) % K, clean)
    write_cifar10n(tmp_path, clean, {"worse_label": worse})
    name = "cifar10" if order == "official" else "cifar10-images"
    src = image_source(name, order=order, root=tmp_path)
    import benchmarks.scenarios.denoising as den

    real = den.load_cifar10n
    den.load_cifar10n = lambda root, kind: real(root, kind, check_md5=False)
    try:
        data = build(scenario, src, noise="cifar10n-worse")
    finally:
        den.load_cifar10n = real
    official_ids = ids(data.train.x)  # pixel id = position in the official order
    np.testing.assert_array_equal(data.train.y.numpy(), worse[official_ids])
    np.testing.assert_array_equal(data.train.group.numpy(),
                                  (worse[official_ids] != clean[official_ids]).astype(int))
    np.testing.assert_array_equal(data.meta.y.numpy(), clean[ids(data.meta.x)])


def test_cifar10n_needs_a_cifar_source_and_matching_labels(scenario, tmp_path):
    with pytest.raises(ConfigError, match="cifar10"):
        build(scenario, image_source("mnist1d"), noise="cifar10n-aggre")
    src = image_source(root=tmp_path)
    write_cifar10n(tmp_path, (src.train.y + 1) % K, {})  # other images' labels
    import benchmarks.scenarios.denoising as den

    real = den.load_cifar10n
    den.load_cifar10n = lambda root, kind: real(root, kind, check_md5=False)
    try:
        with pytest.raises(DataError, match="disagree"):
            build(scenario, src, noise="cifar10n-aggre")
    finally:
        den.load_cifar10n = real


@pytest.mark.parametrize("overrides", [{"noise": "gaussian"}, {"noise_rate": 1.5},
                                       {"meta_per_class": 0}, {"n_train": 0},
                                       {"meta_per_class": 40}, {"n_train": 10_000}])
def test_bad_settings_say_what_is_wrong(scenario, overrides):
    with pytest.raises((ValueError, ConfigError)):
        build(scenario, image_source(), **overrides)


def test_random_crop_flip_gives_crops_of_the_padded_image_or_their_mirror():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64)
    out = random_crop_flip(x, g)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    flips = 0
    for i in range(len(x)):
        crops = [padded[i, :, dy: dy + 8, dx: dx + 8] for dy, dx in itertools.product(range(9), range(9))]
        plain = any(torch.equal(out[i], c) for c in crops)
        mirrored = any(torch.equal(out[i], c.flip(-1)) for c in crops)
        assert plain or mirrored
        flips += mirrored and not plain
    assert random_crop_flip(x, torch.Generator().manual_seed(0)).equal(out)  # seeded
    assert 0 < flips < len(x)


def test_augmentation_touches_training_batches_only(scenario, monkeypatch):
    seen = []

    def recording(x, generator):
        seen.append(x.shape[0])
        return x

    monkeypatch.setattr(type(scenario), "augment", lambda self, data, settings: recording)
    src = image_source()
    for method, per_step in (("train_only", 1), ("bads", 2)):
        seen.clear()
        spec = plan("denoising", "cifar10", "cifar-cpu", [method], [0],
                    {"steps": 3, "eval_every": 3, "batch_size": 8, "meta_batch_size": 4,
                     "meta_per_class": 5, "val_per_class": 2, "width": 2, "n_train": -1}, {})[0]
        data = scenario.build(src, scenario.Settings(**spec.settings), 0)
        out = harness.run(spec, scenario, data, torch.device("cpu"))
        assert out.status == "ok", out.error
        assert len(seen) == 3 * per_step and set(seen) <= {8, 4}


def test_augment_on_signals_is_refused(scenario):
    src = SourceData("mnist1d", Labeled(np.zeros((300, 1, 40), np.float32), np.arange(300) % 10),
                     Labeled(np.zeros((10, 1, 40), np.float32), np.arange(10)))
    data = build(scenario, src, profile="quick", augment=False, n_train=100)
    settings = dataclasses.replace(scenario.resolve_settings("mnist1d", "quick", {}), augment=True)
    with pytest.raises(ConfigError, match="augment=false"):
        scenario.augment(data, settings)


@pytest.mark.parametrize("method", methods_without_requirements())
def test_every_method_runs_on_a_resnet_with_batchnorm(scenario, method):
    src = image_source()
    spec = plan("denoising", "cifar10", "cifar-cpu", [method], [0],
                {"steps": 4, "eval_every": 2, "batch_size": 12, "meta_batch_size": 6,
                 "meta_per_class": 5, "val_per_class": 2, "width": 2, "eval_batch_size": 64,
                 "n_train": -1},
                {"cds": {"pretrain_steps": 2, "finetune_steps": 2}, "classact": {"ref_steps": 2}})[0]
    data = scenario.build(src, scenario.Settings(**spec.settings), 0)
    out = harness.run(spec, scenario, data, torch.device("cpu"))
    assert out.status == "ok", out.error
    test = out.curves[out.curves.split == "test"]
    assert sorted(test.step) == [2, 4] and test.value.between(0, 1).all()


def test_drawing_bm_never_changes_how_bt_is_augmented(scenario, monkeypatch):
    """One augmentation generator per stream: train_only (no Bm) and bads (Bm drawn) see the same
    crops and flips of the same Bt batches."""
    seen: dict[str, list] = {"train_only": [], "bads": []}
    current = {}

    def recording(x, generator):
        out = random_crop_flip(x, generator)
        if x.shape[0] == 8:  # Bt (Bm has 4)
            seen[current["m"]].append(out.clone())
        return out

    monkeypatch.setattr(type(scenario), "augment", lambda self, data, settings: recording)
    src = image_source()
    for method in seen:
        current["m"] = method
        spec = plan("denoising", "cifar10", "cifar-cpu", [method], [0],
                    {"steps": 3, "eval_every": 3, "batch_size": 8, "meta_batch_size": 4,
                     "meta_per_class": 5, "val_per_class": 2, "width": 2, "n_train": -1}, {})[0]
        data = scenario.build(src, scenario.Settings(**spec.settings), 0)
        assert harness.run(spec, scenario, data, torch.device("cpu")).status == "ok"
    assert len(seen["bads"]) == 3
    for a, b in zip(seen["train_only"], seen["bads"], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("overrides", [{"depth": 10}, {"depth": 2}, {"width": 0}])
def test_resnet_shape_is_checked_with_the_settings(scenario, overrides):
    with pytest.raises(ValueError, match="6n \\+ 2"):
        scenario.resolve_settings("cifar10", "cifar-cpu", overrides)


def test_tune_refuses_a_profile_without_validation_split(tmp_path, monkeypatch):
    from benchmarks import sweep, tune

    monkeypatch.setattr(sweep, "source_of", lambda spec, data_dir: image_source())
    with pytest.raises(ConfigError, match="val_per_class"):
        tune.tune("denoising", "cifar10", "paper", ["train_only"], 1, [0],
                  {"meta_per_class": 5, "steps": 2}, {}, tmp_path / "t", tmp_path / "tuned")
    assert not (tmp_path / "t").exists()  # nothing trained
