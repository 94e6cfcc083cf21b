"""``dps-bench verify``: rerunning stored runs at the current code and comparing."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmarks.cli import main
from benchmarks.store import Store
from benchmarks.verify import _max_abs_diff, choose

FAST = ["--scenario", "balancing", "--source", "digits", "--steps", "12",
        "--set", "eval_every=6", "--no-progress"]


@pytest.fixture
def store(tmp_path):
    assert main(["run", *FAST, "--methods", "train_only,bads", "--seeds", "0,1",
                 "--out", str(tmp_path)]) == 0
    return tmp_path


def test_runs_rerun_at_the_same_code_reproduce_exactly(store, capsys):
    capsys.readouterr()
    assert main(["verify", str(store), "--sample", "0"]) == 0
    out = capsys.readouterr().out
    assert out.count(": exact") == 4 and "all 4 runs reproduce (exact)" in out


def test_a_changed_number_is_found_and_fails(store, capsys):
    """A stored curve value that this code does not produce (as after a change that altered
    the floating-point path) is reported with its difference, and verify exits 1."""
    record_path = next(p for p in (store / "records").iterdir())
    record = json.loads(record_path.read_text())
    record["curves"]["value"][-1] += 0.25
    record_path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["verify", str(store), "--sample", "0"]) == 1
    captured = capsys.readouterr()
    assert "DIFFERS, largest difference 0.25" in captured.out
    assert "do not reproduce" in captured.err
    assert main(["verify", str(store), "--sample", "0", "--tolerance", "0.3"]) == 0


def test_refresh_replaces_only_the_runs_that_differ(store, capsys):
    """--refresh stores the rerun of a run that differs (with this code's code_sha), leaves the
    exact ones untouched (same record bytes), and a second verify finds them all exact."""
    records = sorted((store / "records").iterdir())
    changed, kept = records[0], records[1:]
    record = json.loads(changed.read_text())
    original = record["curves"]["value"][-1]
    record["curves"]["value"][-1] += 0.25
    record["row"]["code_sha"] = "older"
    changed.write_text(json.dumps(record))
    before = {p: p.read_bytes() for p in kept}
    capsys.readouterr()
    assert main(["verify", str(store), "--sample", "0", "--refresh"]) == 0
    out = capsys.readouterr().out
    assert "stored the rerun in its place" in out and "1 reruns stored" in out
    assert all(p.read_bytes() == before[p] for p in kept)
    refreshed = json.loads(changed.read_text())
    assert refreshed["row"]["code_sha"] not in ("older", "")
    assert refreshed["curves"]["value"][-1] == original
    assert main(["verify", str(store), "--sample", "0"]) == 0
    assert "all 4 runs reproduce (exact)" in capsys.readouterr().out
    assert Store(store).check().ok


def test_runs_of_an_older_suite_version_are_stale(store, capsys):
    runs = Store(store).runs()
    config = json.loads(runs.config_json[0])
    config["suite_version"] = 1
    record_path = store / "records" / f"{runs.run_id[0]}.json"
    record = json.loads(record_path.read_text())
    record["row"]["config_json"] = json.dumps(config)
    record_path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["verify", str(store), "--sample", "0", "--methods", runs.method[0]]) == 1
    assert "STALE" in capsys.readouterr().out


def test_the_sample_is_seeded_and_respects_methods(store):
    runs = Store(store).runs()
    a, b = choose(runs, 2, 0, None), choose(runs, 2, 0, None)
    assert list(a.run_id) == list(b.run_id) and len(a) == 2
    assert set(choose(runs, None, 0, ["bads"]).method) == {"bads"}
    with pytest.raises(Exception, match="no complete run of mwn"):
        choose(runs, None, 0, ["mwn"])


def test_curve_comparison_counts_missing_and_nan_values_and_says_where():
    key = dict(step=[1, 2], split=["test"] * 2, metric_name=["acc"] * 2)
    a = pd.DataFrame({**key, "value": [0.5, float("nan")]})
    assert _max_abs_diff(a, a.copy()) == (0.0, "")
    assert _max_abs_diff(a, a.assign(value=[0.5, 0.1])) == (float("inf"),
                                                            "largest at test/acc, step 2")
    assert _max_abs_diff(a, a.iloc[:1])[0] == float("inf")
    assert _max_abs_diff(a, a.assign(value=[0.75, float("nan")])) == (
        0.25, "largest at test/acc, step 1")
    extra = pd.concat([a, pd.DataFrame(dict(step=[1], split=["weights"],
                                            metric_name=["grad_data"], value=[1.0]))])
    assert _max_abs_diff(a, extra) == (float("inf"), "weights/grad_data logged now, not stored")
    assert _max_abs_diff(extra, a) == (float("inf"), "weights/grad_data stored, not logged now")


def test_verify_of_an_empty_or_missing_store_says_so(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nothing")]) == 2
    assert "no runs" in capsys.readouterr().err


def test_several_stores_are_verified_in_turn_and_any_failure_fails(store, tmp_path, capsys):
    capsys.readouterr()
    missing = tmp_path / "nothing"
    assert main(["verify", str(store), str(store), "--sample", "1"]) == 0
    assert "every sampled run of the 2 stores verified reproduces" in capsys.readouterr().out
    assert main(["verify", str(store), str(missing), "--sample", "1"]) == 1
    captured = capsys.readouterr()
    assert f"## {missing}" in captured.out and "no runs" in captured.err
    assert f"1 of 2 stores verified do not reproduce: {missing}" in captured.err
