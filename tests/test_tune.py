"""``dps-bench tune``: equal budgets, validation-only scoring, tuned settings read back by ``run``."""

from __future__ import annotations

import dataclasses
import io
import json
import random

import pandas as pd
import pytest
import yaml
from toys import methods_without_requirements

import methods
from benchmarks import scenarios
from benchmarks.cli import main
from benchmarks.config import resolve_hparams, resolve_settings
from benchmarks.errors import ConfigError
from benchmarks.scenarios import Split, get_scenario
from benchmarks.scenarios.balancing import Balancing
from benchmarks.store import Store
from benchmarks.tune import Trial, choose, draws, materialise, plan_trials
from methods import MODEL_LR, Choice, LogUniform, get_method

FAST = ["--scenario", "balancing", "--source", "digits", "--steps", "40",
        "--set", "eval_every=10", "--no-progress"]


def tune_cli(tmp_path, methods_: str, budget: int, *extra: str) -> int:
    return main(["tune", *FAST, "--methods", methods_, "--budget", str(budget),
                 "--out", str(tmp_path / "runs"), "--tuned-dir", str(tmp_path / "tuned"), *extra])


def tuned_file(tmp_path, method: str, scenario: str = "balancing") -> dict:
    folder = tmp_path / "tuned" / f"{scenario}-digits-quick-eval_every=10-steps=40"
    return yaml.safe_load((folder / f"{method}.yaml").read_text())


@pytest.mark.parametrize("name", methods_without_requirements())
def test_every_search_space_names_real_knobs_and_draws_valid_configurations(name):
    cls = get_method(name)
    fields = {f.name for f in dataclasses.fields(cls.Hparams)}
    assert set(cls.search_space) <= fields | {MODEL_LR}
    scenario = get_scenario("balancing")
    rng = random.Random(0)
    for raw in draws(cls.search_space, 5, "random", rng):
        settings, hparams, values = materialise(scenario, "mnist1d", "quick", name,
                                                cls.search_space, raw, {}, {})
        resolve_hparams(scenario, name, hparams, "quick", "mnist1d")  # passes the method's checks
        assert set(values) == set(cls.search_space)


def test_random_strategy_starts_from_the_default_and_grid_needs_enough_points():
    space = {"lr": LogUniform(0.1, 10.0, relative=True), "k": Choice(1, 2)}
    drawn = draws(space, 4, "random", random.Random(0))
    assert drawn[0] == {} and len(drawn) == 4
    assert all(0.1 <= d["lr"] <= 10 and d["k"] in (1, 2) for d in drawn[1:])
    grid = draws(space, 6, "grid", random.Random(0))
    assert len({tuple(sorted(d.items())) for d in grid}) == 6
    with pytest.raises(ConfigError, match="only 6 points"):
        draws(space, 7, "grid", random.Random(0))


def test_relative_learning_rates_scale_the_configurations_model_lr():
    scenario = get_scenario("balancing")
    space = get_method("blo").search_space
    raw = {"lr": 2.0, "inner_lr": 3.0, "lr_w": 0.01, "k": 2}
    settings, hparams, values = materialise(scenario, "mnist1d", "quick", "blo", space, raw, {}, {})
    lr0 = resolve_settings(scenario, "mnist1d", "quick", {}).lr
    assert settings["lr"] == pytest.approx(2 * lr0)
    # blo's inner_lr defaults to 0 ("the model lr"), so its multiplier applies to the drawn lr
    assert hparams["inner_lr"] == pytest.approx(3 * 2 * lr0)
    assert values == {"lr": settings["lr"], "inner_lr": hparams["inner_lr"], "lr_w": 0.01, "k": 2}
    # bads's lr_theta default is the quick profile's 7e-4, which the multiplier scales
    _, hp, _ = materialise(scenario, "mnist1d", "quick", "bads", get_method("bads").search_space,
                           {"lr_theta": 2.0}, {}, {})
    assert hp["lr_theta"] == pytest.approx(1.4e-3)


def test_a_methods_draws_do_not_depend_on_the_other_methods_tuned():
    def values(method: str) -> list[dict]:
        return [t.values for t in plan_trials("balancing", "digits", "quick", method, 4, [0],
                                              "random", 0, {}, {})]
    assert values("blo") == values("blo")
    assert values("blo") != values("mwn")


def test_choose_prefers_healthy_weights_then_score_then_the_earlier():
    def trial(i, score, ws="ok", status="ok"):
        return Trial("m", i, {}, score=score, status=status, weights_status=ws)
    assert choose([trial(0, 0.9, "collapsed"), trial(1, 0.7)]).index == 1
    assert choose([trial(0, 0.8), trial(1, 0.8), trial(2, 0.7)]).index == 0
    assert choose([trial(0, 0.99, status="failed"), trial(1, 0.6)]).index == 1
    assert choose([trial(0, 0.9, "collapsed"), trial(1, 0.95, "uniform")]).index == 1
    assert choose([trial(0, float("nan"), status="failed")]) is None


def test_every_method_gets_exactly_the_same_budget(tmp_path):
    fast = ("--seeds", "0,1", "--set", "cds.pretrain_steps=50", "--set", "cds.finetune_steps=20")
    assert tune_cli(tmp_path, "train_only,l2rw,cds", 3, *fast) == 0
    runs = Store(tmp_path / "runs").runs()
    assert runs.groupby("method").size().to_dict() == {"train_only": 6, "l2rw": 6, "cds": 6}
    for m in ("train_only", "l2rw", "cds"):
        record = tuned_file(tmp_path, m)
        assert record["budget"] == 3 and len(record["trials"]) == 3
        assert all(len(t["run_ids"]) == 2 for t in record["trials"])
        assert set(record["tuned"]) == set(get_method(m).search_space)
        assert len({json.dumps(t["values"], sort_keys=True) for t in record["trials"]}) == 3
    # resumable: the same command reruns nothing
    assert tune_cli(tmp_path, "train_only,l2rw,cds", 3, *fast) == 0
    assert len(Store(tmp_path / "runs").runs()) == 18


class AdversarialTest(Balancing):
    """Balancing whose test split is the validation split with every label flipped: a run's test
    accuracy is exactly one minus its validation accuracy."""

    name = "adversarial"

    def build(self, source, settings, seed):
        data = super().build(source, settings, seed)
        flipped = Split(data.val.x, 1.0 - data.val.y)
        return dataclasses.replace(data, test=flipped)


def test_tuning_selects_on_validation_never_on_test(tmp_path, monkeypatch):
    monkeypatch.setitem(scenarios.SCENARIOS, "adversarial", AdversarialTest)
    argv = ["tune", "--scenario", "adversarial", "--source", "digits", "--steps", "40",
            "--set", "eval_every=10", "--no-progress", "--methods", "mixing", "--budget", "6",
            "--window", "1", "--out", str(tmp_path / "runs"), "--tuned-dir", str(tmp_path / "tuned")]
    assert main(argv) == 0
    record = tuned_file(tmp_path, "mixing", scenario="adversarial")
    runs = Store(tmp_path / "runs").runs().set_index("run_id")
    scored = [t for t in record["trials"] if t["status"] == "ok"]  # not the diverged ones
    assert len(scored) >= 3
    test = {t["index"]: float(runs.loc[t["run_ids"][0], "final_metric"]) for t in scored}
    val = {t["index"]: t["val_score"] for t in scored}
    assert all(test[i] == pytest.approx(1 - val[i]) for i in val)  # the fixture is adversarial
    assert len(set(val.values())) > 1  # and the configurations differ
    chosen = next(t for t in record["trials"] if t["values"] == record["tuned"])
    assert record["val_score"] == max(val.values()) == chosen["val_score"]
    assert test[chosen["index"]] == min(test.values())  # a test-peeking tuner would pick another


def test_run_with_tuned_settings_uses_the_tuned_values(tmp_path, capsys):
    assert tune_cli(tmp_path, "mixing,blo", 2) == 0
    out = tmp_path / "tuned-run"
    assert main(["run", *FAST, "--methods", "mixing,blo", "--settings", "tuned",
                 "--tuned-dir", str(tmp_path / "tuned"), "--out", str(out)]) == 0
    runs = Store(out).runs().set_index("method")
    for m in ("mixing", "blo"):
        config = json.loads(runs.loc[m, "config_json"])
        tuned = tuned_file(tmp_path, m)["tuned"]
        assert config["settings"]["lr"] == tuned["lr"]
        assert {k: config["hparams"][k] for k in tuned if k != "lr"} == \
            {k: v for k, v in tuned.items() if k != "lr"}
    # side by side: paper and tuned settings of the same methods in one report
    assert main(["run", *FAST, "--methods", "mixing", "--out", str(tmp_path / "paper")]) == 0
    capsys.readouterr()
    assert main(["report", "--out", f"paper={tmp_path / 'paper'}", "--out", f"tuned={out}",
                 "--side-by-side", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("method")
    assert {"paper", "tuned", "tuned degenerate"} <= set(table.columns)
    assert table.loc["mixing", "paper"].endswith("(1)") and pd.isna(table.loc["blo", "paper"])


def test_tuned_settings_missing_or_clashing_give_clear_errors(tmp_path, capsys):
    assert main(["run", *FAST, "--methods", "mixing", "--settings", "tuned",
                 "--tuned-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no tuned settings for mixing" in err and "dps-bench tune" in err
    assert tune_cli(tmp_path, "blo", 1) == 0
    assert main(["run", *FAST, "--methods", "blo", "--settings", "tuned", "--set", "blo.lr_w=0.1",
                 "--tuned-dir", str(tmp_path / "tuned"), "--out", str(tmp_path / "o")]) == 2
    assert "blo.lr_w: tuned in" in capsys.readouterr().err
    assert tune_cli(tmp_path, "blo", 1, "--set", "blo.lr_w=0.1") == 2
    assert "tuning searches" in capsys.readouterr().err


def test_tune_help_explains_the_protocol(capsys):
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    text = capsys.readouterr().out
    assert "same budget" in text and "validation split" in text and "--settings tuned" in text


def test_tuned_results_files_are_valid():
    """The committed tuned settings load, name real knobs, and chose their best healthy trial."""
    from benchmarks.tuned import TUNED_DIR

    files = sorted(TUNED_DIR.glob("*/*.yaml"))
    for path in files:
        record = yaml.safe_load(path.read_text())
        cls = methods.get_method(record["method"])
        assert set(record["tuned"]) == set(cls.search_space), path
        scored = [t for t in record["trials"] if t["val_score"] is not None]
        trials = [Trial(record["method"], t["index"], t["values"], score=t["val_score"],
                        status=t["status"], weights_status=t["weights_status"]) for t in scored]
        assert choose(trials).values == record["tuned"], path
        assert len(record["trials"]) == record["budget"], path
    for problem in {p.parent for p in files}:  # every method of one problem had the same budget
        budgets = {yaml.safe_load(p.read_text())["budget"] for p in problem.glob("*.yaml")}
        assert len(budgets) == 1, problem
