"""The results store: ``runs.csv``, ``curves.csv`` and ``weights/<run_id>.csv`` in one directory.

Writes are atomic and serialised: under an exclusive lock on ``DIR/.lock`` the file is read,
the run's rows replace any earlier rows of the same run_id, and the result is written to a
temporary file that replaces the old one (os.replace). A crash leaves either the old or the new
file, never a torn one. The runs.csv row is written last, so it is the commit marker: a run
counts as complete only once its row is there with status ``ok`` or ``diverged``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

RUN_COLUMNS = [
    "run_id", "scenario", "source", "profile", "method", "seed", "steps", "metric_name",
    "final_metric", "best_metric", "time_per_step_ms", "peak_mem_mb", "device", "status",
    "error", "config_json", "torch_version", "git_sha", "wall_s", "threads", "prepare_s",
    "weights_status",
]
CURVE_COLUMNS = ["run_id", "step", "split", "metric_name", "value"]
WEIGHT_COLUMNS = ["index", "weight", "group"]
COMPLETE = ("ok", "diverged")


def _atomic_write_csv(frame: pd.DataFrame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            frame.to_csv(f, index=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=columns)
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"run_id": str})


class Store:
    """A results directory. Safe against interruption and against concurrent writers."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.runs_path = self.root / "runs.csv"
        self.curves_path = self.root / "curves.csv"
        self.weights_dir = self.root / "weights"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def runs(self) -> pd.DataFrame:
        return _read(self.runs_path, RUN_COLUMNS)

    def curves(self) -> pd.DataFrame:
        return _read(self.curves_path, CURVE_COLUMNS)

    def weights(self, run_id: str) -> pd.DataFrame | None:
        path = self.weights_dir / f"{run_id}.csv"
        return pd.read_csv(path) if path.exists() else None

    def completed(self) -> set[str]:
        """run_ids whose row says ok or diverged (diverging is a deterministic outcome)."""
        runs = self.runs()
        return set(runs.loc[runs["status"].isin(COMPLETE), "run_id"]) if len(runs) else set()

    def write(self, row: dict, curves: pd.DataFrame, weights: pd.DataFrame | None) -> None:
        """Record one run: weights file, then its curves, then its runs.csv row (the commit)."""
        run_id = row["run_id"]
        with self._locked():
            weights_path = self.weights_dir / f"{run_id}.csv"
            if weights is not None:
                self.weights_dir.mkdir(exist_ok=True)
                _atomic_write_csv(weights[WEIGHT_COLUMNS], weights_path)
            else:  # a rerun that no longer has weights must not leave the old ones behind
                weights_path.unlink(missing_ok=True)
            old = self.curves()
            new = curves.assign(run_id=run_id)[CURVE_COLUMNS]
            kept = old[old["run_id"] != run_id]
            _atomic_write_csv(pd.concat([kept, new], ignore_index=True) if len(kept) else new,
                              self.curves_path)
            runs = self.runs()
            kept_runs = runs[runs["run_id"] != run_id]
            new_row = pd.DataFrame([row])
            merged = pd.concat([kept_runs, new_row], ignore_index=True) if len(kept_runs) else new_row
            columns = RUN_COLUMNS + [c for c in merged.columns if c not in RUN_COLUMNS]
            _atomic_write_csv(merged[columns], self.runs_path)
