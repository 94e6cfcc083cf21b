"""The cost metering the benchmarks rely on: memory grows with the work, and the benchmark JSON
carries every field of the COST table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from toys import methods_without_requirements

from benchmarks.data import load_source
from benchmarks.harness import set_up
from benchmarks.metering import peak_memory
from benchmarks.scenarios import get_scenario
from benchmarks.sweep import plan

ROOT = Path(__file__).resolve().parents[1]


def step_peak(method: str, batch_size: int) -> float:
    scenario = get_scenario("balancing")
    spec = plan("balancing", "digits", "quick", [method], [0], {"batch_size": batch_size}, {})[0]
    data = scenario.build(load_source("digits"), scenario.Settings(**spec.settings), 0)
    setup = set_up(spec, scenario, data, torch.device("cpu"))
    for _ in range(2):
        setup.method.step(*setup.next_batches())
    bt, bm = setup.next_batches()
    with peak_memory(torch.device("cpu"), setup.method, bt, bm, exclude=setup.datasets) as mem:
        setup.method.step(bt, bm)
    return mem["peak_bytes"]


def test_peak_memory_of_a_step_grows_with_batch_size():
    for method in ("train_only", "bads"):
        small, large = step_peak(method, 8), step_peak(method, 64)
        # activations of 56 more 8x8 digits through LeNet: tens of KB at least
        assert large > small + 20_000, (method, small, large)


def test_benchmark_json_has_every_field_of_the_cost_table(tmp_path):
    sys.path.insert(0, str(ROOT))
    from tests.bench.cost_table import cost_frame, results_from_json

    out = tmp_path / "bench.json"
    env = {**os.environ, "DPS_BENCH_ROUNDS": "3", "DPS_BENCH_OUT": str(tmp_path)}
    # the three step-cost cases, not the timing-ratio check (this test is about the fields)
    select = "balancing and (train_only or bads) and not at_most_its_limit"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "bench", "-p", "no:cacheprovider",
         "tests/bench/test_step_cost.py", "-k", select, "--benchmark-enable",
         f"--benchmark-json={out}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = results_from_json(out)
    assert {case for _, case in results} >= {"train_only", "bads", "bads_limit"}
    frame = cost_frame(results)
    assert list(frame.columns) == ["method", "scenario", "ms/step", "x train_only", "x BADS limit",
                                   "peak MB", "mem x train_only", "mem x BADS limit", "offline s"]
    row = frame.set_index("method").loc["bads_limit"]
    assert row["x BADS limit"] == 1.0 and row["ms/step"] > 0 and row["peak MB"] > 0
    assert (tmp_path / "COST.md").read_text().count("| bads") >= 2  # bads and bads_limit rows


def test_gpu_bench_script_runs_on_the_cpu_but_for_the_device(tmp_path):
    """``tox -e bench-gpu``'s command with its environment, on the CPU (DPS_BENCH_DEVICE=cpu),
    few rounds and the ratio bounds recorded, not enforced: every method's step on the paper
    profile's model (synthetic pixels when the MNIST files are absent) goes into COST-cuda.md."""
    env = {**os.environ, "DPS_BENCH_PROFILE": "paper", "DPS_BENCH_DEVICE": "cpu",
           "DPS_BENCH_COST": "COST-cuda.md", "DPS_BENCH_OUT": str(tmp_path),
           "DPS_BENCH_ROUNDS": "2", "DPS_BENCH_WARMUP": "1", "DPS_BENCH_BLOCKS": "1",
           "DPS_BENCH_BLOCK_STEPS": "3",
           "DPS_BENCH_NO_BOUNDS": "1"}
    env.pop("DPS_DATA_DIR", None)  # the synthetic fallback, as on a bare GPU machine
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "bench", "-p", "no:cacheprovider",
         "tests/bench/test_step_cost.py", "tests/bench/test_peers.py", "--benchmark-enable",
         f"--benchmark-json={tmp_path / 'bench.json'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (tmp_path / "COST-cuda.md").read_text()
    assert "balancing (mnist (synthetic pixels))" in text and "BADS-limit check" in text

    for name in methods_without_requirements():
        assert f"| {name} | balancing" in text, name


def test_gpu_bench_refuses_to_run_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot be shown here")
    env = {**os.environ, "DPS_BENCH_DEVICE": "cuda", "DPS_BENCH_OUT": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "bench", "-p", "no:cacheprovider",
         "tests/bench/test_step_cost.py", "-k", "train_only", "--benchmark-enable"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "sees no CUDA device" in proc.stdout + proc.stderr
