"""Bad inputs a newcomer tried (issue 13's review): each gets one clear message and exit
status 2, never a traceback, and nothing finished is lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from test_store_faults import claimed, run_cli, spawn, wait_for

from benchmarks.cli import main
from benchmarks.store import Store


def error_of(argv, capsys) -> str:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors (usage, then the message)
        code = e.code
    assert code == 2, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip(), argv
    return err


RUN = ["run", "--scenario", "balancing", "--source", "digits", "--steps", "12", "--no-progress",
       "--methods", "train_only"]


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "5-2"], "is empty (the end is below the start); write it as 2-5"),
    (["--seeds", "0-99999999999"], "more than 100,000 seeds"),
    (["--seeds", str(2**70)], "seeds must lie in 0 .. 2**63-1"),
    (["--seeds", "0", "--threads", "100000"], "4 per core"),
    (["--seeds", "0", "--out", ""], "an empty path"),
    (["--seeds", "0", "--grid", "steps=12,6"], "--grid and --set (or --steps) both give steps"),
])
def test_bad_run_options(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = RUN + argv + ([] if "--out" in argv else ["--out", str(tmp_path / "o")])
    assert message in error_of(argv, capsys)
    assert not (tmp_path / "o" / "records").exists() and not (tmp_path / "records").exists()


def test_a_path_the_file_system_refuses_is_one_message(tmp_path, capsys):
    long = tmp_path / ("a" * 300)
    assert "File name too long" in error_of(RUN + ["--seeds", "0", "--out", str(long)], capsys)
    err = error_of(["report", "--out", str(long)], capsys)  # Python >= 3.13: exists() is False
    assert "File name too long" in err or "no results in" in err


def test_download_into_a_file_is_one_message(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "afile" in error_of(["download", "mnist", "--data-dir", str(afile)], capsys)


@pytest.fixture
def store(tmp_path):
    out = tmp_path / "store"
    assert run_cli(out, methods="train_only,bads", seeds="0") == 0
    return out


def test_a_record_with_text_where_a_number_belongs_is_damaged(store, capsys):
    record = next((store / "records").iterdir())
    data = json.loads(record.read_text())
    data["row"]["final_metric"] = "abc"
    record.write_text(json.dumps(data))
    assert not Store(store).check().ok
    assert "final_metric 'abc' where a number belongs" in error_of(
        ["report", "--out", str(store)], capsys)
    assert main(["store", "repair", str(store)]) == 0
    assert Store(store).check().ok and len(Store(store).runs()) == 1


@pytest.mark.parametrize("entry, make", [
    ("records", lambda p: p.write_text("x")),
    ("weights", lambda p: p.write_text("x")),
    ("views.json", lambda p: p.mkdir()),
])
def test_a_store_entry_of_the_wrong_kind_is_named_and_set_aside(store, entry, make, capsys):
    path = store / entry
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    make(path)
    report = Store(store).check()
    assert not report.ok and any(str(path) in p for p in report.problems)
    assert "store repair" in error_of(RUN + ["--seeds", "0", "--out", str(store)], capsys)
    assert main(["store", "repair", str(store)]) == 0
    assert any(p.name.endswith(entry) for p in (store / "damaged").iterdir())
    assert main(RUN + ["--seeds", "0", "--out", str(store)]) == 0
    assert Store(store).check().ok


def test_repair_leaves_a_foreign_folder_alone(tmp_path, capsys):
    (tmp_path / "runs.csv").write_text("a,b\n1,2\n")
    assert "not a dps-bench runs.csv" in error_of(["store", "repair", str(tmp_path)], capsys)
    assert (tmp_path / "runs.csv").read_text() == "a,b\n1,2\n"
    assert not (tmp_path / "damaged").exists() and not (tmp_path / "records").exists()


def test_check_of_a_missing_store_does_not_recommend_repair(tmp_path, capsys):
    err = error_of(["store", "check", str(tmp_path / "nothing")], capsys)
    assert "holds no dps-bench store" in err and "repair" not in err


def test_a_run_whose_weights_file_was_lost_is_trained_again(store, capsys):
    bads = Store(store).runs().set_index("method").loc["bads", "run_id"]
    (store / "weights" / f"{bads}.csv").unlink()
    capsys.readouterr()
    assert run_cli(store, methods="train_only,bads", seeds="0") == 0
    assert "1 of 2 runs already complete" in capsys.readouterr().out
    assert (store / "weights" / f"{bads}.csv").exists() and Store(store).check().ok


@pytest.mark.parametrize("extra, message", [
    (["--methods", "nosuch"], "no rows of nosuch"),
    (["--columns", ","], "names no column"),
])
def test_report_filters_that_select_nothing_say_so(store, extra, message, capsys):
    assert message in error_of(["report", "--out", str(store), *extra], capsys)


def test_report_refuses_a_label_given_twice(store, capsys):
    err = error_of(["report", "--out", f"x={store}", "--out", f"x={store}"], capsys)
    assert "the label 'x' is given twice" in err


def test_workers_end_when_their_parent_is_killed(tmp_path):
    """kill -9 of a `run --jobs 2` leaves no worker behind: each notices within seconds that
    its parent is gone and exits (its lease ends with it)."""
    out = tmp_path / "store"
    proc = spawn(out, "--jobs", "2", steps="20000")
    assert wait_for(lambda: claimed(out) or proc.poll() is not None)
    workers = [json.loads(p.read_text())["pid"] for p in (out / "claims").glob("*.json")]
    assert workers and proc.pid not in workers
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # a zombie is ended

    assert wait_for(lambda: all(gone(pid) for pid in workers), timeout=30), \
        "worker processes outlived their killed parent"
    time.sleep(0.1)


def test_the_summary_line_counts_diverged_runs(tmp_path, capsys):
    capsys.readouterr()
    assert run_cli(tmp_path, "--set", "lr=1e30", methods="train_only", seeds="0") == 0
    assert "1 diverged (their loss became non-finite" in capsys.readouterr().out
    assert Store(tmp_path).runs()["status"].tolist() == ["diverged"]


def test_an_old_store_with_blank_integer_cells_converts(tmp_path, capsys):
    """Rows from before a column existed have it blank (NaN once read): they convert to records
    and read back, and nothing is set aside."""
    assert run_cli(tmp_path, methods="train_only", seeds="0,1") == 0
    runs = Store(tmp_path).runs()
    curves = Store(tmp_path).curves()
    shutil.rmtree(tmp_path / "records")
    (tmp_path / "views.json").unlink()
    runs.assign(threads=[float("nan"), 1.0], jobs=float("nan")).to_csv(tmp_path / "runs.csv",
                                                                      index=False)
    curves.to_csv(tmp_path / "curves.csv", index=False)
    assert run_cli(tmp_path, methods="train_only", seeds="0,1,2") == 0
    assert Store(tmp_path).check().ok and len(Store(tmp_path).runs()) == 3
    assert not (tmp_path / "damaged").exists()


def test_a_failed_rerun_never_replaces_a_complete_run_whose_weights_were_lost(store, monkeypatch):
    from benchmarks import sweep

    bads = Store(store).runs().set_index("method").loc["bads"]
    (store / "weights" / f"{bads.run_id}.csv").unlink()

    def broken(*a, **k):
        raise RuntimeError("a bug in the new code")

    monkeypatch.setattr(sweep, "run", broken)
    assert run_cli(store, methods="bads", seeds="0") == 1
    kept = Store(store).runs().set_index("method").loc["bads"]
    assert kept.status == "ok" and kept.final_metric == bads.final_metric


def test_a_record_without_a_valid_weights_checksum_is_damaged(store, capsys):
    record = next((store / "records").iterdir())
    data = json.loads(record.read_text())
    del data["weights_sha256"]
    record.write_text(json.dumps(data))
    assert not Store(store).check().ok
    assert "a weights checksum that is not one" in error_of(
        RUN + ["--seeds", "0", "--out", str(store)], capsys)


def test_verify_over_stores_skips_those_without_the_methods(store, tmp_path, capsys):
    other = tmp_path / "other"
    assert run_cli(other, methods="train_only", seeds="0") == 0
    capsys.readouterr()
    assert main(["verify", str(store), str(other), "--methods", "bads", "--sample", "1"]) == 0
    out = capsys.readouterr().out
    assert "nothing to verify: no complete run of bads" in out
    assert "every sampled run of the 1 stores verified reproduces (1 had no run of --methods)" in out
