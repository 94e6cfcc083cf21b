"""Label-noise denoising (the paper's second experiment): Dt with partly wrong labels, a clean Dm.

Protocol (profile ``paper``, sources ``cifar10`` and ``cifar10-images``): from CIFAR-10's 50,000
training images, Dm = ``meta_per_class`` = 1,000 clean images per class (10,000) and Dt = the
remaining 40,000 with their labels corrupted; test = the 10,000 test images with their true
labels. The validation split (for ``tune`` only; ``val_per_class`` clean images per class) is
taken from the training pool too, so the paper profile sets it to 0 to keep Dt at 40,000.

Noise (``--set noise=...``, ``--set noise_rate=...``; drawn from the run's data seed):
- ``symmetric`` at rate r (paper: 0.5; variants 0.2, 0.8): exactly round(r·|Dt|) labels replaced
  by one of the *other* classes, uniformly, so the realised rate is r (see
  :mod:`benchmarks.data.label_noise`);
- ``asymmetric`` at rate r (paper: 0.4): round(r·n_c) labels of each class c with a partner flip
  to it, decided once on the original labels (truck→automobile, bird→airplane, deer→horse,
  cat↔dog for CIFAR-10; other sources use c → c+1 mod K);
- ``cifar10n-aggre`` | ``cifar10n-random1`` … ``random3`` | ``cifar10n-worse``: CIFAR-10N's real human
  labels (9%, 17-18%, 40% wrong; a CIFAR-10 source only; the image folder is put in the
  official order first). ``noise_rate`` is then unused.
Groups of Dt: ``clean`` (label intact, what a good method keeps) and ``noisy``.

Model and training (paper): ResNet-32 (:mod:`benchmarks.models.resnet`), cross-entropy, SGD lr
0.1, batch 120, 20,000 steps; momentum 0.9 and weight decay 5e-4 (the paper does not state them:
Meta-Weight-Net's noisy-label script ``MW-Net.py``, whose ResNet-32 set-up the paper follows);
standard augmentation on Dt and Dm batches only: 4-pixel reflect padding (as ``MW-Net.py``), a
random 32x32 crop and a horizontal flip with probability 1/2. No learning-rate schedule (the paper
gives none for its step budget). BADS: β 0.8, weight-network lr 1e-4, backbone lr 1e-4, the
weight network reads [e_i, onehot(ỹ_i)] (``concat_label``, ỹ the possibly wrong label); ``blo``
uses the same weight network. ``mwn`` keeps its defaults, which are ``MW-Net.py``'s (V reads the
detached loss, weights averaged over the batch, Adam lr 1e-3, weight decay 1e-4).

Other profiles and sources:
- ``quick`` (default, ``mnist1d``, offline): 10-class MNIST-1D, Dt 5,000 signals, Dm 10 per class,
  1-D LeNet, 2,000 steps; minutes per method on 2 CPU cores.
- ``cifar-cpu`` (real CIFAR-10 images on a CPU): the paper's noise and training settings on a
  smaller problem, ResNet-8 (depth 8, width 16), Dt 10,000, Dm 100 per class, 500 steps (6 epochs
  of Dt): the method set in a few hours on 2 CPU cores. The paper's 40,000/10,000 split at 500
  steps would be about one epoch, before a network starts to fit wrong labels, where no method
  has anything to remove.
- ``fashion-mnist``: the same protocol with Dm 100 per class and Dt 10,000 (Dm a tenth of Dt, as
  CIFAR-10's is a quarter), the 2-D LeNet-5, no augmentation; run with the quick profile's
  training settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import SourceData
from ..data.cifar10 import official_order
from ..data.cifar10n import KINDS, load_cifar10n
from ..data.label_noise import CIFAR10_PAIRS, asymmetric, symmetric
from ..errors import ConfigError, DataError
from ..models import LeNet
from ..models.resnet import CifarResNet
from .base import Scenario, ScenarioData, Split, TrainSettings

GROUPS = ("clean", "noisy")
SYNTHETIC = ("symmetric", "asymmetric")
HUMAN = tuple(f"cifar10n-{k}" for k in KINDS)
CIFAR_SOURCES = ("cifar10", "cifar10-images")
PAD = 4
# measured: `dps-bench run --scenario denoising --source cifar10-images --profile paper --methods
# train_only,bads,blo,l2rw,mwn --seeds 0 --set steps=12 --set eval_every=12` (README, denoising)
PAPER_CPU_NOTE = ("ResNet-32, 20,000 steps: meant for a GPU. On 2 CPU cores, 1 thread per run, "
                  "measured 0.67 s/step for train_only, 1.6 for bads, 3.9 for l2rw, 4.1 for mwn, "
                  "6.1 for blo: one run takes about 4, 9, 22, 23 and 34 hours, plus ~20 minutes "
                  "of evaluation")


@dataclass
class DenoisingSettings(TrainSettings):
    """noise: symmetric | asymmetric | cifar10n-<aggre|random1|random2|random3|worse>;
    noise_rate: r for the synthetic kinds; meta_per_class, val_per_class: clean examples per class
    in Dm and in the validation split; n_train: |Dt| (-1: every training example left);
    depth, width: the ResNet's (images with 3 channels); augment: crop and flip Bt and Bm."""

    noise: str = "symmetric"
    noise_rate: float = 0.5
    meta_per_class: int = 1000
    val_per_class: int = 0
    n_train: int = -1
    depth: int = 32
    width: int = 16
    augment: bool = True

    def validate(self) -> None:
        super().validate()
        if self.noise not in SYNTHETIC + HUMAN:
            raise ValueError(f"noise must be one of {', '.join(SYNTHETIC + HUMAN)}, got {self.noise!r}")
        if not 0.0 <= self.noise_rate <= 1.0:
            raise ValueError(f"noise_rate must lie in [0, 1], got {self.noise_rate}")
        if self.meta_per_class < 1 or self.val_per_class < 0:
            raise ValueError("meta_per_class must be at least 1 and val_per_class at least 0")
        if self.n_train != -1 and self.n_train < 1:
            raise ValueError(f"n_train must be at least 1, or -1 for every example left, got {self.n_train}")
        if self.depth < 8 or (self.depth - 2) % 6 or self.width < 1:
            raise ValueError(f"the CIFAR ResNet needs depth = 6n + 2 (8, 14, 20, 32, ...) and width >= 1, "
                             f"got depth={self.depth}, width={self.width}")


def random_crop_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Per image of [B, C, H, W]: reflect-pad by 4, crop a random HxW window, flip half of them.
    Offsets and flips are drawn from ``generator`` (on the CPU), so a run's augmentation is seeded."""
    b, _, h, w = x.shape
    padded = F.pad(x, (PAD, PAD, PAD, PAD), mode="reflect")
    dy = torch.randint(0, 2 * PAD + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * PAD + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = dx[:, None] + torch.arange(w, device=x.device)  # [B, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


class Denoising(Scenario):
    name = "denoising"
    description = ("label noise: Dt with 50% wrong labels (symmetric; asymmetric, CIFAR-10N human "
                   "noise), clean Dm (paper Sec. 5.2)")
    Settings = DenoisingSettings
    sources = ("mnist1d", "fashion-mnist", "cifar10-images", "cifar10")
    profiles = {
        "quick": {"steps": 2000, "eval_every": 200, "batch_size": 100, "meta_batch_size": 100,
                  "lr": 0.05, "momentum": 0.9, "meta_per_class": 10, "val_per_class": 10,
                  "n_train": 5000, "augment": False},
        "cifar-cpu": {"steps": 500, "eval_every": 250, "batch_size": 120, "meta_batch_size": 120,
                      "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "depth": 8, "width": 16,
                      "meta_per_class": 100, "n_train": 10000},
        "paper": {"steps": 20000, "eval_every": 1000, "batch_size": 120, "meta_batch_size": 120,
                  "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
    }
    source_settings = {
        "mnist1d": {"augment": False},
        "fashion-mnist": {"meta_per_class": 100, "val_per_class": 10, "n_train": 10000,
                          "augment": False},
    }
    profile_notes = {
        "quick": "MNIST-1D, 1-D LeNet: a few minutes per method on 2 CPU cores",
        "cifar-cpu": "real CIFAR-10 images, ResNet-8, Dt 10,000, 500 steps: the CPU stand-in for "
                     "paper, a few hours for the method set on 2 CPU cores",
        "paper": PAPER_CPU_NOTE,
    }
    method_defaults = {"beta": 0.8}
    # BADS's θ objective sums over the data (N_t·mean(w·l) + N_m·mean(l)); the CPU profiles, tuned
    # for mean losses, scale θ's lr by 1 / (β·N_t + N_m) for the source's default split:
    # MNIST-1D 0.05 / (0.8·5,000 + 100) ≈ 1.2e-5; Fashion-MNIST 0.05 / (0.8·10,000 + 1,000) ≈ 5.6e-6;
    # CIFAR-10 (cifar-cpu) 0.1 / (0.8·10,000 + 1,000) ≈ 1.1e-5. The paper profile keeps the paper's 1e-4.
    source_method_defaults = {"mnist1d": {"lr_theta": 1.2e-5}, "fashion-mnist": {"lr_theta": 5.6e-6},
                              "cifar10": {"lr_theta": 1.1e-5}, "cifar10-images": {"lr_theta": 1.1e-5}}
    method_settings = {
        # the paper's BADS settings for denoising: weight-network lr 1e-4 (backbone lr: profile paper)
        "bads": {"concat_label": True, "lr_w": 1e-4},
        "blo": {"concat_label": True},
    }
    # the CPU profiles run 10x fewer steps than the paper: φ's lr is 10x the paper's
    profile_method_settings = {
        "quick": {"bads": {"lr_w": 1e-3}},
        "cifar-cpu": {"bads": {"lr_w": 1e-3}},
        "paper": {"bads": {"lr_theta": 1e-4}},
    }

    def build(self, source: SourceData, settings: DenoisingSettings, seed: int) -> ScenarioData:
        s = settings
        rng = np.random.default_rng(seed)
        pool = source.train
        k = int(max(pool.y.max(), source.test.y.max())) + 1
        if s.noise in HUMAN:
            if source.name not in CIFAR_SOURCES:
                raise ConfigError(f"noise={s.noise} is CIFAR-10N's human labels for CIFAR-10's "
                                  f"training images; use --source {' or '.join(CIFAR_SOURCES)}, or "
                                  "noise=symmetric|asymmetric")
            if source.order not in ("official", "class-folder"):
                raise DataError(f"{source.name}: the training files are not named 0 … n-1 within "
                                "each class, so CIFAR-10's official order (which CIFAR-10N's labels "
                                "follow) cannot be rebuilt; use the official batches (--source "
                                "cifar10) or the numbered image folder")
            clean, human = load_cifar10n(source.root, s.noise.removeprefix("cifar10n-"))
            in_folder_order = source.order == "class-folder"
            rows = official_order(pool.y, clean) if in_folder_order else np.arange(len(pool))
            # in class-folder order, official_order has checked the counts and the file numbering;
            # in the official order, the source's own labels must be the clean ones
            if len(rows) != len(clean) or (not in_folder_order and np.any(pool.y[rows] != clean)):
                raise DataError(f"the CIFAR-10N clean labels disagree with {source.name}'s labels: "
                                "they are not the same 50,000 training images in the same order")
            given = human
        else:
            rows = np.arange(len(pool))
            given = None
        true = pool.y[rows]
        meta, val, rest = [], [], []
        for c in range(k):
            members = rng.permutation(np.flatnonzero(true == c))
            need = s.meta_per_class + s.val_per_class
            if len(members) <= need:
                raise ConfigError(f"source {source.name!r} has {len(members)} training examples of "
                                  f"class {c}, but Dm and validation take {need} of each class and "
                                  "Dt needs some left; lower meta_per_class or val_per_class with --set")
            meta.append(members[: s.meta_per_class])
            val.append(members[s.meta_per_class: need])
            rest.append(members[need:])
        rest_all = rng.permutation(np.concatenate(rest))
        if s.n_train > len(rest_all):
            raise ConfigError(f"n_train={s.n_train} but only {len(rest_all)} training examples are left "
                              "after Dm and validation; lower n_train (or -1 for all of them)")
        dt = np.sort(rest_all[: s.n_train] if s.n_train > 0 else rest_all)
        if given is not None:
            noisy = given[dt]
        elif s.noise == "symmetric":
            noisy, _ = symmetric(true[dt], s.noise_rate, k, rng)
        else:
            pairs = CIFAR10_PAIRS if source.name in CIFAR_SOURCES else {c: (c + 1) % k for c in range(k)}
            noisy, _ = asymmetric(true[dt], s.noise_rate, k, rng, pairs=pairs)
        group = np.where(noisy == true[dt], 0, 1)

        def split(idx: np.ndarray, labels: np.ndarray, x: np.ndarray) -> Split:
            return Split(torch.from_numpy(x[idx]), torch.from_numpy(labels.astype(np.int64)))

        meta_idx = np.sort(np.concatenate(meta))
        val_idx = np.sort(np.concatenate(val))
        return ScenarioData(
            train=Split(torch.from_numpy(pool.x[rows[dt]]), torch.from_numpy(noisy.astype(np.int64)),
                        torch.from_numpy(group)),
            meta=split(rows[meta_idx], true[meta_idx], pool.x),
            val=split(rows[val_idx], true[val_idx], pool.x),
            test=split(np.arange(len(source.test)), source.test.y, source.test.x),
            group_names=GROUPS,
            num_classes=k,
        )

    def make_model(self, data: ScenarioData, settings: DenoisingSettings) -> nn.Module:
        shape = data.input_shape
        if len(shape) == 3 and shape[0] == 3:
            return CifarResNet(shape, data.num_classes, depth=settings.depth, width=settings.width)
        kernel = 3 if shape[-1] < 16 else 5
        return LeNet(shape, num_outputs=data.num_classes, kernel=kernel)

    def augment(self, data: ScenarioData, settings: DenoisingSettings):
        """Random crop (4-pixel reflect padding) and horizontal flip for images, when ``augment``."""
        if not settings.augment:
            return None
        if len(data.input_shape) != 3:
            raise ConfigError(f"augment=true crops and flips images [C, H, W]; these inputs have "
                              f"shape {list(data.input_shape)}: use --set augment=false")
        return random_crop_flip

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output, target, reduction="none")

    def metric(self, output: Tensor, target: Tensor) -> float:
        return (output.argmax(-1) == target).float().mean().item()
