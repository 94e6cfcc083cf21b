"""The results store under faults: bad destinations, damaged files, kill -9, two writers, SIGTERM,
out of memory, stale code. Nothing finished may be lost or duplicated, and every problem must
come as one clear message, never a traceback."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks import store as store_module
from benchmarks import sweep
from benchmarks.cli import main
from benchmarks.store import Store, StoreError

REPO = Path(__file__).resolve().parent.parent
FAST = ["--scenario", "balancing", "--source", "digits", "--steps", "12",
        "--set", "eval_every=6", "--no-progress"]


def run_cli(out, *extra, methods="train_only,mixing", seeds="0,1"):
    return main(["run", *FAST, "--methods", methods, "--seeds", seeds, "--out", str(out), *extra])


def no_training(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("trained although the destination is unusable")

    monkeypatch.setattr(sweep, "run", fail)


def spawn(out: Path, *extra: str, methods: str = "train_only,mixing,meta_only",
          seeds: str = "0-3", steps: str = "60") -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "benchmarks.cli", "run", "--scenario", "balancing", "--source",
            "digits", "--steps", steps, "--set", "eval_every=20", "--no-progress", "--methods",
            methods, "--seeds", seeds, "--out", str(out), *extra]
    # a shell's background job (CI under `nohup ... &`) ignores SIGINT, and the child would
    # inherit that: restore the default so that Ctrl-C reaches it as it does at a terminal
    return subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


# -- bad destinations: found before anything trains ----------------------------------------------

def test_out_that_is_a_file_is_refused_before_training(tmp_path, monkeypatch, capsys):
    target = tmp_path / "results"
    target.write_text("not a directory")
    no_training(monkeypatch)
    assert run_cli(target) == 2
    err = capsys.readouterr().err
    assert "is a file, not a directory" in err and "Traceback" not in err


def test_unwritable_out_is_refused_before_training(tmp_path, monkeypatch, capsys):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(store_module.tempfile, "mkstemp", read_only)
    no_training(monkeypatch)
    assert run_cli(tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "cannot write results to" in err and "Read-only file system" in err


def test_folder_with_a_foreign_runs_csv_is_refused_before_training(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs.csv").write_text("name,score\na,1\n")
    no_training(monkeypatch)
    assert run_cli(tmp_path) == 2
    err = capsys.readouterr().err
    assert "is not a dps-bench runs.csv" in err and "status" in err


# -- damaged stores ---------------------------------------------------------------------------

def legacy_store(tmp_path) -> Path:
    """A store in the format before run records (views only), as results/ had."""
    assert run_cli(tmp_path) == 0
    for record in (tmp_path / "records").iterdir():
        record.unlink()
    (tmp_path / "records").rmdir()
    return tmp_path


@pytest.mark.parametrize("damage", ["truncated runs", "garbage curves", "missing column",
                                    "binary runs"])
def test_a_damaged_old_store_gives_one_clear_message_and_repair_recovers(tmp_path, capsys, damage):
    out = legacy_store(tmp_path)
    runs_text = (out / "runs.csv").read_text()
    if damage == "truncated runs":
        (out / "runs.csv").write_text(runs_text[: len(runs_text) - 200])
    elif damage == "garbage curves":
        with open(out / "curves.csv", "a") as f:
            f.write("x,y\n\x00garbage,,,,,,\n")
    elif damage == "missing column":
        frame = pd.read_csv(out / "runs.csv").drop(columns=["status"])
        frame.to_csv(out / "runs.csv", index=False)
    else:
        (out / "runs.csv").write_bytes(b"\xff\xfe\x00garbage")
    capsys.readouterr()
    assert main(["report", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("runs.csv" in err or "curves.csv" in err)
    assert main(["store", "check", str(out)]) == 1
    assert "problems" in capsys.readouterr().out
    if damage == "missing column":  # not ours to repair: the message says to move it away
        assert "move the file away" in err
        return
    assert main(["store", "repair", str(out)]) == 0
    assert main(["store", "check", str(out)]) == 0
    assert list((out / "damaged").iterdir()), "the damaged original must be kept"
    assert run_cli(out) == 0  # the runs whose rows were lost are trained again
    runs = Store(out).runs()
    assert len(runs) == 4 and runs["run_id"].is_unique and set(runs["status"]) == {"ok"}


def test_damaged_views_of_a_record_store_are_rebuilt_from_the_records(tmp_path, capsys):
    assert run_cli(tmp_path) == 0
    before = Store(tmp_path).runs().set_index("run_id")["final_metric"]
    (tmp_path / "curves.csv").write_text("garbage\n1,2,3\n")
    (tmp_path / "runs.csv").unlink()
    after = Store(tmp_path).runs().set_index("run_id")["final_metric"]
    pd.testing.assert_series_equal(before.sort_index(), after.sort_index())
    assert main(["report", "--out", str(tmp_path)]) == 0
    assert Store(tmp_path).check().ok


def test_a_damaged_record_costs_only_its_own_run(tmp_path, capsys):
    assert run_cli(tmp_path) == 0
    records = sorted((tmp_path / "records").iterdir())
    records[0].write_text('{"format": 1, "row": {"run_id"')  # torn by a disk error
    os.utime(tmp_path / "runs.csv", (0, 0))  # views older than the records: they get re-read
    capsys.readouterr()
    assert main(["report", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert records[0].name in err and "store repair" in err
    assert main(["store", "repair", str(tmp_path)]) == 0
    assert len(Store(tmp_path).runs()) == 3
    assert run_cli(tmp_path) == 0
    assert "1 runs done, 3 skipped" in capsys.readouterr().out


def test_a_weights_file_that_is_not_the_recorded_one_is_found(tmp_path):
    assert main(["run", *FAST, "--methods", "cds", "--seeds", "0", "--set",
                 "cds.pretrain_steps=5", "--set", "cds.finetune_steps=5",
                 "--out", str(tmp_path)]) == 0
    weights = next((tmp_path / "weights").iterdir())
    weights.write_text(weights.read_text() + "9999,0.5,majority\n")
    report = Store(tmp_path).check()
    assert not report.ok and "checksum" in report.problems[0]


# -- the writes themselves ---------------------------------------------------------------------

def test_results_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert run_cli(tmp_path) == 0
    finally:
        os.umask(old)
    for path in [tmp_path / "runs.csv", tmp_path / "curves.csv",
                 *(tmp_path / "records").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_repeated_seeds_are_one_run(tmp_path, capsys):
    assert run_cli(tmp_path, seeds="0,0,1,0") == 0
    assert "4 runs done" in capsys.readouterr().out
    assert len(Store(tmp_path).runs()) == 4


def test_out_of_memory_is_recorded_with_its_step_and_the_sweep_goes_on(tmp_path, monkeypatch,
                                                                        capsys):
    from methods import get_method

    cls = get_method("mixing")
    real_step = cls.step
    calls = {"n": 0}

    def step(self, train, meta):
        calls["n"] += 1
        if calls["n"] == 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, train, meta)

    monkeypatch.setattr(cls, "step", step)
    assert main(["run", *FAST, "--methods", "mixing,train_only", "--seeds", "0",
                 "--out", str(tmp_path)]) == 1
    runs = Store(tmp_path).runs().set_index("method")
    assert runs.at["mixing", "status"] == "oom" and "at step 5" in runs.at["mixing", "error"]
    assert runs.at["train_only", "status"] == "ok"
    assert "mixing" not in {r for r in Store(tmp_path).completed()}


def test_complete_runs_made_by_other_code_are_pointed_out(tmp_path, monkeypatch, capsys):
    assert run_cli(tmp_path) == 0
    capsys.readouterr()
    monkeypatch.setattr(sweep, "_code_sha", lambda: "0123456789ab")
    assert run_cli(tmp_path) == 0
    out = capsys.readouterr().out
    assert "4 of these complete runs were made by other code" in out
    assert "dps-bench verify" in out and "--force" in out


# -- processes: kill -9, SIGTERM, two writers --------------------------------------------------

def wait_for(condition, timeout: float = 120.0, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def claimed(out: Path) -> bool:
    """A run is being trained (its lease file exists): the process is past its set-up."""
    return (out / "claims").is_dir() and any((out / "claims").glob("*.json"))


def test_kill_9_at_random_points_loses_and_duplicates_nothing(tmp_path):
    """A sweep killed with SIGKILL at random moments while it trains, again and again, then
    resumed: every finished run survives each kill, none is stored twice, every file stays
    readable, and the sweep does make progress between kills."""
    out = tmp_path / "store"
    rng = random.Random(0)
    finished: set[str] = set()
    progress = []
    for cycle in range(6):
        proc = spawn(out)
        if cycle % 2:  # at a random moment of a run in progress
            assert wait_for(lambda p=proc: claimed(out) or p.poll() is not None)
            time.sleep(rng.uniform(0.0, 1.0))
        else:  # just after a run finished: during the next one's start or the views' writes
            before = len(finished)
            assert wait_for(lambda p=proc, n=before: len(Store(out).completed()) > n
                            or p.poll() is not None, every=0.05)
            time.sleep(rng.uniform(0.0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = Store(out)
        done = store.completed()
        assert finished <= done, "a finished run was lost"
        progress.append(len(done))
        finished = done
        runs = store.runs()
        assert runs["run_id"].is_unique and set(runs["run_id"]) == done
    assert progress[-1] > 0, "no run finished between the kills: the test tested nothing"
    proc = spawn(out)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert stdout.count(": ok accuracy=") == 12 - progress[-1]  # only the missing ones ran
    store = Store(out)
    runs = store.runs()
    assert len(runs) == 12 and runs["run_id"].is_unique and set(runs["status"]) == {"ok"}
    assert store.check().ok
    assert not list(out.glob(".*.tmp")) and not list((out / "records").glob(".*.tmp"))


def test_sigterm_stops_like_ctrl_c(tmp_path):
    out = tmp_path / "store"
    proc = spawn(out, steps="2000")
    assert wait_for(lambda: claimed(out) or proc.poll() is not None)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert "terminated; completed runs are saved" in stderr and "Traceback" not in stderr
    assert not list((out / "claims").glob("*.json"))  # its lease went with it


@pytest.mark.parametrize("moment", ["in claim, after the lease is written", "after claim"])
def test_a_signal_right_after_the_claim_leaves_no_lease(tmp_path, monkeypatch, moment):
    """The race behind a flaky SIGTERM: the signal lands once the lease file exists but before the
    worker's clean-up is armed. The lease must still be given back, and a lease held by another
    process must never be removed."""
    store = Store(tmp_path)
    store.prepare()
    real_claim, real_renewal = Store.claim, sweep._Renewal

    def claim_then_signal(self, run_id, force=False):
        assert real_claim(self, run_id, force)
        raise KeyboardInterrupt

    def signal_on_renewal(*a, **k):
        raise KeyboardInterrupt

    if moment.startswith("in claim"):
        monkeypatch.setattr(Store, "claim", claim_then_signal)
    else:
        monkeypatch.setattr(sweep, "_Renewal", signal_on_renewal)
    with pytest.raises(KeyboardInterrupt), sweep.leased(store, "00000000000000ab", False):
        raise AssertionError("the block ran although the signal came first")
    assert not list((tmp_path / "claims").glob("*.json"))
    monkeypatch.setattr(Store, "claim", real_claim)
    monkeypatch.setattr(sweep, "_Renewal", real_renewal)
    (tmp_path / "claims" / "00000000000000cd.json").write_text(
        json.dumps({"host": "another-host", "pid": 1}))
    with sweep.leased(store, "00000000000000cd", False) as refused:
        assert refused.startswith("ELSEWHERE pid 1 on another-host")
    assert (tmp_path / "claims" / "00000000000000cd.json").exists()


def test_ctrl_c_with_parallel_jobs_stops_the_workers_at_once(tmp_path):
    out = tmp_path / "store"
    proc = spawn(out, "--jobs", "2", steps="20000")
    assert wait_for(lambda: claimed(out) or proc.poll() is not None)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert time.monotonic() - started < 60, "Ctrl-C waited for the runs in progress"
    assert proc.returncode == 130 and "interrupted; completed runs are saved" in stderr


def test_two_writers_on_one_folder_share_the_runs(tmp_path):
    """Two identical sweeps started together on one folder: each run is trained once, by
    whichever process claims it first; the other leaves it alone."""
    out = tmp_path / "store"
    first, second = spawn(out), spawn(out)
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    trained = sum(line.count(": ok accuracy=") for stdout, _ in outputs for line in
                  stdout.splitlines())
    assert trained == 12, outputs
    runs = Store(out).runs()
    assert len(runs) == 12 and runs["run_id"].is_unique


def test_a_claim_whose_owner_died_is_taken_over(tmp_path):
    store = Store(tmp_path)
    store.prepare()
    (tmp_path / "claims").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    import socket

    (tmp_path / "claims" / "00000000000000ab.json").write_text(
        json.dumps({"host": socket.gethostname(), "pid": int(dead)}))
    assert store.holder("00000000000000ab") is None
    assert store.claim("00000000000000ab")
    other = Store(tmp_path)
    (tmp_path / "claims" / "00000000000000cd.json").write_text(
        json.dumps({"host": "another-host", "pid": 1}))
    assert not other.claim("00000000000000cd")  # a fresh lease from another machine is respected
    old = time.time() - store_module.LEASE_S - 5
    os.utime(tmp_path / "claims" / "00000000000000cd.json", (old, old))
    assert other.claim("00000000000000cd")  # an expired one is not


def test_parallel_jobs_run_every_run_once(tmp_path, capsys):
    assert run_cli(tmp_path, "--jobs", "2", seeds="0-2") == 0
    runs = Store(tmp_path).runs()
    assert len(runs) == 6 and runs["run_id"].is_unique and set(runs["jobs"]) == {2}
    assert set(runs["threads"]) == {1}


def test_store_errors_are_the_suites_errors():
    assert issubclass(StoreError, Exception)
    from benchmarks.errors import DpsBenchError

    assert issubclass(StoreError, DpsBenchError)


def test_an_interrupted_conversion_of_an_old_store_loses_nothing(tmp_path):
    """Conversion writes records.partial/ and renames it when complete: a conversion killed
    half-way leaves the old store as it was, and the next open converts it whole."""
    out = legacy_store(tmp_path)
    partial = out / "records.partial"
    partial.mkdir()
    (partial / "0123456789abcdef.json").write_text("{}")  # what a killed conversion left
    store = Store(out)
    assert store._legacy() and len(store.runs()) == 4
    store.prepare()
    assert not partial.exists() and len(list((out / "records").iterdir())) == 4
    assert len(Store(out).runs()) == 4 and Store(out).check().ok


def test_hand_edited_views_are_not_served(tmp_path):
    assert run_cli(tmp_path) == 0
    runs = pd.read_csv(tmp_path / "runs.csv", dtype={"run_id": str})
    truth = runs.set_index("run_id")["final_metric"].copy()
    runs.loc[0, "final_metric"] = 0.999
    runs.to_csv(tmp_path / "runs.csv", index=False)
    curves = (tmp_path / "curves.csv").read_text().splitlines(keepends=True)
    (tmp_path / "curves.csv").write_text("".join(curves[:-2]))  # cut at a line boundary
    assert not Store(tmp_path).check().ok
    served = Store(tmp_path).runs().set_index("run_id")["final_metric"]
    assert served.sort_index().to_dict() == truth.sort_index().to_dict()
    assert len(Store(tmp_path).curves()) == len(curves) - 1
    assert Store(tmp_path).check().ok  # the read rebuilt the views from the records


def test_a_run_id_cannot_steer_a_path(tmp_path, capsys):
    (tmp_path / "runs.csv").write_text(
        "run_id,method,seed,status,config_json\n../../escaped,bads,0,ok,{}\n")
    assert main(["report", "--out", str(tmp_path)]) == 2
    assert "line 2" in capsys.readouterr().err
    with pytest.raises(StoreError, match="not a run id"):
        Store(tmp_path).weights("../../escaped")
    assert not (tmp_path.parent.parent / "escaped.json").exists()


def test_a_failed_forced_rerun_keeps_the_finished_result(tmp_path, monkeypatch):
    assert run_cli(tmp_path, methods="train_only", seeds="0") == 0
    before = Store(tmp_path).runs().iloc[0]

    def broken(*a, **k):
        raise RuntimeError("a bug in the new code")

    monkeypatch.setattr(sweep, "run", broken)
    assert run_cli(tmp_path, "--force", methods="train_only", seeds="0") == 1
    after = Store(tmp_path).runs().iloc[0]
    assert after["status"] == "ok" and after["final_metric"] == before["final_metric"]


def test_temporary_files_of_dead_writers_are_cleaned_up(tmp_path):
    assert run_cli(tmp_path, methods="train_only", seeds="0") == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    orphan = tmp_path / "records" / f".0123456789abcdef.json.{dead}.x1y2.tmp"
    mine = tmp_path / f".runs.csv.{os.getpid()}.abcd.tmp"
    orphan.write_text("half a record")
    mine.write_text("being written")
    Store(tmp_path).prepare()
    assert not orphan.exists() and mine.exists()


# -- the views' cost: a sweep does not rewrite them after every run ------------------------------

def test_records_written_without_views_are_served_and_the_views_caught_up(tmp_path, capsys):
    """A record written with views=False is saved (served by the next read, which rebuilds the
    views) and refresh_views brings the views and their manifest up to date; report works on a
    store whose views were never written (a sweep killed before its first view update)."""
    assert run_cli(tmp_path, methods="train_only", seeds="0") == 0
    store = Store(tmp_path)
    row = store.runs().iloc[0].to_dict()
    curves = store.curves().drop(columns="run_id")
    for name in ("runs.csv", "curves.csv", "views.json"):
        (tmp_path / name).unlink()
    copy = dict(row, run_id="00000000000000aa", seed=7)
    assert store.write(copy, curves, None, views=False)
    assert not (tmp_path / "runs.csv").exists()
    assert main(["report", "--out", str(tmp_path)]) == 0  # rebuilt from the records
    assert set(Store(tmp_path).runs()["run_id"]) == {row["run_id"], "00000000000000aa"}
    assert store.write(dict(copy, run_id="00000000000000bb"), curves, None, views=False)
    assert not store.check().ok  # the views lag the records ...
    store.refresh_views()
    assert store.check().ok and len(pd.read_csv(tmp_path / "runs.csv")) == 3  # ... until now


def test_the_views_pacer_bounds_their_share_of_the_sweep(monkeypatch):
    """After a view update that took c seconds, the next is at least 10 c later: the O(runs)
    rewrites cost at most about a tenth of the sweep, however large the store grows."""
    clock = [0.0]
    monkeypatch.setattr(sweep.time, "monotonic", lambda: clock[0])
    calls = []

    class Fake:
        def write(self, row, curves, weights, views=True):
            calls.append(views)
            clock[0] += 2.0 if views else 0.01  # a view update costs 2 s, a record 10 ms

    pacer = sweep._ViewsPacer()
    for _ in range(100):
        pacer.write(Fake(), {}, None, None)
        clock[0] += 0.5  # each run trains for half a second
    assert calls[0] is True and all(not later for later in calls[1:20])
    assert sum(calls) >= 3 and 2.0 * sum(calls) / clock[0] <= 0.11  # updates, at ~10% of time
