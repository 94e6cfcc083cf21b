"""`dps-bench report --to`, `retrain` and `claims` on a small synthetic store with known numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from benchmarks.cli import main
from benchmarks.report.build import collect, write_report
from benchmarks.report.claims import check_claims, claims_markdown
from benchmarks.report.quality import category_weights, precision_at_k, weight_quality
from benchmarks.retrain import plan_retrain, ranking
from benchmarks.store import Store
from benchmarks.sweep import plan

METHODS = ["train_only", "bads", "bads_prior_only", "blo"]
SEEDS = [0, 1, 2]
N = 200  # Dt size of the synthetic runs; the first 20 are the minority


def final_metric(method: str, seed: int, mpc: int) -> float:
    base = {"train_only": 0.50, "bads": 0.80, "bads_prior_only": 0.70, "blo": 0.75}[method]
    return base + 0.01 * seed + (0.05 if mpc == 25 else 0.0)


def time_ms(method: str) -> float:
    return {"train_only": 2.0, "bads": 2.5, "bads_prior_only": 2.5, "blo": 6.0}[method]


def synthetic_weights(method: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = np.where(np.arange(N) < 20, "minority", "majority")
    w = rng.uniform(0, 1, N)
    if method == "bads":
        w[:20] += 0.8  # separates well
    return pd.DataFrame({"index": np.arange(N), "weight": w, "group": group})


def write_store(root, extra_sigma: bool = True) -> Store:
    """A store of 4 methods x 3 seeds x Dm 5 and 25 per class (and bads at sigma=1), with final
    metrics, times, curves and weights set by the functions above."""
    store = Store(root)
    store.prepare()
    specs = []
    for mpc in (5, 25):
        specs += plan("balancing", "mnist1d", "quick", METHODS, SEEDS, {"meta_per_class": mpc},
                      {m: {} for m in METHODS})
    if extra_sigma:
        specs += plan("balancing", "mnist1d", "quick", ["bads"], SEEDS, {"meta_per_class": 25},
                      {"bads": {"sigma": 1.0}})
    for spec in specs:
        mpc = spec.settings["meta_per_class"]
        value = final_metric(spec.method, spec.seed, mpc) - (0.1 if spec.hparams.get("sigma") == 1.0
                                                            else 0.0)
        row = {"run_id": spec.run_id, "scenario": "balancing", "source": "mnist1d",
               "profile": "quick", "method": spec.method, "seed": spec.seed, "steps": 20,
               "metric_name": "accuracy", "final_metric": value, "best_metric": value,
               "time_per_step_ms": time_ms(spec.method), "peak_mem_mb": 2 * time_ms(spec.method),
               "device": "cpu", "status": "ok", "error": "", "config_json": spec.to_json(),
               "torch_version": "2.13.0+cpu", "git_sha": "x", "wall_s": 1.0, "threads": 1,
               "prepare_s": 0.0, "weights_status": "ok" if spec.method != "train_only" else "",
               "code_sha": "y", "jobs": 1, "load_avg": 0.0, "cpus": 2}
        curves = pd.DataFrame(
            [(10, "test", "accuracy", value - 0.1), (20, "test", "accuracy", value),
             (10, "val", "accuracy", value), (20, "val", "accuracy", value)]
            + ([(s, "weights", f"mean_weight:{g}", 0.5 + (0.2 if g == "minority" else 0.0))
                for s in (10, 20) for g in ("minority", "majority")]
               if spec.method != "train_only" else [])
            + ([(s, "weights", "data_share", 1e-3 * s) for s in (10, 20)]
               if spec.method.startswith("bads") else []),
            columns=["step", "split", "metric_name", "value"])
        weights = synthetic_weights(spec.method, spec.seed) if spec.method != "train_only" else None
        store.write(row, curves, weights)
    return store


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    write_store(root / "bal")
    out = root / "report"
    written = write_report([str(root / "bal")], out, ["md", "csv", "tex"], ["png", "svg"])
    return root, out, written


def test_final_table_has_the_right_rows_numbers_best_and_ranks(report):
    _, out, _ = report
    table = pd.read_csv(out / "tables" / "balancing-final.csv", keep_default_na=False)
    assert list(table["method"]) == METHODS  # registry order; the sigma=1 run is not a row
    for setting, mpc in (("mnist1d · quick · meta_per_class=5", 5),
                         ("mnist1d · quick · meta_per_class=25", 25)):
        for method, cell in zip(table["method"], table[setting], strict=True):
            values = [final_metric(method, s, mpc) for s in SEEDS]
            mean, std = np.mean(values), np.std(values, ddof=1)
            assert cell.startswith(f"{mean:.4f} ± {std:.4f} [")
            assert "(n=3)" in cell
    ranks = dict(zip(table["method"], table["mean rank"], strict=True))
    assert ranks == {"train_only": 4.0, "bads": 1.0, "bads_prior_only": 3.0, "blo": 2.0}
    markdown = (out / "tables" / "balancing-final.md").read_text()
    assert "| bads | **0.8" in markdown  # the best mean of each column is bold
    assert "\\textbf{0.8" in (out / "tables" / "balancing-final.tex").read_text()


def test_cost_table_ratios_are_to_train_only_in_the_same_setting(report):
    _, out, _ = report
    cost = pd.read_csv(out / "tables" / "balancing-cost.csv")
    blo = cost[cost["method"] == "blo"].iloc[0]
    assert blo["time ×train_only"] == pytest.approx(6.0 / 2.0)
    assert blo["memory ×train_only"] == pytest.approx(3.0)
    caption = (out / "tables" / "balancing-cost.md").read_text()
    assert "device cpu" in caption and "threads 1" in caption and "torch 2.13.0+cpu" in caption


def test_weight_quality_matches_scikit_learn(report):
    _, out, _ = report
    quality = pd.read_csv(out / "tables" / "balancing-weight-quality.csv")
    row = quality[(quality["method"] == "bads")].iloc[0]
    aurocs = []
    for seed in SEEDS:
        w = synthetic_weights("bads", seed)
        aurocs.append(roc_auc_score(w["group"] == "minority", w["weight"]))
    assert row["AUROC"].startswith(f"{np.mean(aurocs):.3f} ± {np.std(aurocs, ddof=1):.3f}")
    assert row["base rate"] == pytest.approx(0.1)


def test_auroc_equals_scikit_learn_on_random_and_tied_weights():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(5, 60))
        w = rng.integers(0, 4, n).astype(float)  # many ties
        groups = np.where(rng.uniform(size=n) < 0.3, "clean", "noisy")
        if len(set(groups)) < 2:
            continue
        q = weight_quality(pd.DataFrame({"weight": w, "group": groups}), beta=0.5)
        assert q["auroc"] == pytest.approx(roc_auc_score(groups == "clean", w))


def test_category_weights_are_means_relative_to_the_run_mean():
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "status": ["ok", "ok", "error"]})
    frames = {
        "a": pd.DataFrame({"index": range(4), "weight": [1.0, 3.0, 0.5, 0.5],
                           "group": ["target", "target", "other", "other"],
                           "category": ["Astronaut", "Astronaut", "City", "Food"]}),
        "b": pd.DataFrame({"index": range(2), "weight": [0.2, 0.4], "group": ["target", "other"]}),
    }
    c = category_weights(runs, frames.get).set_index("category")
    assert list(c.index) == ["Astronaut", "City", "Food"] and set(c.run_id) == {"a"}
    assert c.loc["Astronaut", "mean_weight"] == 2.0 and c.loc["City", "group"] == "other"
    assert c.loc["Astronaut", "relative"] == pytest.approx(2.0 / 1.25)
    assert c.loc["Food", "relative"] == pytest.approx(0.5 / 1.25)
    assert category_weights(runs[runs.run_id == "b"], frames.get).empty  # no categories stored


def test_precision_at_k_shares_ties_and_scores_equal_weights_at_the_base_rate():
    positive = np.array([True, False, True, False, False])
    assert precision_at_k(np.array([5, 4, 3, 2, 1.0]), positive, 2) == 0.5
    assert precision_at_k(np.array([1, 9, 0, 8, 0.0]), positive, 2) == 0.0
    assert precision_at_k(np.ones(5), positive, 2) == pytest.approx(0.4)  # base rate 2/5
    # one sure hit, then two of the three tied weights: one of them a hit
    assert precision_at_k(np.array([9, 1, 1, 1, 0.0]), np.array([True, True, False, False, True]),
                          3) == pytest.approx((1 + 2 * 1 / 3) / 3)
    assert precision_at_k(np.array([np.nan, 1.0]), np.array([True, False]), 1) == 0.0
    assert math.isnan(precision_at_k(np.ones(3), np.ones(3, bool), 0))


def test_every_figure_is_written_and_non_empty(report):
    _, out, written = report
    figures = sorted(p.name for p in (out / "figures").iterdir())
    for name in ("balancing-cost", "balancing-curves", "balancing-meta-size",
                 "balancing-group-weights", "balancing-weight-histograms",
                 "balancing-gradient-shares"):
        for fmt in ("png", "svg"):
            assert f"{name}.{fmt}" in figures
            assert (out / "figures" / f"{name}.{fmt}").stat().st_size > 1000
    assert any(n.startswith("balancing-sensitivity") for n in figures)
    text = (out / "REPORT.md").read_text()
    assert "![balancing: meta-set size](figures/balancing-meta-size.png)" in text
    assert all(p.exists() and p.stat().st_size > 0 for p in written)


def test_sensitivity_and_leaderboard(report):
    _, out, _ = report
    sens = pd.read_csv(out / "tables" / "balancing-sensitivity.csv", keep_default_na=False)
    sigma = sens[sens["param"] == "sigma"]
    assert sorted(sigma["value"].astype(float)) == [1e-5, 1.0]
    at_one = sigma[sigma["value"].astype(float) == 1.0].iloc[0]
    expected = np.mean([final_metric("bads", s, 25) - 0.1 for s in SEEDS])
    assert at_one["final (mean ± std)"].startswith(f"{expected:.4f}")
    assert dict(zip(sigma["value"].astype(float), sigma["default"], strict=True)) == {
        1e-5: "default", 1.0: ""}
    board = pd.read_csv(out / "tables" / "leaderboard.csv")
    assert board.iloc[0]["method"] == "bads" and board.iloc[0]["blocks"] == 2
    assert board.iloc[-1]["method"] == "train_only"


def test_claims_from_the_synthetic_store(report):
    root, _, _ = report
    findings = {f.claim.split(",")[0]: f for f in check_claims(collect([str(root / "bal")]))}
    cost = findings["BADS costs about as much as non-DPS training (time and memory per step)"]
    assert cost.verdict.startswith("holds") and "1.25x time" in cost.shows
    assert any(f.verdict == "no evidence" for f in findings.values())  # no MNIST, no denoising
    weights = [f for f in findings.values() if f.claim.startswith("BADS's weights")][0]
    assert weights.verdict.startswith("holds on the means")  # 3 seeds cannot resolve it
    text = claims_markdown(list(findings.values()))
    assert text.count("\n| ") == 1 + len(findings)


def test_retrain_ranks_weights_and_breaks_ties_at_random():
    w = pd.DataFrame({"index": [0, 1, 2, 3, 4], "weight": [0.1, 0.9, np.nan, 0.5, 0.5]})
    order = ranking(w, seed=0)
    assert order[0] == 1 and set(order[1:3]) == {3, 4} and order[-1] == 2
    flat = pd.DataFrame({"index": range(50), "weight": np.ones(50)})
    assert list(ranking(flat, 0)) != list(range(50))  # equal weights: a random order


def test_retrain_command_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "runs"
    common = ["--scenario", "balancing", "--source", "digits", "--steps", "6", "--set",
              "eval_every=3", "--seeds", "0", "--out", str(out), "--no-progress"]
    assert main(["run", "--methods", "bads,train_only", *common]) == 0
    tasks = plan_retrain(out, [0.5])
    assert sorted(t.source_method for t in tasks) == ["bads", "random"]
    assert main(["retrain", "--from", str(out), "--fractions", "50%", "--no-progress"]) == 0
    r = Store(out / "retrain").runs()
    assert sorted(r["source_method"]) == ["bads", "random"] and (r["status"] == "ok").all()
    n_t = len(Store(out).weights(Store(out).runs().query("method == 'bads'").run_id.iloc[0]))
    assert set(r["n_selected"]) == {n_t // 2}
    assert json.loads(r["config_json"].iloc[0])["method"] == "train_only"
    assert not list((out / "retrain" / "claims").glob("*.json"))  # every lease released
    bads = [t for t in tasks if t.source_method == "bads"][0]
    source = Store(out)
    w = source.weights(bads.source_run_id)["weight"].to_numpy()
    top = np.argsort(-w, kind="stable")[: len(w) // 2]
    if len(set(w)) == len(w):  # no ties: the kept points are exactly the top half
        assert list(bads.selected()) == sorted(top)
    assert w[bads.selected()].min() >= np.median(w) - 1e-12
    capsys.readouterr()
    assert main(["retrain", "--from", str(out), "--fractions", "0.5", "--no-progress"]) == 0
    assert "2 skipped (already complete)" in capsys.readouterr().out
    assert main(["report", "--out", str(out), "--to", str(tmp_path / "rep"), "--format", "md,csv"]) == 0
    retrain = pd.read_csv(tmp_path / "rep" / "tables" / "balancing-retrain.csv")
    assert sorted(retrain["weights of"]) == ["bads", "random"]


@pytest.mark.parametrize("argv, message", [
    (["retrain", "--from", "NOPE", "--fractions", "0.5"], "no results in"),
    (["retrain", "--from", "STORE", "--fractions", "1.5"], "must lie in (0, 1]"),
    (["retrain", "--from", "STORE", "--fractions", "abc"], "is not a number"),
    (["retrain", "--from", "STORE", "--methods", "mwn"], "no ok run with weights of mwn"),
    (["retrain", "--from", "STORE", "--fractions", "0.001"], "keep no point"),
    (["report", "--out", "STORE", "--to", "REP", "--methods", "bads"], "drop them, or drop --to"),
    (["report", "--out", "STORE", "--to", "REP", "--format", "md,docx"], "choose from"),
    (["report", "--out", "STORE", "--to", "REP", "--figures", "gif"], "choose from"),
    (["report", "--out", "STORE", "--format", "tex"], "need --to"),
])
def test_bad_report_and_retrain_input_is_a_clear_error(tmp_path, capsys, argv, message):
    write_store(tmp_path / "store", extra_sigma=False)
    argv = [a.replace("STORE", str(tmp_path / "store")).replace("NOPE", str(tmp_path / "nope"))
            .replace("REP", str(tmp_path / "rep")) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


_PROBE = """<script>
window.addEventListener("load", function () {
  var out = {images: Array.prototype.map.call(document.images, function (i) {
               return {alt: i.alt, ok: i.complete && i.naturalWidth > 0}; }),
             rows: Array.prototype.map.call(document.querySelectorAll("table.report-table"),
               function (t) { return t.tBodies[0].rows.length; })};
  var pre = document.createElement("pre"); pre.id = "probe";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


def test_report_html_of_a_store_renders_every_table_and_figure_in_a_browser(tmp_path):
    import html
    import os
    import re

    from benchmarks.report.browser import dump_dom, find_browser
    from benchmarks.report.build import ReportBuilder

    if find_browser() is None:
        reason = "no Chromium found (set DPS_BROWSER or `apt-get install chromium`)"
        if os.environ.get("DPS_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"DPS_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    write_store(tmp_path / "bal")
    out = tmp_path / "report"
    write_report([str(tmp_path / "bal")], out, ["html"], ["png"])
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    probe = out / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dump_dom(probe), re.S)
    assert found, "the probe did not run"
    seen = json.loads(html.unescape(found.group(1)))
    doc = ReportBuilder(collect([str(tmp_path / "bal")]), tmp_path / "again", ["png"]).document()
    assert len(seen["images"]) == len(doc.figures()) >= 6
    assert all(i["ok"] for i in seen["images"]), seen["images"]
    assert seen["rows"] == [len(t.frame) for t in doc.tables()]


def test_two_directories_that_differ_in_the_model_lr_get_one_row_each(tmp_path):
    """A results directory and its tuned copy (same hyperparameters, another lr): both are
    default configurations in the same setting, so each gets its own labelled row, never an
    average of the two."""
    write_store(tmp_path / "a", extra_sigma=False)
    store = Store(tmp_path / "b")
    store.prepare()
    for row in Store(tmp_path / "a").runs().to_dict("records"):
        config = json.loads(row["config_json"])
        if config["method"] != "bads":
            continue
        config["settings"]["lr"] = 0.123
        config.pop("suite_version")
        from benchmarks.config import RunSpec

        spec = RunSpec(**config)
        row.update(run_id=spec.run_id, config_json=spec.to_json(), final_metric=0.1)
        store.write(row, pd.DataFrame([(20, "test", "accuracy", 0.1)],
                                      columns=["step", "split", "metric_name", "value"]), None)
    write_report([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "rep", ["csv"], ["png"])
    final = pd.read_csv(tmp_path / "rep" / "tables" / "balancing-final.csv")
    labels = [m for m in final["method"] if m.startswith("bads ")]
    assert len(labels) == 2 and all("lr=" in m for m in labels)
    board = pd.read_csv(tmp_path / "rep" / "tables" / "leaderboard.csv")
    assert "bads" not in set(board["method"]) and len(set(labels) & set(board["method"])) == 2
