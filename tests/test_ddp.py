"""One BADS run across two processes (torchrun, gloo, CPU) matches one process with the same
global batch and seed, step for step, up to floating-point tolerance."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.cli import main
from benchmarks.config import ConfigError
from benchmarks.ddp import check_shardable
from benchmarks.sweep import plan

REPO = Path(__file__).resolve().parent.parent
RUN = ["run", "--scenario", "balancing", "--methods", "bads", "--steps", "30",
       "--set", "eval_every=10", "--no-progress"]
# the diagnostics of φ's gradient are each rank's shard's (documented), not the global batch's
SHARD_LOCAL = {"grad_prior", "grad_data", "data_share"}


def _run(args: list[str], cwd: Path, ranks: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    head = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
             f"--nproc-per-node={ranks}", "-m", "benchmarks.cli"] if ranks
            else [sys.executable, "-m", "benchmarks.cli"])
    return subprocess.run(head + args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    single = _run([*RUN, "--out", "single"], tmp_path)
    assert single.returncode == 0, single.stdout + single.stderr
    ddp = _run([*RUN, "--out", "ddp", "--ddp"], tmp_path, ranks=2)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    assert ddp.stdout.count("1 runs done") == 1  # rank 0 reports and writes, once

    a, b = pd.read_csv(tmp_path / "single" / "curves.csv"), pd.read_csv(tmp_path / "ddp" / "curves.csv")
    keys = ["run_id", "step", "split", "metric_name"]
    both = a.merge(b, on=keys, suffixes=("_one", "_ddp"))
    assert len(both) == len(a) == len(b)  # the same run (one config), the same curves
    both = both[~both.metric_name.isin(SHARD_LOCAL)]
    assert set(both.metric_name) >= {"loss_train", "loss_meta", "sum_w", "accuracy"}
    close = (both.value_one - both.value_ddp).abs() <= 1e-5 + 1e-4 * both.value_one.abs()
    assert close.all(), both[~close]
    wa = pd.read_csv(glob.glob(str(tmp_path / "single" / "weights" / "*.csv"))[0])
    wb = pd.read_csv(glob.glob(str(tmp_path / "ddp" / "weights" / "*.csv"))[0])
    assert (wa.weight - wb.weight).abs().max() < 1e-6
    row = pd.read_csv(tmp_path / "ddp" / "runs.csv").iloc[0]
    assert row.status == "ok" and row.device == "cpu x2 ddp" and row.time_per_step_ms > 0


def test_ddp_refuses_what_it_cannot_shard():
    (mixing,) = plan("balancing", None, "quick", ["mixing"], [0], {}, {})
    with pytest.raises(ConfigError, match="mixing cannot train one run across processes"):
        check_shardable(mixing, 2)
    (bads,) = plan("balancing", None, "quick", ["bads"], [0], {"batch_size": 99}, {})
    with pytest.raises(ConfigError, match="batch_size divisible by 2"):
        check_shardable(bads, 2)
    check_shardable(plan("balancing", None, "quick", ["bads"], [0], {}, {})[0], 2)


def test_ddp_outside_torchrun_says_how_to_start_it(tmp_path, monkeypatch, capsys):
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert main([*RUN, "--out", str(tmp_path / "x"), "--ddp"]) == 2
    assert "torchrun --nproc-per-node 2 -m benchmarks.cli run ... --ddp" in capsys.readouterr().err


def test_bads_per_sample_weights_are_refused_under_ddp():
    import torch

    from benchmarks.conformance import make_context
    from methods import get_method
    from methods.replicas import Replicas

    ctx = make_context(torch.float32)
    ctx.replicas = Replicas(world=2, rank=0)
    cls = get_method("bads")
    with pytest.raises(ValueError, match="weights=net only"):
        cls(ctx, cls.Hparams(weights="per_sample"))
    assert cls(ctx, cls.Hparams()).world == 2


def test_a_batch_that_does_not_split_evenly_is_refused():
    import torch

    from benchmarks.harness import shard
    from methods import Batch

    batch = Batch(torch.arange(10.0).view(5, 2), torch.zeros(5), torch.arange(5))
    with pytest.raises(ValueError, match="does not split evenly over 2 processes"):
        shard(batch, 0, 2)
    halves = [shard(Batch(batch.x[:4], batch.y[:4], batch.index[:4]), r, 2) for r in (0, 1)]
    assert [h.index.tolist() for h in halves] == [[0, 1], [2, 3]]


def test_ddp_checks_the_device_before_joining(monkeypatch):
    from benchmarks.ddp import init_from_torchrun

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="--device 'cuda0'"):
        init_from_torchrun("cuda0")
