"""The results store: one directory, every run in a file of its own, and tidy views of them all.

Layout of a results directory DIR:

- ``records/<run_id>.json``: one run, its ``runs.csv`` row and its curves. The records are the
  store's source of truth; a run is complete once its record exists with status ``ok`` or
  ``diverged``.
- ``weights/<run_id>.csv``: the run's final per-example weights (index, weight, group), if any;
  the record holds their SHA-256.
- ``runs.csv``, ``curves.csv``: the views every reader uses (all records' rows and curves),
  updated after each run and rebuilt from ``records/`` whenever they are missing, damaged or out of
  step with it.
- ``claims/<run_id>.json``: a run being trained now, and by which process (a lease; see
  :meth:`Store.claim`).
- ``damaged/``: what ``dps-bench store repair`` set aside (nothing is deleted).

Every file is written to a temporary file, fsynced and renamed over the old one (so a crash leaves
either the old or the new file, never a torn one), with the permissions the umask gives; writes
are serialised by an exclusive lock on ``DIR/.lock``, so several processes can share a store. A
record damaged by other means (a disk error, a hand edit) harms only its own run: ``store check``
names it and ``store repair`` sets it aside, so the next ``run`` trains that run again.

Stores written before records existed (``runs.csv`` and ``curves.csv`` only) are read as they are
and converted to records by the first run written into them or by ``store repair``.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import DpsBenchError

RUN_COLUMNS = [
    "run_id", "scenario", "source", "profile", "method", "seed", "steps", "metric_name",
    "final_metric", "best_metric", "time_per_step_ms", "peak_mem_mb", "device", "status",
    "error", "config_json", "torch_version", "git_sha", "wall_s", "threads", "prepare_s",
    "weights_status", "code_sha", "jobs", "load_avg",
]
REQUIRED_RUN_COLUMNS = ["run_id", "method", "seed", "status", "config_json"]
CURVE_COLUMNS = ["run_id", "step", "split", "metric_name", "value"]
WEIGHT_COLUMNS = ["index", "weight", "group"]
COMPLETE = ("ok", "diverged")
STATUSES = ("ok", "diverged", "error", "oom")
RECORD_FORMAT = 1
LEASE_S = 600.0  # a claim whose owner has not shown life for this long is void


class StoreError(DpsBenchError):
    """A results directory that cannot be used as it is (what is wrong, where, how to fix it)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory, fsynced and
    renamed over ``path``, with mode 0666 & ~umask (``mkstemp`` alone would leave 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _json_value(value):
    """A runs.csv cell as JSON can hold it (numpy scalars to Python, NaN kept as NaN)."""
    if hasattr(value, "item"):
        value = value.item()
    return value


# ---------------------------------------------------------------------------------------------
# Reading and checking the files


def read_runs_csv(path: Path) -> pd.DataFrame:
    """``runs.csv`` as a frame, checked: it parses, has the required columns, and every row has a
    run id, a known status and a readable configuration. Raises StoreError naming the file and
    the first bad line (1-based, the header being line 1)."""
    frame = _read_csv(path)
    _require_columns(path, frame, REQUIRED_RUN_COLUMNS, "runs.csv")
    _raise_on_bad_rows(path, _bad_run_rows(frame), "a row without a run_id, a known status or a "
                       "readable config_json")
    return frame


def read_curves_csv(path: Path) -> pd.DataFrame:
    """``curves.csv`` as a frame, checked: it parses, has its five columns, every step is an
    integer and every value a number. Raises StoreError naming the file and the first bad line."""
    frame = _read_csv(path)
    _require_columns(path, frame, CURVE_COLUMNS, "curves.csv")
    _raise_on_bad_rows(path, _bad_curve_rows(frame), "not a curve row (run_id, integer step, "
                       "split, metric, number)")
    return frame.assign(step=pd.to_numeric(frame["step"]).astype("int64"),
                        value=pd.to_numeric(frame["value"]))


def _require_columns(path: Path, frame: pd.DataFrame, columns: list[str], kind: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise StoreError(f"{path} is not a dps-bench {kind} (no column {', '.join(missing)}); "
                         "choose another --out, or move the file away")


def _raise_on_bad_rows(path: Path, bad: pd.Series, what: str) -> None:
    if bad.any():
        line = int(bad.to_numpy().nonzero()[0][0]) + 2
        raise StoreError(f"{path}, line {line}: {what} (the file is damaged). {_recover(path)}")


def _bad_run_rows(frame: pd.DataFrame) -> pd.Series:
    return (frame["run_id"].map(_blank) | ~frame["status"].isin(STATUSES)
            | ~frame["config_json"].map(_is_json_object))


def _bad_curve_rows(frame: pd.DataFrame) -> pd.Series:
    step = pd.to_numeric(frame["step"], errors="coerce")
    value = pd.to_numeric(frame["value"], errors="coerce")
    return (step.isna() | (step != step.round()) | frame["run_id"].map(_blank)
            | frame["split"].map(_blank) | frame["metric_name"].map(_blank)
            | (value.isna() & frame["value"].notna()))


def _recover(path: Path) -> str:
    return (f"Restore it (e.g. `git checkout -- {path}`), or run `dps-bench store repair "
            f"{path.parent}`, which rebuilds it from the run records, or keeps its readable rows "
            f"and sets the file aside in {path.parent / 'damaged'}/ (the runs of unreadable rows "
            "are trained again by the next `dps-bench run`)")


def _read_csv(path: Path, drop_torn: bool = False) -> pd.DataFrame:
    """A CSV file as a frame of its cells (empty cells NaN); every line must have the header's
    number of fields (with ``drop_torn``, lines that do not are dropped instead)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        if not drop_torn:
            raise StoreError(f"{path}: not UTF-8 text at byte {e.start} (the file is damaged). "
                             f"{_recover(path)}") from None
        text = path.read_bytes().decode("utf-8", errors="replace")
    return _parse_csv(text, path, drop_torn)


def _parse_csv(text: str, path: Path, drop_torn: bool = False) -> pd.DataFrame:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise StoreError(f"{path}: cannot be read as CSV ({e}). {_recover(path)}") from None
    if not rows:
        return pd.DataFrame()
    header = rows[0]
    if len(set(header)) != len(header):
        raise StoreError(f"{path}, line 1: a header with repeated columns. {_recover(path)}")
    body = []
    for i, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            if drop_torn:
                continue
            raise StoreError(f"{path}, line {i}: {len(row)} fields where the header has "
                             f"{len(header)} (a torn or edited line). {_recover(path)}")
        body.append(row)
    frame = pd.DataFrame(body, columns=header, dtype=object)
    frame = frame.where(frame != "", float("nan"))
    return frame.apply(_numeric_where_possible)


def _numeric_where_possible(column: pd.Series) -> pd.Series:
    if column.name == "run_id":
        return column
    converted = pd.to_numeric(column, errors="coerce")
    return converted if (converted.notna() == column.notna()).all() else column


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _is_json_object(text) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (TypeError, ValueError):
        return False


def read_record(path: Path) -> dict:
    """One run record, checked: ``{"format": 1, "row": {...}, "curves": {column: [...]},
    "weights_sha256": str | None}`` with the row's required fields, a known status, a readable
    configuration and curve columns of equal length. Raises StoreError naming the file."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise StoreError(f"{path}: not a readable run record ({e})") from None
    row = record.get("row") if isinstance(record, dict) else None
    curves = record.get("curves") if isinstance(record, dict) else None
    problem = (
        not isinstance(record, dict) and "not a JSON object"
        or record.get("format") != RECORD_FORMAT and f"format {record.get('format')!r}"
        or not isinstance(row, dict) and "no row"
        or any(k not in row for k in REQUIRED_RUN_COLUMNS) and "a row without its required fields"
        or row.get("run_id") != path.stem and "a run_id that is not its file name"
        or row.get("status") not in STATUSES and f"status {row.get('status')!r}"
        or not _is_json_object(row.get("config_json")) and "an unreadable config_json"
        or not isinstance(curves, dict) and "no curves"
        or sorted(curves) != sorted(CURVE_COLUMNS[1:]) and "curves without their columns"
        or len({len(v) if isinstance(v, list) else -1 for v in curves.values()}) != 1
        and "curve columns of different lengths"
        or min(len(v) if isinstance(v, list) else -1 for v in curves.values()) < 0
        and "curve columns that are not lists"
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in curves["step"])
        and "a non-integer step"
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in curves["value"])
        and "a non-numeric curve value"
        or not all(isinstance(v, str) for k in ("split", "metric_name") for v in curves[k])
        and "a non-text split or metric name"
    )
    if problem:
        raise StoreError(f"{path}: a damaged run record ({problem})")
    return record


def _record(row: dict, curves: pd.DataFrame, weights_sha: str | None) -> dict:
    return {
        "format": RECORD_FORMAT,
        "row": {k: _json_value(v) for k, v in row.items()},
        "curves": {"step": [int(s) for s in curves["step"]],
                   "split": [str(s) for s in curves["split"]],
                   "metric_name": [str(s) for s in curves["metric_name"]],
                   "value": [float(v) for v in curves["value"]]},
        "weights_sha256": weights_sha,
    }


def _as_read(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the column types it gets when written to CSV and read back, so that views
    rebuilt from records look exactly like views read from runs.csv/curves.csv."""
    return _parse_csv(_csv_bytes(frame).decode(), Path("<memory>"))


def _views(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [r["row"] for r in records]
    runs = pd.DataFrame(rows) if rows else pd.DataFrame(columns=RUN_COLUMNS)
    columns = [c for c in RUN_COLUMNS if c in runs.columns] + [
        c for c in runs.columns if c not in RUN_COLUMNS]
    runs = runs[columns]
    curves = [pd.DataFrame(r["curves"]).assign(run_id=r["row"]["run_id"]) for r in records]
    curves = [c for c in curves if len(c)]
    frame = (pd.concat(curves, ignore_index=True)[CURVE_COLUMNS] if curves
             else pd.DataFrame(columns=CURVE_COLUMNS))
    frame = _as_read(frame) if len(frame) else frame
    frame = frame.assign(step=frame["step"].astype("int64")) if len(frame) else frame
    return (_as_read(runs) if len(runs) else runs), frame


# ---------------------------------------------------------------------------------------------
# The store


@dataclass
class CheckReport:
    """What ``Store.check`` found. ``problems`` are lines for the user; ``damaged`` the files
    ``repair`` sets aside; ``views_stale`` whether runs.csv/curves.csv need rebuilding."""

    runs: int = 0
    legacy: bool = False
    problems: list[str] = field(default_factory=list)
    damaged: list[Path] = field(default_factory=list)
    views_stale: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


class Store:
    """A results directory (see the module docstring). Safe against interruption and against
    several processes writing into it at once."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.runs_path = self.root / "runs.csv"
        self.curves_path = self.root / "curves.csv"
        self.weights_dir = self.root / "weights"
        self.records_dir = self.root / "records"
        self.claims_dir = self.root / "claims"
        self.damaged_dir = self.root / "damaged"
        self._lock_depth = 0

    # -- opening ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Make sure runs can be written here, before anything trains: the path is (or can be
        made) a directory, it is writable, and any store files in it are dps-bench's and
        readable; a store from before run records is converted. Raises StoreError."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"--out {self.root} is a file, not a directory; give a directory "
                             "for the results")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".probe.")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise StoreError(f"cannot write results to {self.root}: {e.strerror or e}; choose a "
                             "writable --out") from None
        with self._locked():
            self._load_unlocked(write_back=True)
            if not self.records_dir.exists() and self.runs_path.exists():
                self._convert_unlocked()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The store's exclusive lock (re-entrant within this object: flock on a second open
        file of the same lock would wait for the first)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _record_paths(self) -> list[Path]:
        if not self.records_dir.is_dir():
            return []
        return sorted(p for p in self.records_dir.iterdir()
                      if p.suffix == ".json" and not p.name.startswith("."))

    def _load_unlocked(self, write_back: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The views, from runs.csv/curves.csv when they agree with records/, else rebuilt from
        the records (and written back when ``write_back`` and the directory is writable)."""
        paths = self._record_paths()
        if not paths:  # no records: the views are all there is (a store from before records)
            runs = (read_runs_csv(self.runs_path) if self.runs_path.exists()
                    else pd.DataFrame(columns=RUN_COLUMNS))
            curves = (read_curves_csv(self.curves_path) if self.curves_path.exists()
                      else pd.DataFrame(columns=CURVE_COLUMNS))
            return (runs if len(runs.columns) else pd.DataFrame(columns=RUN_COLUMNS),
                    curves if len(curves.columns) else pd.DataFrame(columns=CURVE_COLUMNS))
        ids = {p.stem for p in paths}
        try:
            newest_record = max(p.stat().st_mtime_ns for p in paths)
            oldest_view = min(self.runs_path.stat().st_mtime_ns,
                              self.curves_path.stat().st_mtime_ns)
            if newest_record <= oldest_view:  # views written after every record: check them
                runs, curves = read_runs_csv(self.runs_path), read_curves_csv(self.curves_path)
                if set(runs["run_id"]) == ids and set(curves["run_id"]) <= ids:
                    return runs, curves
        except (StoreError, OSError):
            pass
        records = []
        for p in paths:
            try:
                records.append(read_record(p))
            except StoreError as e:
                raise StoreError(f"{e}; run `dps-bench store repair {self.root}` to set it aside "
                                 "(its run is trained again by the next `dps-bench run`)") from None
        runs, curves = _views(records)
        if write_back:
            with contextlib.suppress(OSError):
                self._write_views_unlocked(runs, curves)
        return runs, curves

    def _write_views_unlocked(self, runs: pd.DataFrame, curves: pd.DataFrame) -> None:
        atomic_write_bytes(self.curves_path, _csv_bytes(curves[CURVE_COLUMNS]))
        atomic_write_bytes(self.runs_path, _csv_bytes(runs))

    def _convert_unlocked(self) -> None:
        """Write a record for every run of a store made before records (views only)."""
        runs, curves = self._load_unlocked(write_back=False)
        self.records_dir.mkdir(exist_ok=True)
        by_run = dict(tuple(curves.groupby("run_id"))) if len(curves) else {}
        for _, row in runs.iterrows():
            run_id = str(row["run_id"])
            weights = self.weights_dir / f"{run_id}.csv"
            own = by_run.get(run_id, pd.DataFrame(columns=CURVE_COLUMNS))
            record = _record({k: v for k, v in row.items() if not _blank(v) or k in RUN_COLUMNS},
                             own, _sha256(weights) if weights.exists() else None)
            atomic_write_bytes(self.records_dir / f"{run_id}.json",
                               json.dumps(record).encode())

    # -- reading ---------------------------------------------------------------------------

    def _load(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if not self.root.is_dir():
            return pd.DataFrame(columns=RUN_COLUMNS), pd.DataFrame(columns=CURVE_COLUMNS)
        try:
            with self._locked():  # views rebuilt from the records are written back if possible
                return self._load_unlocked(write_back=True)
        except OSError:  # a read-only store: rebuild in memory
            return self._load_unlocked(write_back=False)

    def runs(self) -> pd.DataFrame:
        """Every run's row (runs.csv). Raises StoreError for a damaged store."""
        return self._load()[0]

    def curves(self) -> pd.DataFrame:
        """Every run's curves (curves.csv). Raises StoreError for a damaged store."""
        return self._load()[1]

    def weights(self, run_id: str) -> pd.DataFrame | None:
        """A run's final weights, or None if it has none. Raises StoreError if the file is not a
        readable weights file."""
        path = self.weights_dir / f"{run_id}.csv"
        if not path.exists():
            return None
        frame = _read_csv(path)
        if list(frame.columns) != WEIGHT_COLUMNS or not pd.api.types.is_numeric_dtype(
                frame["weight"]):
            raise StoreError(f"{path} is not a weights file (columns {WEIGHT_COLUMNS}). {_recover(path)}")
        return frame

    def completed(self) -> set[str]:
        """run_ids whose run is complete (status ok or diverged: diverging is a deterministic
        outcome)."""
        paths = self._record_paths()
        if paths:
            done = set()
            for p in paths:
                with contextlib.suppress(StoreError):
                    if read_record(p)["row"]["status"] in COMPLETE:
                        done.add(p.stem)
            return done
        runs = self.runs()
        return set(runs.loc[runs["status"].isin(COMPLETE), "run_id"]) if len(runs) else set()

    def is_complete(self, run_id: str) -> bool:
        path = self.records_dir / f"{run_id}.json"
        if path.exists():
            with contextlib.suppress(StoreError):
                return read_record(path)["row"]["status"] in COMPLETE
            return False
        return run_id in self.completed() if not self._record_paths() else False

    # -- writing ---------------------------------------------------------------------------

    def write(self, row: dict, curves: pd.DataFrame, weights: pd.DataFrame | None) -> None:
        """Record one run: its weights file, then its record (the commit), then the views."""
        run_id = row["run_id"]
        with self._locked():
            if not self.records_dir.exists() and self.runs_path.exists():
                self._convert_unlocked()
            self.records_dir.mkdir(parents=True, exist_ok=True)
            weights_path = self.weights_dir / f"{run_id}.csv"
            sha = None
            if weights is not None:
                self.weights_dir.mkdir(exist_ok=True)
                data = _csv_bytes(weights[WEIGHT_COLUMNS])
                atomic_write_bytes(weights_path, data)
                sha = hashlib.sha256(data).hexdigest()
            else:  # a rerun that no longer has weights must not leave the old ones behind
                weights_path.unlink(missing_ok=True)
            own = curves.assign(run_id=run_id)[CURVE_COLUMNS]
            runs, old = self._load_unlocked(write_back=False)
            atomic_write_bytes(self.records_dir / f"{run_id}.json",
                               json.dumps(_record(row, own, sha)).encode())
            kept = old[old["run_id"] != run_id]
            new_curves = pd.concat([kept, own], ignore_index=True) if len(kept) else own
            kept_runs = runs[runs["run_id"] != run_id]
            new_row = pd.DataFrame([row])
            merged = pd.concat([kept_runs, new_row], ignore_index=True) if len(kept_runs) else new_row
            columns = [c for c in RUN_COLUMNS if c in merged.columns] + [
                c for c in merged.columns if c not in RUN_COLUMNS]
            self._write_views_unlocked(merged[columns], new_curves)

    # -- claims: several processes sharing a store ------------------------------------------

    def claim(self, run_id: str, force: bool = False) -> bool:
        """Take the lease on ``run_id`` for this process; False if another live process holds it
        or (unless ``force``) the run is complete. A lease is void once its owner is gone (same
        host: the process no longer exists) or has not renewed it (:meth:`renew`) for LEASE_S
        seconds."""
        with self._locked():
            if not force and self.is_complete(run_id):
                return False
            self.claims_dir.mkdir(exist_ok=True)
            path = self.claims_dir / f"{run_id}.json"
            holder = _read_claim(path)
            if holder is not None and holder != _me() and _alive(holder, path):
                return False
            atomic_write_bytes(path, json.dumps(_me()).encode())
            return True

    def renew(self, run_id: str) -> None:
        """Show this process is still training ``run_id`` (refreshes the lease's time)."""
        with contextlib.suppress(OSError):
            os.utime(self.claims_dir / f"{run_id}.json")

    def release(self, run_id: str) -> None:
        """Give up this process's lease on ``run_id`` (if it holds it)."""
        path = self.claims_dir / f"{run_id}.json"
        with self._locked():
            if _read_claim(path) == _me():
                path.unlink(missing_ok=True)

    def holder(self, run_id: str) -> dict | None:
        """The live process holding ``run_id``'s lease ({host, pid}), or None."""
        path = self.claims_dir / f"{run_id}.json"
        holder = _read_claim(path)
        return holder if holder is not None and _alive(holder, path) else None

    # -- check and repair ------------------------------------------------------------------

    def check(self) -> CheckReport:
        """Read every file of the store and say what is wrong with it (nothing is changed)."""
        report = CheckReport()
        if not self.root.is_dir():
            report.problems.append(f"{self.root} is not a directory")
            return report
        paths = self._record_paths()
        report.legacy = not paths
        if report.legacy:
            for path, reader in ((self.runs_path, read_runs_csv),
                                 (self.curves_path, read_curves_csv)):
                if path.exists():
                    try:
                        frame = reader(path)
                        if path == self.runs_path:
                            report.runs = len(frame)
                    except StoreError as e:
                        report.problems.append(str(e))
                        report.damaged.append(path)
            return report
        ids = set()
        for p in paths:
            try:
                record = read_record(p)
            except StoreError as e:
                report.problems.append(str(e))
                report.damaged.append(p)
                continue
            ids.add(p.stem)
            weights = self.weights_dir / f"{p.stem}.csv"
            if record["weights_sha256"] and (
                    not weights.exists() or _sha256(weights) != record["weights_sha256"]):
                report.problems.append(f"{weights}: missing or not the file its record names "
                                       "(checksum differs)")
                report.damaged.append(p)
                ids.discard(p.stem)
        report.runs = len(ids)
        try:
            runs, curves = read_runs_csv(self.runs_path), read_curves_csv(self.curves_path)
            report.views_stale = set(runs["run_id"]) != ids or not set(curves["run_id"]) <= ids
        except (StoreError, OSError) as e:
            report.views_stale = True
            report.problems.append(f"views: {e}" if isinstance(e, StoreError) else
                                   f"views: {e.filename}: {e.strerror}")
        if report.views_stale and not any(p.startswith("views:") for p in report.problems):
            report.problems.append("runs.csv/curves.csv do not list exactly the runs in records/")
        return report

    def repair(self) -> list[str]:
        """Set damaged files aside in ``damaged/`` (never delete), salvage what can be read,
        convert an old store to records, and rebuild the views. Returns what was done."""
        done: list[str] = []
        with self._locked():
            report = self.check()
            stamp = time.strftime("%Y%m%d-%H%M%S")
            if report.legacy and report.damaged:  # keep both views as they were
                self.damaged_dir.mkdir(exist_ok=True)
                for path in (self.runs_path, self.curves_path):
                    if path.exists():
                        shutil.copy2(path, self.damaged_dir / f"{stamp}-{path.name}")
                        done.append(f"copied {path} -> {self.damaged_dir / (stamp + '-' + path.name)}")
            for path in report.damaged:
                self.damaged_dir.mkdir(exist_ok=True)
                target = self.damaged_dir / f"{stamp}-{path.name}"
                if path.suffix == ".json":
                    shutil.move(path, target)
                    done.append(f"set aside {path} -> {target} (its run will be trained again)")
                else:  # a damaged view of an old store: salvage its good rows
                    kept = _salvage(path)
                    done.append(f"kept the {kept} readable rows of {path}")
            if report.legacy and self.runs_path.exists():
                runs = read_runs_csv(self.runs_path)
                if self.curves_path.exists():
                    curves = read_curves_csv(self.curves_path)
                    missing = set(runs["run_id"]) - set(curves["run_id"])
                    lost = runs["run_id"].isin(missing) & runs["status"].isin(COMPLETE)
                    if lost.any():  # rows whose curves were unreadable: train them again
                        done.append(f"{int(lost.sum())} runs had no readable curves: they will "
                                    "be trained again (their rows are in damaged/)")
                        atomic_write_bytes(self.runs_path, _csv_bytes(runs[~lost]))
                self._convert_unlocked()
                done.append(f"converted {self.root} to one record per run")
            runs, curves = self._load_unlocked(write_back=False)
            self._write_views_unlocked(runs, curves)
            done.append(f"rebuilt runs.csv and curves.csv ({len(runs)} runs)")
        return done


def _salvage(path: Path) -> int:
    """Rewrite the damaged CSV view ``path`` with only its rows that read cleanly."""
    frame = _read_csv(path, drop_torn=True)
    is_runs = path.name == "runs.csv"
    columns = REQUIRED_RUN_COLUMNS if is_runs else CURVE_COLUMNS
    if any(c not in frame.columns for c in columns):  # nothing readable: an empty file
        atomic_write_bytes(path, _csv_bytes(pd.DataFrame(columns=columns)))
        return 0
    good = frame[~(_bad_run_rows(frame) if is_runs else _bad_curve_rows(frame))]
    atomic_write_bytes(path, _csv_bytes(good if len(good.columns) else
                                         pd.DataFrame(columns=columns)))
    return len(good)


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _read_claim(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and {"host", "pid"} <= set(holder) else None


def _alive(holder: dict, path: Path) -> bool:
    try:
        fresh = time.time() - path.stat().st_mtime < LEASE_S
    except OSError:
        return False
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, TypeError):
            pass
    return fresh
