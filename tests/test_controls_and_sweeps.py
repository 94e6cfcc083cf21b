"""Controls in sweeps and reports: --grid axes, the control a row is compared with, the verdict;
blo_frozen is plain training; ClassAct's super-batch reaches it through the harness."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from benchmarks.cli import main
from benchmarks.config import parse_grid
from benchmarks.errors import ConfigError
from benchmarks.harness import PoolBatches
from benchmarks.report import summarize
from benchmarks.report.summary import varying_params, weight_drivers
from benchmarks.scenarios import get_scenario
from benchmarks.sweep import plan
from methods import get_method

BALANCING = get_scenario("balancing")


def test_grid_axes_apply_to_the_methods_that_have_them_and_skip_inert_controls():
    settings, axes = parse_grid(["sigma=1e-5,1", "lr_w=0.001,0.01", "meta_per_class=5,25"],
                                BALANCING, ["bads", "bads_prior_only", "bads_frozen", "mixing"])
    assert settings == [("meta_per_class", [5, 25])]
    assert axes["bads"] == axes["bads_prior_only"] == [("sigma", [1e-5, 1.0]),
                                                       ("lr_w", [0.001, 0.01])]
    assert axes["bads_frozen"] == [] and axes["mixing"] == []
    specs = plan("balancing", "mnist1d", "quick", ["bads", "bads_frozen", "mixing"], [0, 1], {},
                 {}, None, settings, axes)
    count = pd.Series([s.method for s in specs]).value_counts().to_dict()
    assert count == {"bads": 2 * 2 * 2 * 2, "bads_frozen": 2 * 2, "mixing": 2 * 2}
    assert len({s.run_id for s in specs}) == len(specs)
    assert {(s.hparams["sigma"], s.hparams["lr_w"]) for s in specs if s.method == "bads"} == \
        {(1e-5, 0.001), (1e-5, 0.01), (1.0, 0.001), (1.0, 0.01)}


@pytest.mark.parametrize("items, methods, message", [
    (["bads_frozen.sigma=1,2"], ["bads_frozen"], "pins sigma or is unaffected"),
    (["sigma=1,2"], ["bads_frozen", "mixing"], "pinned in, or does not affect"),
    (["nope=1,2"], ["bads"], "neither a setting"),
    (["sigma=1", "bads.sigma=2"], ["bads"], "has a grid already"),
    (["sigma"], ["bads"], "expected KEY=V1,V2"),
    (["bads.k=1,2"], ["bads"], "bads has no hyperparameter 'k'"),
    (["sigma=high"], ["bads"], "expected float"),
])
def test_bad_grids_are_clear_errors(items, methods, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid(items, BALANCING, methods)


def run_row(run_id, method, seed, final, hparams, settings=None):
    config = {"scenario": "balancing", "source": "mnist", "profile": "paper", "method": method,
              "seed": seed, "settings": {"meta_per_class": 25, "lr": 0.001, **(settings or {})},
              "hparams": hparams}
    return {"run_id": run_id, "scenario": "balancing", "source": "mnist", "profile": "paper",
            "method": method, "seed": seed, "metric_name": "accuracy", "final_metric": final,
            "best_metric": final, "time_per_step_ms": 1.0, "peak_mem_mb": 1.0, "status": "ok",
            "config_json": json.dumps(config), "weights_status": "ok"}


def bads_hp(sigma, frozen=False, rho_w=1.0):
    return {"sigma": sigma, "lr_w": 0.001, "rho_w": rho_w, "freeze_weights": frozen}


def test_report_pairs_each_bads_row_with_its_matching_controls_on_the_same_seeds():
    rows = []
    for seed in range(5):
        rows += [run_row(f"a{seed}", "bads", seed, 0.90 + 0.01 * seed, bads_hp(1.0)),
                 run_row(f"b{seed}", "bads", seed, 0.80, bads_hp(1e-5)),
                 run_row(f"c{seed}", "bads_prior_only", seed, 0.85, bads_hp(1.0, rho_w=0.0)),
                 run_row(f"d{seed}", "bads_prior_only", seed, 0.70, bads_hp(1e-5, rho_w=0.0)),
                 # the frozen control ran once, at its defaults: σ is inert there
                 run_row(f"e{seed}", "bads_frozen", seed, 0.88, bads_hp(1e-5, frozen=True))]
    rows.append(run_row("f9", "bads_frozen", 9, 0.10, bads_hp(1e-5, frozen=True)))  # no bads seed 9
    table = summarize(pd.DataFrame(rows)).set_index(["method", "params"])
    high = table.loc[("bads", "sigma=1")]
    assert high["selection"] == "yes"
    assert high["vs_controls"] == ("bads_prior_only +0.0700 [+0.0520, +0.0880] (5/5), "
                                   "bads_frozen +0.0400 [+0.0220, +0.0580] (5/5)")
    low = table.loc[("bads", "sigma=1e-05")]  # beats its own prior-only (0.70), not frozen (0.88)
    assert low["selection"] == "NO"
    assert low["vs_controls"] == ("bads_prior_only +0.1000 [+0.1000, +0.1000] (5/5), "
                                  "bads_frozen -0.0800 [-0.0800, -0.0800] (0/5)")
    assert table.loc[("bads_frozen", "")]["selection"] == ""


def test_a_control_that_ran_but_cannot_be_compared_makes_the_verdict_incomplete():
    rows = [run_row(f"a{s}", "bads", s, 0.9, bads_hp(1.0)) for s in (0, 1)]
    rows += [run_row(f"c{s}", "bads_prior_only", s, 0.5, bads_hp(s + 2.0, rho_w=0.0))
             for s in (0, 1)]  # two configurations, neither at σ = 1
    rows += [run_row(f"e{s}", "bads_frozen", s, 0.5, bads_hp(1e-5, frozen=True),
                     settings={"steps": 99}) for s in (0, 1)]  # another training length
    table = summarize(pd.DataFrame(rows)).set_index("method")
    assert table.loc["bads", "selection"] == "incomplete"
    assert table.loc["bads", "vs_controls"] == "bads_prior_only: no match, bads_frozen: no match"


def test_varying_params_and_weight_drivers_read_the_store():
    runs = pd.DataFrame([run_row("a", "bads", 0, 0.9, bads_hp(1.0)),
                         run_row("b", "bads", 0, 0.8, bads_hp(1e-5)),
                         run_row("m", "mixing", 0, 0.5, {})])
    assert varying_params(runs).tolist() == ["sigma=1", "sigma=1e-05", ""]
    curves = pd.DataFrame(
        [("a", step, "weights", name, value) for step, name, value in [
            (1, "auroc", 0.3), (2, "auroc", 0.9), (1, "data_share", 0.1), (2, "data_share", 0.5),
            (3, "data_share", 0.6), (1, "grad_data", 2.0), (1, "grad_prior", 1.0),
            (2, "grad_data", 1.0), (2, "grad_prior", 4.0), (3, "grad_data", 3.0),
            (3, "grad_prior", 1.0)]], columns=["run_id", "step", "split", "metric_name", "value"])
    drivers = weight_drivers(curves).loc["a"]
    assert drivers["auroc"] == 0.9  # the last evaluation's
    assert drivers["data_share"] == 0.5  # median over evaluations
    assert drivers["data/prior"] == 2.0  # median of 2, 0.25, 3


def test_blo_frozen_takes_train_onlys_steps(tmp_path):
    out = tmp_path / "r"
    assert main(["run", "--scenario", "balancing", "--source", "digits", "--methods",
                 "train_only,blo_frozen", "--steps", "40", "--set", "eval_every=20", "--out",
                 str(out), "--no-progress"]) == 0
    curves = pd.read_csv(out / "curves.csv")
    runs = pd.read_csv(out / "runs.csv").set_index("method")
    test = {m: curves[(curves.run_id == runs.loc[m, "run_id"]) & (curves.split == "test")]
            ["value"].tolist() for m in ("train_only", "blo_frozen")}
    assert test["train_only"] == test["blo_frozen"]  # same batches, same steps
    assert runs.loc["blo_frozen", "weights_status"] == "uniform"


def test_classact_draws_a_super_batch_through_the_harness(make_ctx, splits):
    train, meta = splits
    cls = get_method("classact")
    method = cls(make_ctx(), cls.Hparams(keep=0.25))
    batches = PoolBatches(method.pool(), train, meta, 8, torch.Generator().manual_seed(0),
                          torch.device("cpu"))
    assert len(next(batches)) == 32  # |Bt| / keep


def test_tuned_settings_refuse_a_grid_over_what_was_tuned(tmp_path, capsys):
    assert main(["run", "--scenario", "balancing", "--source", "digits", "--methods", "bads",
                 "--settings", "tuned", "--grid", "steps=10,20", "--out", str(tmp_path)]) == 2
    assert "changes the problem" in capsys.readouterr().err


def test_controls_can_be_compared_on_validation_to_choose_without_the_test_split():
    rows = []
    for seed in range(5):
        rows += [run_row(f"a{seed}", "bads", seed, 0.9, bads_hp(1.0)),
                 run_row(f"e{seed}", "bads_frozen", seed, 0.8, bads_hp(1e-5, frozen=True))]
    curves = pd.DataFrame([(f"{m}{s}", 10, "val", "accuracy", v) for s in range(5)
                           for m, v in (("a", 0.5), ("e", 0.6 + 0.1 * (s % 2)))],
                          columns=["run_id", "step", "split", "metric_name", "value"])
    on_test = summarize(pd.DataFrame(rows), curves).set_index("method")
    on_val = summarize(pd.DataFrame(rows), curves, compare_on="val").set_index("method")
    assert on_test.loc["bads", "selection"] == "yes"
    assert on_val.loc["bads", "selection"] == "NO"
    assert on_val.loc["bads", "vs_controls"].startswith("bads_frozen -0.1400 [")
    assert on_val.loc["bads", "vs_controls"].endswith("(0/5)")


def test_controls_side_by_side_lends_the_matched_controls_columns():
    rows = []
    for seed in (0, 1):
        rows += [run_row(f"a{seed}", "bads", seed, 0.9, bads_hp(1.0)),
                 run_row(f"b{seed}", "bads", seed, 0.7, bads_hp(1e-5)),
                 run_row(f"c{seed}", "bads_prior_only", seed, 0.8, bads_hp(1.0, rho_w=0.0)),
                 run_row(f"d{seed}", "bads_prior_only", seed, 0.6, bads_hp(1e-5, rho_w=0.0))]
    table = summarize(pd.DataFrame(rows), controls_side_by_side=True)
    bads = table[table["method"] == "bads"].set_index("params")
    assert bads.loc["sigma=1", "bads_prior_only final_mean"] == 0.8
    assert bads.loc["sigma=1e-05", "bads_prior_only final_mean"] == 0.6


def test_controls_pickle_and_pin_what_makes_them_controls():
    """Controls reach worker processes by pickle, and ``bads_frozen`` cannot start its weights
    anywhere but β (a zero bias would make them all 0.5)."""
    import pickle

    for name in ("bads_prior_only", "bads_frozen", "blo_frozen"):
        assert pickle.loads(pickle.dumps(get_method(name))) is get_method(name)
    frozen = get_method("bads_frozen")
    assert frozen.fixed["bias_init"] == "logit_beta"
    with pytest.raises(ValueError, match="bias_init"):
        frozen(None, frozen.Hparams(freeze_weights=True, bias_init="zero"))


def test_a_difference_within_seed_noise_is_unresolved_not_a_win():
    """bads beats its control on 2 of 3 seeds and loses the third by more: the mean difference is
    positive but its bootstrap interval contains 0 (and 3 seeds are too few to resolve anything),
    so the verdict is unresolved, not yes."""
    rows = []
    for seed, (mine, theirs) in enumerate([(0.70, 0.60), (0.72, 0.62), (0.50, 0.61)]):
        rows += [run_row(f"a{seed}", "bads", seed, mine, bads_hp(1e-5)),
                 run_row(f"e{seed}", "bads_frozen", seed, theirs, bads_hp(1e-5, frozen=True))]
    table = summarize(pd.DataFrame(rows)).set_index("method")
    assert table.loc["bads", "selection"] == "unresolved"
    assert "unresolved" in table.loc["bads", "vs_controls"] and "(2/3)" in table.loc["bads", "vs_controls"]
    low, high = table.loc["bads", "ci_low"], table.loc["bads", "ci_high"]
    assert 0.50 <= low < table.loc["bads", "final_mean"] < high <= 0.72 + 1e-9


def test_bootstrap_interval_of_a_mean():
    from benchmarks.report.stats import compare, expanded_level, mean_ci

    assert all(v != v for v in mean_ci([0.5]))  # one seed: no interval
    assert mean_ci([0.4, 0.4, 0.4]) == (0.4, 0.4)
    low, high = mean_ci([0.1, 0.2, 0.3, 0.4, 0.5])
    assert 0.1 <= low < 0.3 < high <= 0.5
    assert 0.998 < expanded_level(5) < 0.999 and 0.95 < expanded_level(100) < 0.96
    assert compare([0.01, 0.02, 0.03, 0.02, 0.01]) == "better"
    assert compare([0.01, 0.02, 0.03]) == "unresolved"  # positive on every seed, but 3 seeds
    assert compare([0.0, 0.0]) == "not better"
    assert compare([0.05, -0.04, 0.03, 0.02, 0.01]) == "unresolved"


def test_the_interval_covers_the_mean_about_95_percent_of_the_time_with_8_seeds():
    """The expanded percentile bootstrap's coverage on normal samples (seeded; 200 trials):
    close to the nominal 95% with 8 seeds, where the plain percentile interval gives ~90%."""
    import numpy as np

    from benchmarks.report import stats as st

    rng = np.random.default_rng(0)
    old = st.RESAMPLES
    st.RESAMPLES = 999
    try:
        covered = sum(lo <= 0 <= hi for lo, hi in
                      (st.mean_ci(rng.normal(size=8)) for _ in range(200)))
    finally:
        st.RESAMPLES = old
    assert 0.90 <= covered / 200 <= 0.99
