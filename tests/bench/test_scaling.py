"""How the cost of a step grows with the work: BADS and blo against model width, against N_t
(per-sample logits vs the weight network), and blo against its number of inner steps k.

Synthetic MNIST-1D-shaped data (1 x 40 signals, two classes), the 1-D LeNet of the balancing
scenario scaled by ``width``, batch 100 and meta batch 50. Writes results/benchmarks/scaling.csv
and scaling.png. Each point is the median of ``ROUNDS`` timed steps after warm-up.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from toys import bce

from benchmarks.metering import peak_memory
from benchmarks.models import LeNet, num_parameters
from methods import Batch, Context, get_method

from .conftest import device
from .cost_table import OUT

pytestmark = pytest.mark.bench

ROUNDS, WARMUP, BATCH, META_BATCH, N_META = 50, 5, 100, 50, 50


def measure(method_name: str, hparams: dict, width: float = 1.0, n_train: int = 5000) -> dict:
    dev = device()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train, 1, 40, generator=g).to(dev)
    y = (torch.rand(n_train, generator=g) < 0.5).float().to(dev)
    xm = torch.randn(N_META, 1, 40, generator=g).to(dev)
    ym = (torch.arange(N_META) % 2).float().to(dev)
    index, meta_index = torch.arange(n_train, device=dev), torch.arange(N_META, device=dev)
    torch.manual_seed(0)
    model = LeNet((1, 40), width=width).to(dev)
    ctx = Context(model=model, make_optimizer=lambda p: torch.optim.SGD(p, lr=1e-3),
                  n_train=n_train, n_meta=N_META, loss=bce,
                  embed=lambda v: model.features(v).detach(), device=dev, num_classes=2,
                  train_set=Batch(x, y, index),
                  meta_set=Batch(xm, ym, meta_index))
    cls = get_method(method_name)
    method = cls(ctx, cls.Hparams(**hparams))

    def batches():
        idx = torch.randint(n_train, (BATCH,), generator=g).to(dev)
        jdx = torch.randint(N_META, (META_BATCH,), generator=g).to(dev)
        return Batch(x[idx], y[idx], idx), Batch(xm[jdx], ym[jdx], jdx)

    for _ in range(WARMUP):
        method.step(*batches())
    bt, bm = batches()
    with peak_memory(dev, method, bt, bm, exclude=[x, y, xm, ym, index, meta_index]) as mem:
        method.step(bt, bm)
    times = []
    for _ in range(ROUNDS):
        bt, bm = batches()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        method.step(bt, bm)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    return {"ms": 1e3 * float(torch.tensor(times).median()), "peak_mb": mem["peak_bytes"] / 2**20,
            "params": num_parameters(model), "device": str(dev)}


def grid() -> list[dict]:
    rows = []
    for width in (0.5, 1, 2, 4):
        for name, hp in (("bads", {}), ("blo", {"k": 1})):
            rows.append({"axis": "width", "value": width, "method": name, "variant": "net",
                         **measure(name, hp, width=width)})
    for n in (10**3, 10**4, 10**5, 10**6):
        for variant in ("net", "per_sample"):
            for name in ("bads", "blo"):
                rows.append({"axis": "n_train", "value": n, "method": name, "variant": variant,
                             **measure(name, {"weights": variant}, n_train=n)})
    for k in (1, 2, 3, 5):
        rows.append({"axis": "k", "value": k, "method": "blo", "variant": "net",
                     **measure("blo", {"k": k})})
    return rows


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_names = ["width", "n_train", "k"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for col, axis in enumerate(axes_names):
        part = frame[frame.axis == axis]
        for (method, variant), line in part.groupby(["method", "variant"]):
            label = f"{method} ({variant})"
            axes[0, col].plot(line.value, line.ms, marker="o", label=label)
            axes[1, col].plot(line.value, line.peak_mb, marker="o", label=label)
        for row, metric in enumerate(("time per step (ms)", "peak memory per step (MB)")):
            ax = axes[row, col]
            ax.set_xlabel(axis)
            ax.set_ylabel(metric)
            if axis == "n_train":
                ax.set_xscale("log")
            elif axis == "width":
                ax.set_xscale("log", base=2)
                ax.set_xticks(sorted(part.value.unique()), [f"{v:g}" for v in
                                                          sorted(part.value.unique())])
                ax.minorticks_off()
            ax.legend(fontsize=8)
    fig.suptitle(f"Cost of one step ({frame.device.iloc[0]})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def test_scaling_of_step_cost():
    frame = pd.DataFrame(grid())
    OUT.mkdir(parents=True, exist_ok=True)
    frame.to_csv(OUT / "scaling.csv", index=False)
    plot(frame, OUT / "scaling.png")
    per_sample = frame[(frame.axis == "n_train") & (frame.variant == "per_sample")]
    bads = per_sample[per_sample.method == "bads"].set_index("value")
    # lazy per-sample updates: the step's time must not grow with N_t (only the table's memory)
    assert bads.ms.loc[10**6] < 3 * bads.ms.loc[10**3]
    blo_k = frame[frame.axis == "k"].set_index("value")
    assert blo_k.peak_mb.loc[5] > blo_k.peak_mb.loc[1]
