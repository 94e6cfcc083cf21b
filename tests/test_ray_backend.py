"""Sweeps on Ray (``--backend ray``): the same grid gives the same metrics as the local backend,
and a worker killed mid-sweep is recorded, does not stop the sweep, and is trained on resume.

Skipped when Ray is not installed, unless DPS_REQUIRE_RAY=1 (CI sets it: there Ray must run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent

if os.environ.get("DPS_REQUIRE_RAY") != "1":
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'dps-bench[ray]'); "
                                      "CI installs it and sets DPS_REQUIRE_RAY=1")

GRID = ["--scenario", "balancing", "--methods", "mixing,bads", "--seeds", "0,1",
        "--steps", "60", "--no-progress"]


def _cli(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DPS_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "benchmarks.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, **kw)


def _metrics(out: Path) -> pd.DataFrame:
    runs = pd.read_csv(out / "runs.csv")
    return runs.set_index("run_id")[["method", "seed", "status", "final_metric",
                                      "best_metric"]].sort_index()


def _curves(out: Path) -> pd.DataFrame:
    curves = pd.read_csv(out / "curves.csv")
    return curves.sort_values(list(curves.columns)).reset_index(drop=True)


def test_the_same_grid_gives_the_same_metrics_locally_and_on_ray(tmp_path):
    local = _cli(["run", *GRID, "--out", "local"], tmp_path)
    assert local.returncode == 0, local.stderr
    ray = _cli(["run", *GRID, "--out", "ray", "--backend", "ray", "--jobs", "2"], tmp_path)
    assert ray.returncode == 0, ray.stdout + ray.stderr
    assert "4 runs done" in ray.stdout
    a, b = _metrics(tmp_path / "local"), _metrics(tmp_path / "ray")
    assert len(a) == 4 and (a.status == "ok").all()
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(_curves(tmp_path / "local"), _curves(tmp_path / "ray"))
    # resuming on Ray skips what is complete
    again = _cli(["run", *GRID, "--out", "ray", "--backend", "ray"], tmp_path)
    assert again.returncode == 0 and "4 of 4 runs already complete" in again.stdout


def test_a_worker_killed_mid_sweep_is_recorded_and_trained_on_resume(tmp_path):
    base = ["--scenario", "balancing", "--methods", "mixing", "--seeds", "0-2", "--steps", "3000",
            "--no-progress"]
    grid = [*base, "--out", "ray", "--backend", "ray", "--jobs", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "DPS_CACHE_DIR": str(tmp_path / "cache")}
    sweep = subprocess.Popen([sys.executable, "-m", "benchmarks.cli", "run", *grid], cwd=tmp_path,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    claims = tmp_path / "ray" / "claims"
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and sweep.poll() is None:
        for lease in claims.glob("*.json") if claims.exists() else []:
            try:
                holder = json.loads(lease.read_text())
            except (OSError, ValueError):
                continue
            os.kill(int(holder["pid"]), signal.SIGKILL)  # the Ray worker training the run
            killed = lease.stem
            break
        time.sleep(0.05)
    out, err = sweep.communicate(timeout=600)
    assert killed is not None, "no run was seen training: " + out + err
    assert sweep.returncode == 1, out + err  # a failed run: exit status 1, the sweep finished
    runs = pd.read_csv(tmp_path / "ray" / "runs.csv").set_index("run_id")
    assert runs.loc[killed, "status"] == "error"
    assert "Ray worker died" in runs.loc[killed, "error"]
    assert (runs.drop(index=killed).status == "ok").all() and len(runs) == 3

    resumed = _cli(["run", *grid], tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 runs done, 2 skipped" in resumed.stdout
    local = _cli(["run", *base, "--out", "local"], tmp_path)
    assert local.returncode == 0, local.stderr
    pd.testing.assert_frame_equal(_metrics(tmp_path / "ray"), _metrics(tmp_path / "local"))


def test_ray_missing_is_a_clear_error(tmp_path, monkeypatch):
    from benchmarks import ray_backend

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ray_backend.RayMissing, match=r"pip install 'dps-bench\[ray\]'"):
        ray_backend.ray_module()


def test_tune_runs_its_trials_on_ray(tmp_path):
    fast = ["--scenario", "balancing", "--source", "digits", "--steps", "40", "--set",
            "eval_every=10", "--no-progress", "--methods", "mixing", "--budget", "2"]
    for backend, folder in (("local", "a"), ("ray", "b")):
        done = _cli(["tune", *fast, "--out", f"{folder}/runs", "--tuned-dir", f"{folder}/tuned",
                     "--backend", backend, "--jobs", "2"], tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    pd.testing.assert_frame_equal(_metrics(tmp_path / "a" / "runs"), _metrics(tmp_path / "b" / "runs"))
    import yaml

    def chosen(folder: str) -> dict:  # what tune chose and its score, not the command line
        return {f.name: {k: v for k, v in yaml.safe_load(f.read_text()).items()
                         if k in ("tuned", "val_score", "trials")}
                for f in (tmp_path / folder / "tuned").rglob("*.yaml")}

    assert chosen("b") and chosen("b") == chosen("a")
