"""Per-sample weights for millions of examples off the accelerator: BADS with one logit per
example (``weights=per_sample``) at N_t up to 10 million, its logits and their Adam state stored on
the device, in host memory (``cpu``) or in a memory-mapped file (``memmap``).

The paper's stated limitation is that per-sample weights for a large Dt need accelerator memory.
Here only the minibatch's rows travel to the device each step (``methods.weighting.RowParams``),
so the table's size costs host memory or disk, not device memory, and a step's time does not grow
with N_t. This measures it: for each N_t and storage, the table's bytes in the model's device memory
(CUDA: ``memory_allocated`` before and after setting BADS up; CPU: the growth of the process's
anonymous memory, ``RssAnon``, which a file-backed ``memmap`` table does not add to; on a CPU the
device is the host, so ``device`` and ``cpu`` storage are the same memory there, and the growth is
only meaningful for tables of megabytes, which the allocator maps afresh) and the median
time of a step. Batches are synthetic (64 random
vectors of 40 features, a 2-layer MLP): the data of 10 million examples is never built, since only
the weight table's cost is measured.

    python -m benchmarks.gpu.offdevice_weights [--sizes 1e4,1e7] [--device auto] [--out DIR]

writes ``offdevice-weights.csv`` and ``.md`` to --out (default results/ift/). A few minutes on
2 CPU cores at 10 million (setting the table up is most of it).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

BATCH, META, FEATURES, STEPS, WARMUP = 64, 32, 40, 30, 3


def _anon_bytes() -> int:
    """The process's anonymous resident memory (Linux ``RssAnon``), 0 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(n_train: int, storage: str, device: torch.device) -> dict:
    """One (N_t, storage) point: the table's bytes in device memory and the ms per step."""
    from benchmarks.metering import StepTimer
    from methods import Batch, Context, get_method

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, 2)).to(device)
    model.features = lambda x: model[:2](x)  # type: ignore[attr-defined]

    def loss(out, y):
        return nn.functional.cross_entropy(out, y, reduction="none")

    ctx = Context(model=model, make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
                  n_train=n_train, n_meta=1000, loss=loss,
                  embed=lambda x: model.features(x).detach(), device=device, num_classes=2)
    gc.collect()
    before = (torch.cuda.memory_allocated(device) if device.type == "cuda" else _anon_bytes())
    started = time.perf_counter()
    cls = get_method("bads")
    method = cls(ctx, cls.Hparams(weights="per_sample", weight_storage=storage, beta=0.05))
    setup_s = time.perf_counter() - started
    after = (torch.cuda.memory_allocated(device) if device.type == "cuda" else _anon_bytes())
    gen = torch.Generator().manual_seed(0)

    def batches():
        idx = torch.randint(n_train, (BATCH,), generator=gen)
        x = torch.randn(BATCH, FEATURES, generator=gen)
        y = torch.randint(2, (BATCH,), generator=gen)
        xm = torch.randn(META, FEATURES, generator=gen)
        ym = torch.randint(2, (META,), generator=gen)
        return (Batch(x.to(device), y.to(device), idx.to(device)),
                Batch(xm.to(device), ym.to(device), torch.arange(META, device=device)))

    for _ in range(WARMUP):
        method.step(*batches())
    timer = StepTimer(device)  # the harness's own timing (CUDA synchronised around the step)
    for _ in range(STEPS):
        bt, bm = batches()
        with timer.time():
            method.step(bt, bm)
    table_mb = n_train * 4 * 4 / 2**20  # φ, Adam's m and v, the step count: float32 each
    row = {"n_train": n_train, "storage": storage, "device": str(device),
           "table_mb": round(table_mb, 1),
           "table_on_device_mb": round(max(after - before, 0) / 2**20, 1),
           "measured_by": "cuda memory_allocated" if device.type == "cuda" else "RssAnon growth",
           "setup_s": round(setup_s, 2), "ms_per_step": round(timer.median_ms(), 2),
           "threads": torch.get_num_threads()}
    del method, ctx
    gc.collect()
    return row


def _markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e4,1e7", help="N_t values, comma-separated")
    parser.add_argument("--storages", default="device,cpu,memmap")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--out", default="results/ift", help="folder for the table")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    os.environ.setdefault("DPS_MEMMAP_DIR", str(Path(args.out).resolve()))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    measure(1000, "device", device)  # imports and first-call allocations, not measured
    rows = []
    for size in (int(float(s)) for s in args.sizes.split(",")):
        for storage in args.storages.split(","):
            rows.append(measure(size, storage, device))
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    frame.to_csv(out / "offdevice-weights.csv", index=False)
    (out / "offdevice-weights.md").write_text(
        "BADS with per-sample weights (`weights=per_sample`): where the table of N_t logits and "
        "their Adam state lives, and what a step costs (`python -m benchmarks.gpu."
        "offdevice_weights`). `table_on_device_mb`: on CUDA the device memory the table takes; on "
        "a CPU the anonymous host memory it adds (there the device is the host, so `device` and "
        "`cpu` storage are the same memory, while a file-backed `memmap` table adds none). Only "
        "the minibatch's rows move per step, so `ms_per_step` does not grow with N_t.\n\n"
        + _markdown(frame) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
