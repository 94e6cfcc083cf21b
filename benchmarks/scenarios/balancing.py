"""Data balancing (the paper's first experiment): a 199:1 class-imbalanced Dt, a balanced Dm.

Protocol (paper): MNIST digits 4 (minority, label 1) and 9 (majority, label 0). Dt = 4,975 nines
and 25 fours from the training images; Dm = ``meta_per_class`` images of each class (25; variants
5, 10, 50), disjoint from Dt; test = every test image of 4 and 9. LeNet-5 with one output and
binary cross-entropy; SGD lr 1e-3, batch 100, 15,000 steps (profile ``paper``). The validation
set (for tuning only) has the size of Dm and is disjoint from Dm, Dt and test.

Sources: ``mnist1d`` (default, offline; same counts, a 1-D LeNet), ``mnist`` (real IDX files),
``fashion-mnist`` (same protocol on classes 4 "coat" and 9 "ankle boot"), and ``digits``
(scikit-learn's 8x8 digits, ~108 train images per class, so Dt keeps every nine left after Dm and
validation, with 2 fours: a 1:~44 imbalance instead of 1:199, and Dm has 10 per class).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import SourceData
from ..models import LeNet
from .base import Scenario, ScenarioData, Split, TrainSettings

GROUPS = ("minority", "majority")


@dataclass
class BalancingSettings(TrainSettings):
    """minority/majority: class labels in the source; n_majority = -1 keeps every one left."""

    minority: int = 4
    majority: int = 9
    n_minority: int = 25
    n_majority: int = 4975
    meta_per_class: int = 25
    val_per_class: int = -1  # -1: same as meta_per_class

    def validate(self) -> None:
        super().validate()
        if self.minority == self.majority:
            raise ValueError("minority and majority must be different classes")
        if self.n_minority < 1 or self.meta_per_class < 1:
            raise ValueError("n_minority and meta_per_class must be at least 1")
        for name in ("n_majority", "val_per_class"):
            if getattr(self, name) != -1 and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, or -1 for the default")


def _take(pool_y: np.ndarray, label: int, counts: list[int], rng: np.random.Generator,
          source: str) -> list[np.ndarray]:
    """Disjoint random index sets of the given sizes (-1 = all that remain) from class ``label``."""
    members = rng.permutation(np.flatnonzero(pool_y == label))
    fixed = sum(c for c in counts if c >= 0)
    if fixed > len(members) or (fixed == len(members) and -1 in counts):
        raise ValueError(
            f"source {source!r} has {len(members)} training examples of class {label}, but the "
            f"protocol asks for {fixed}{' and more' if -1 in counts else ''}; lower n_minority, "
            f"n_majority, meta_per_class or val_per_class with --set"
        )
    out, start = [], 0
    for c in counts:
        stop = len(members) if c < 0 else start + c
        out.append(np.sort(members[start:stop]))
        start = stop
    return out


class Balancing(Scenario):
    name = "balancing"
    description = "class imbalance: Dt with 25 fours among 4,975 nines, balanced Dm (paper Sec. 5.1)"
    Settings = BalancingSettings
    sources = ("mnist1d", "mnist", "fashion-mnist", "digits")
    profiles = {
        "quick": {"steps": 1500, "eval_every": 100, "lr": 0.05, "momentum": 0.9},
        "paper": {"steps": 15000, "eval_every": 500, "lr": 1e-3},
    }
    source_settings = {
        "digits": {"n_minority": 2, "n_majority": -1, "meta_per_class": 10},
    }
    method_defaults = {"beta": 0.005}
    # digits: N_t ≈ 90, so β = 0.005 would keep ⌊0.45⌋ = 0 points; keep as many as the minority
    source_method_defaults = {"digits": {"beta": 0.025}}
    method_settings = {
        "bads": {"lr_w": 1e-3},  # the paper's weight-network lr for balancing
        # Meta-Weight-Net's class-imbalance script (xjtushujun/Meta-weight-net_class-imbalance,
        # meta-weight-net-class-imbalance.py): weights normalised by their minibatch sum, V fed
        # the undetached loss in the look-ahead, SGD on V with lr 1e-5, momentum 0.9, Nesterov,
        # weight decay 5e-4 (see methods/mwn.py)
        "mwn": {"normalize": True, "detach_input": False, "v_optimizer": "sgd", "lr_v": 1e-5,
                "v_momentum": 0.9, "v_nesterov": True, "v_weight_decay": 5e-4},
    }
    # BADS's θ objective sums over Dt and Dm (N_t·mean(w·l) + N_m·mean(l), about 75x a mean loss
    # at β = 0.005 and 25 per class), so the quick profile's lr 0.05 for mean losses becomes
    # 0.05 / 75 ≈ 7e-4 for BADS; the paper profile keeps the paper's 1e-3.
    profile_method_settings = {"quick": {"bads": {"lr_theta": 7e-4}}}

    def build(self, source: SourceData, settings: BalancingSettings, seed: int) -> ScenarioData:
        s = settings
        rng = np.random.default_rng(seed)
        n_val = s.meta_per_class if s.val_per_class < 0 else s.val_per_class
        pool = source.train
        try:
            meta_min, val_min, dt_min = _take(pool.y, s.minority,
                                              [s.meta_per_class, n_val, s.n_minority], rng,
                                              source.name)
            meta_maj, val_maj, dt_maj = _take(pool.y, s.majority,
                                              [s.meta_per_class, n_val, s.n_majority], rng,
                                              source.name)
        except ValueError as e:
            from ..errors import ConfigError

            raise ConfigError(str(e)) from None

        def split(idx_min: np.ndarray, idx_maj: np.ndarray, x: np.ndarray, y: np.ndarray,
                  with_groups: bool = False) -> Split:
            order = rng.permutation(len(idx_min) + len(idx_maj))
            idx = np.concatenate([idx_min, idx_maj])[order]
            is_min = (y[idx] == s.minority)
            group = torch.from_numpy(np.where(is_min, 0, 1)) if with_groups else None
            return Split(torch.from_numpy(x[idx]), torch.from_numpy(is_min.astype(np.float32)),
                         group)

        test_min = np.flatnonzero(source.test.y == s.minority)
        test_maj = np.flatnonzero(source.test.y == s.majority)
        return ScenarioData(
            train=split(dt_min, dt_maj, pool.x, pool.y, with_groups=True),
            meta=split(meta_min, meta_maj, pool.x, pool.y),
            val=split(val_min, val_maj, pool.x, pool.y),
            test=split(test_min, test_maj, source.test.x, source.test.y),
            group_names=GROUPS,
            num_classes=2,
        )

    def make_model(self, data: ScenarioData, settings: TrainSettings) -> nn.Module:
        kernel = 3 if data.input_shape[-1] < 16 else 5
        return LeNet(data.input_shape, num_outputs=1, kernel=kernel)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(output.squeeze(-1), target, reduction="none")

    def metric(self, output: Tensor, target: Tensor) -> float:
        return ((output.squeeze(-1) > 0).float() == target).float().mean().item()
