"""Time ratios of compared cases, robust to a machine whose speed drifts while it is measured.

Sequential medians (one case's rounds, then the next case's) carry the drift between the two
blocks into their ratio: on a shared 2-vCPU machine we saw the same code measure from 1.12x to
1.18x its limit, run to run. Here the cases take turns in short blocks of consecutive steps, so
each block measures a case in its steady state (a step after a step of the same method, as in
training) and every case sees the same drift; the ratio is that of the medians over all blocks.
Alternating single steps instead would charge a method's after-effects (the caches its step left
cold) to whichever case runs next.
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks.harness import RunSetup


def blocked_medians(setups: dict[str, RunSetup], blocks: int, steps: int, warmup: int = 5
                    ) -> dict[str, float]:
    """Median ms of one ``method.step`` per case, the cases taking turns in ``blocks`` blocks of
    ``steps`` timed steps (each block after ``warmup`` untimed steps of the same case)."""
    times: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(blocks):
        for name, setup in setups.items():
            for i in range(warmup + steps):
                bt, bm = setup.next_batches()
                sync(bt.x.device)
                start = time.perf_counter()
                setup.method.step(bt, bm)
                sync(bt.x.device)
                if i >= warmup:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
