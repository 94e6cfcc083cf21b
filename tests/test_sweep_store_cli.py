"""Resume, the store's atomic writes, and the command line."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmarks import harness, sweep
from benchmarks.cli import main
from benchmarks.store import CURVE_COLUMNS, RUN_COLUMNS, Store

FAST = ["--scenario", "balancing", "--source", "digits", "--steps", "12",
        "--set", "eval_every=6", "--no-progress"]


def run_cli(tmp_path, *extra):
    return main(["run", *FAST, "--methods", "train_only,mixing", "--seeds", "0,1",
                 "--out", str(tmp_path), *extra])


def test_cli_run_writes_the_output_contract(tmp_path):
    assert run_cli(tmp_path) == 0
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs.columns) == RUN_COLUMNS
    assert len(runs) == 4 and set(runs.status) == {"ok"}
    assert set(runs.method) == {"train_only", "mixing"} and set(runs.seed) == {0, 1}
    assert (runs.steps == 12).all() and runs.run_id.is_unique
    assert runs.time_per_step_ms.gt(0).all() and runs.peak_mem_mb.gt(0).all()
    config = json.loads(runs.config_json[0])
    assert config["settings"]["steps"] == 12 and config["source"] == "digits"
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert list(curves.columns) == CURVE_COLUMNS
    assert set(curves.run_id) == set(runs.run_id)
    assert {"test", "meta"} <= set(curves.split)
    final = curves[(curves.split == "test") & (curves.step == 12)].set_index("run_id")["value"]
    assert final.loc[runs.run_id].tolist() == runs.final_metric.tolist()


def test_second_identical_command_does_no_training(tmp_path, monkeypatch, capsys):
    assert run_cli(tmp_path) == 0
    before = (tmp_path / "runs.csv").read_text()

    def no_training(*a, **k):
        raise AssertionError("a complete run was trained again")

    monkeypatch.setattr(sweep, "run", no_training)
    assert run_cli(tmp_path) == 0
    assert "0 runs done, 4 skipped" in capsys.readouterr().out
    assert (tmp_path / "runs.csv").read_text() == before


def test_force_reruns_complete_runs_and_replaces_their_rows(tmp_path, monkeypatch):
    assert run_cli(tmp_path) == 0
    calls = []
    real_run = harness.run

    def counting(spec, *a, **k):
        calls.append(spec.run_id)
        return real_run(spec, *a, **k)

    monkeypatch.setattr(sweep, "run", counting)
    assert run_cli(tmp_path, "--force") == 0
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(calls) == 4 and sorted(calls) == sorted(runs.run_id)
    assert len(runs) == 4 and len(pd.read_csv(tmp_path / "curves.csv").groupby("run_id")) == 4


def test_changed_setting_is_a_new_run(tmp_path):
    assert run_cli(tmp_path) == 0
    assert run_cli(tmp_path, "--set", "meta_per_class=5") == 0
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 8


def test_interrupted_sweep_keeps_finished_runs_and_resumes(tmp_path, monkeypatch):
    real_run = harness.run
    calls = {"n": 0}

    def interrupt_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_run(*a, **k)

    monkeypatch.setattr(sweep, "run", interrupt_second)
    assert run_cli(tmp_path) == 130
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 1
    monkeypatch.setattr(sweep, "run", real_run)
    assert run_cli(tmp_path) == 0
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 4 and runs.run_id.is_unique


def test_failed_run_is_recorded_retried_and_replaced(tmp_path, monkeypatch):
    real_run = harness.run

    def fail_mixing(spec, *a, **k):
        if spec.method == "mixing":
            raise RuntimeError("boom")
        return real_run(spec, *a, **k)

    monkeypatch.setattr(sweep, "run", fail_mixing)
    assert run_cli(tmp_path) == 1
    runs = pd.read_csv(tmp_path / "runs.csv", keep_default_na=False)
    assert sorted(runs.status) == ["error", "error", "ok", "ok"]
    assert runs[runs.status == "error"].error.str.contains("RuntimeError: boom").all()
    monkeypatch.setattr(sweep, "run", real_run)
    assert run_cli(tmp_path) == 0
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 4 and set(runs.status) == {"ok"}


def test_store_replaces_a_runs_rows_instead_of_duplicating(tmp_path):
    store = Store(tmp_path)
    curves = pd.DataFrame({"step": [1, 2], "split": ["test"] * 2, "metric_name": ["acc"] * 2,
                           "value": [0.1, 0.2]})
    row = {c: "" for c in RUN_COLUMNS} | {"run_id": "0123456789abcdef", "status": "error",
                                          "config_json": "{}", "seed": 0}
    store.write(row, curves, None)
    store.write(row | {"status": "ok"}, curves.assign(value=[0.3, 0.4]), None)
    assert store.runs().status.tolist() == ["ok"]
    assert store.curves().value.tolist() == [0.3, 0.4]
    assert store.completed() == {"0123456789abcdef"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_report_summarises_the_store(tmp_path, capsys):
    assert run_cli(tmp_path) == 0
    capsys.readouterr()
    assert main(["report", "--out", str(tmp_path), "--format", "csv"]) == 0
    table = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert set(table.method) == {"train_only", "mixing"} and (table.n == 2).all()
    rows = table.set_index("method")
    assert rows.loc["train_only", "time_x"] == 1.0 and rows.loc["train_only", "mem_x"] == 1.0
    assert rows.loc["mixing", "time_x"] == pytest.approx(
        rows.loc["mixing", "time_ms"] / rows.loc["train_only", "time_ms"])


@pytest.mark.parametrize("argv, message", [
    (["--methods", "nope"], "unknown method 'nope'"),
    (["--methods", "mixing", "--set", "bogus=1"], "has no setting 'bogus'"),
    (["--methods", "mixing", "--set", "random_select.beta=0.1"], "not among --methods"),
    (["--methods", "random_select", "--set", "random_select.beta=abc"], "expected float"),
    (["--methods", "mixing", "--set", "steps=true"], "expected int"),
    (["--methods", "mixing", "--set", "steps=2.5"], "expected int"),
    (["--methods", "mixing", "--set", "lr=True"], "expected float"),
    (["--methods", "bads", "--set", "bads.concat_label=2"], "expected bool"),
    (["--methods", "mixing", "--device", "foo"], "--device 'foo'"),
    (["--methods", "mixing", "--source", "nope"], "has no source 'nope'"),
    (["--methods", "mixing", "--profile", "nope"], "has no profile 'nope'"),
])
def test_bad_input_gives_a_clear_message(tmp_path, capsys, argv, message):
    args = ["run", "--scenario", "balancing", "--out", str(tmp_path), *argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_real_data_says_how_to_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DPS_DATA_DIR", raising=False)
    code = main(["run", "--scenario", "balancing", "--source", "mnist", "--methods", "mixing",
                 "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 2
    assert "--data-dir" in capsys.readouterr().err


def test_list_and_help(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("balancing", "mnist1d", "quick", "paper", "random_select", "beta=0.05"):
        assert name in out
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    assert "resum" in capsys.readouterr().out


def test_cuda_requested_without_cuda_is_bad_input(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["run", *FAST, "--methods", "mixing", "--device", "cuda", "--out",
                 str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "runs.csv").exists()


def test_coerce_accepts_optional_and_rejects_bools_for_numbers():
    from dataclasses import dataclass

    from benchmarks.config import coerce
    from benchmarks.errors import ConfigError

    @dataclass
    class H:
        a: float | None = None
        n: int = 1
        flag: bool = False

    assert coerce(None, H, "a", "x") is None
    assert coerce(2, H, "a", "x") == 2.0 and isinstance(coerce(2, H, "a", "x"), float)
    assert coerce(3.0, H, "n", "x") == 3
    assert coerce("false", H, "flag", "x") is False and coerce(1, H, "flag", "x") is True
    for name, bad in (("a", "hello"), ("n", True), ("flag", 0.3), ("n", None)):
        with pytest.raises(ConfigError):
            coerce(bad, H, name, "x")


def test_report_keeps_different_configurations_apart(tmp_path, capsys):
    assert run_cli(tmp_path) == 0
    assert run_cli(tmp_path, "--set", "lr=0.01") == 0
    capsys.readouterr()
    assert main(["report", "--out", str(tmp_path), "--format", "csv"]) == 0
    table = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert len(table) == 4 and (table.n == 2).all()
    assert (table.groupby("method").config.nunique() == 2).all()
