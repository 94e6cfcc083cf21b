"""`dps-bench reproduce`: reference experiments parse, run resumably, skip absent data clearly."""

from __future__ import annotations

import pandas as pd
import pytest

import benchmarks.reproduce as reproduce
from benchmarks.cli import main
from benchmarks.config import parse_sets
from benchmarks.errors import ConfigError
from benchmarks.scenarios import get_scenario
from benchmarks.sweep import plan


@pytest.mark.parametrize("ref", reproduce.references(), ids=lambda r: r.name)
def test_every_shipped_reference_resolves_to_runs(ref):
    settings, hparams = parse_sets(ref.sets, get_scenario(ref.scenario), ref.methods)
    specs = plan(ref.scenario, ref.source, ref.profile, ref.methods, ref.seeds, settings, hparams)
    assert len(specs) == len(ref.methods) * len(ref.seeds)


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
