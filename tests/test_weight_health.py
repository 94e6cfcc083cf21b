"""The degenerate-weights detector on constructed weight vectors, and its place in reports."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from benchmarks.report import summarize
from benchmarks.report.summary import selected_metric
from benchmarks.weight_health import weight_stats, weights_status

N, TARGET = 5000, 25  # balancing: ⌊β·N_t⌋ = ⌊0.005·5000⌋


def status(w: torch.Tensor, target: float | None = TARGET) -> str:
    return weights_status(weight_stats(w), target)


def separated(minority: float = 0.4, majority: float = 1e-3) -> torch.Tensor:
    w = torch.full((N,), majority)
    w[:TARGET] = minority
    return w


def test_separated_weights_are_ok():
    assert status(separated()) == "ok"
    assert status(separated(1.0, 0.0)) == "ok"  # a hard selection of exactly ⌊β·N_t⌋ points


def test_all_weights_near_zero_are_collapsed():
    # the literal paper setting of BADS: every weight ~1e-16, so Σw carries nothing
    w = torch.full((N,), 1e-16)
    w[:TARGET] = 3e-16
    assert weight_stats(w)["ess"] > TARGET  # the ESS alone (scale-free) would not notice
    assert status(w) == "collapsed"
    assert status(torch.zeros(N)) == "collapsed"


def test_normalised_weights_are_judged_without_their_scale():
    """blo trains with w_i / Σ_{k∈Bt} w_k: raw weights of 1e-12 that rank the minority first are
    no collapse; the same vector used at its absolute scale (BADS) would carry nothing."""
    w = separated(minority=3e-12, majority=1e-14)
    assert status(w) == "collapsed"
    assert weights_status(weight_stats(w), TARGET, relative=True) == "ok"
    scaled = weight_stats(w * 1e12)
    assert weight_stats(w)["ess"] == pytest.approx(scaled["ess"])  # the ESS is scale-free
    few = torch.zeros(N)
    few[:2] = 1e-12  # on a handful of points: collapsed at any scale
    assert weights_status(weight_stats(few), TARGET, relative=True) == "collapsed"
    even = torch.full((N,), 1e-12)  # all alike: uniform at any scale
    assert weights_status(weight_stats(even), TARGET, relative=True) == "uniform"


def test_auroc_measures_group_separation_scale_free():
    groups = torch.ones(N, dtype=torch.long)
    groups[:TARGET] = 0  # the favoured group
    assert weight_stats(separated(), groups)["auroc"] == 1.0
    assert weight_stats(separated(1e-14, 3e-12), groups)["auroc"] == 0.0  # reversed
    assert weight_stats(torch.full((N,), 0.3), groups)["auroc"] == 0.5  # ties count ½
    w = torch.rand(N, generator=torch.Generator().manual_seed(0))
    w[:TARGET] = w[:TARGET] * 1e9  # far above any majority weight except none: perfect
    assert weight_stats(w, groups)["auroc"] == 1.0
    assert weight_stats(w * 1e-20, groups)["auroc"] == 1.0
    w[0] = math.nan  # examples without a weight drop out of both groups
    assert weight_stats(w, groups)["auroc"] == 1.0
    assert math.isnan(weight_stats(separated(), torch.ones(N, dtype=torch.long))["auroc"])


def test_weight_on_a_handful_of_points_is_collapsed():
    w = torch.zeros(N)
    w[:2] = 0.9  # ESS = 2, far below ⌊β·N_t⌋ = 25
    assert weight_stats(w)["ess"] == pytest.approx(2.0)
    assert status(w) == "collapsed"
    assert status(w, target=None) == "ok"  # without a selection ratio only the band test applies


def test_equal_or_saturated_weights_are_uniform():
    assert status(torch.full((N,), 0.5)) == "uniform"
    assert status(torch.ones(N)) == "uniform"
    w = 1.0 + 0.05 * torch.randn(N, generator=torch.Generator().manual_seed(0))  # CV 5%
    assert status(w) == "uniform"
    w = 1.0 + torch.rand(N, generator=torch.Generator().manual_seed(0))  # CV ~0.19: spread out
    assert status(w) == "ok"


def test_examples_without_a_weight_are_ignored():
    w = separated()
    w[TARGET: 2 * TARGET] = math.nan  # l2rw: examples not yet drawn have no weight
    stats = weight_stats(w)
    assert stats["n"] == N - TARGET
    assert status(w) == "ok"
    assert status(torch.full((N,), math.nan)) == ""


def _run_row(run_id: str, method: str, seed: int, weights_status: str) -> dict:
    config = {"settings": {"meta_per_class": 25}, "hparams": {}, "method": method}
    return {"run_id": run_id, "scenario": "balancing", "source": "mnist", "profile": "paper",
            "method": method, "seed": seed, "metric_name": "accuracy", "final_metric": 0.9,
            "best_metric": 0.95, "time_per_step_ms": 1.0, "peak_mem_mb": 1.0, "status": "ok",
            "config_json": json.dumps(config), "weights_status": weights_status}


def test_report_counts_and_names_degenerate_runs():
    runs = pd.DataFrame([_run_row("a", "bads", 0, "collapsed"), _run_row("b", "bads", 1, "ok"),
                         _run_row("c", "bads", 2, "collapsed"), _run_row("d", "mixing", 0, "")])
    table = summarize(runs).set_index("method")
    assert table.loc["bads", "n_degenerate"] == 2
    assert table.loc["bads", "weights"] == "collapsed 2/3, ok 1/3"
    assert table.loc["mixing", "n_degenerate"] == 0 and table.loc["mixing", "weights"] == ""


def test_selected_metric_is_test_at_the_best_validation_step():
    rows = [("r", 1, "val", 0.6), ("r", 2, "val", 0.9), ("r", 3, "val", 0.7),
            ("r", 1, "test", 0.99), ("r", 2, "test", 0.5), ("r", 3, "test", 0.98)]
    curves = pd.DataFrame(rows, columns=["run_id", "step", "split", "value"])
    assert selected_metric(curves)["r"] == 0.5  # chosen by validation, whatever test says


def test_side_by_side_puts_paper_and_tuned_results_in_one_row():
    from benchmarks.report import side_by_side

    paper = summarize(pd.DataFrame([_run_row("a", "bads", 0, "collapsed"),
                                    _run_row("b", "bads", 1, "ok"),
                                    _run_row("c", "mixing", 0, "")]))
    tuned = summarize(pd.DataFrame([_run_row("d", "bads", 0, "ok")]))
    table = side_by_side({"paper": paper, "tuned": tuned}).set_index("method")
    assert table.loc["bads", "paper degenerate"] == "1/2"
    assert table.loc["bads", "tuned degenerate"] == "0/1"
    assert table.loc["bads", "paper"].startswith("0.9000 ± 0.0000 (2)")
    assert table.loc["mixing", "paper degenerate"] == "n/a" and pd.isna(table.loc["mixing", "tuned"])
