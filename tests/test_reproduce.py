"""`dps-bench reproduce`: reference experiments parse, run resumably, skip absent data clearly."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import benchmarks.reproduce as reproduce
from benchmarks.cli import main
from benchmarks.config import parse_grid, parse_sets
from benchmarks.errors import ConfigError
from benchmarks.scenarios import get_scenario
from benchmarks.sweep import plan


@pytest.mark.parametrize("ref", reproduce.references(), ids=lambda r: r.name)
def test_every_shipped_reference_resolves_to_runs(ref):
    scenario = get_scenario(ref.scenario)
    settings, hparams = parse_sets(ref.sets, scenario, ref.methods)
    setting_axes, hparam_axes = parse_grid(ref.grid, scenario, ref.methods)
    specs = plan(ref.scenario, ref.source, ref.profile, ref.methods, ref.seeds, settings, hparams,
                 None, setting_axes, hparam_axes)
    points = math.prod(len(v) for _, v in setting_axes) * sum(
        math.prod(len(v) for _, v in hparam_axes[m]) for m in ref.methods)
    assert len(specs) == points * len(ref.seeds)
    assert all(m in ref.methods for m in ref.retrain_methods)


def test_reproduce_quick_runs_offline_experiments_and_skips_named_ones_without_data(
        tmp_path, monkeypatch, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "tiny.yaml").write_text(
        "scenario: balancing\nsource: digits\nprofile: quick\nmethods: [train_only, mixing]\n"
        "seeds: [0]\nset: {meta_per_class: 10}\nout: bal/tiny\n")
    (refs / "real.yaml").write_text(
        "scenario: balancing\nsource: mnist\nprofile: quick\nmethods: [train_only]\n"
        "seeds: [0]\nout: bal/real\n")
    monkeypatch.setattr(reproduce, "REFERENCE_DIR", refs)
    monkeypatch.delenv("DPS_DATA_DIR", raising=False)
    args = ["reproduce", "--profile", "quick", "--steps", "5", "--out", str(tmp_path / "res"),
            "--data-dir", str(tmp_path / "no-data"), "--no-progress"]
    assert main(args) == 0  # quick = the offline references; the real-data one is not tried
    assert "real" not in capsys.readouterr().err
    runs = pd.read_csv(tmp_path / "res" / "bal" / "tiny" / "runs.csv")
    assert sorted(runs.method) == ["mixing", "train_only"] and (runs.status == "ok").all()
    assert "train_only" in (tmp_path / "res" / "bal" / "tiny" / "summary.md").read_text()
    assert main(args) == 0  # resumed: nothing reruns
    assert "2 skipped (already complete)" in capsys.readouterr().out
    assert main(args[:1] + ["--only", "real"] + args[1:]) == 2  # everything chosen was skipped
    err = capsys.readouterr().err
    assert "real:" in err and "mnist" in err  # the skipped experiment names its missing data


def test_a_bad_reference_file_is_named_in_the_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenario: balancing\nmethod: [bads]\n")
    with pytest.raises(ConfigError, match="bad.yaml.*unknown keys \\['method'\\]"):
        reproduce.load_reference(bad)


def test_unknown_reference_names_are_rejected():
    with pytest.raises(ConfigError, match="unknown reference experiment"):
        reproduce.select(reproduce.references(), None, ["no-such-table"])


def test_reproduce_a_tiny_profile_end_to_end_writes_report_and_claims(tmp_path, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "main.yaml").write_text(
        "scenario: balancing\nsource: digits\nprofile: quick\nmethods: [bads, blo, train_only]\n"
        "seeds: [0, 1]\nretrain: {fractions: [0.5], methods: [bads]}\nout: ref/bal\n")
    (refs / "size.yaml").write_text(
        "scenario: balancing\nsource: digits\nprofile: quick\nmethods: [bads, train_only]\n"
        "seeds: [0, 1]\ngrid: [meta_per_class=5]\nout: ref/bal\n")
    (refs / "sigma.yaml").write_text(
        "scenario: balancing\nsource: digits\nprofile: quick\nmethods: [bads]\n"
        "seeds: [0, 1]\ngrid: ['bads.sigma=1e-5,1']\nout: ref/sens\n")
    out = tmp_path / "res"
    args = ["reproduce", "--profile", "quick", "--references", str(refs), "--steps", "6",
            "--out", str(out), "--no-progress", "--jobs", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "reproduce:" in printed and "s wall in all" in printed
    report = out / "reference" / "quick" / "report"
    assert (report / "REPORT.md").exists() and (report / "report.html").exists()
    final = pd.read_csv(report / "tables" / "balancing-final.csv")
    assert set(final["method"]) == {"bads", "blo", "train_only"}
    assert [c for c in final.columns if "meta_per_class" in c] == [
        "digits · quick · meta_per_class=5", "digits · quick · meta_per_class=10"]
    assert (report / "figures" / "balancing-meta-size.png").stat().st_size > 0
    assert (report / "figures" / "balancing-retrain.png").stat().st_size > 0
    assert (report / "tables" / "balancing-sensitivity.csv").exists()
    claims = (out / "reference" / "quick" / "CLAIMS.md").read_text()
    assert "BADS costs about as much" in claims
    retrain = pd.read_csv(out / "ref" / "bal" / "retrain" / "runs.csv")
    # bads's runs at both Dm sizes and 2 seeds, and one random baseline for each (setting, seed)
    assert sorted(retrain["source_method"]) == ["bads"] * 4 + ["random"] * 4
    assert main(args) == 0  # resumed: nothing reruns, the report is written again
    assert "0 runs done" in capsys.readouterr().out
