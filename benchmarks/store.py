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
import re
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
    "weights_status", "code_sha", "jobs", "load_avg", "cpus",
]
REQUIRED_RUN_COLUMNS = ["run_id", "method", "seed", "status", "config_json"]
NUMERIC_RUN_COLUMNS = ["seed", "steps", "final_metric", "best_metric", "time_per_step_ms",
                       "peak_mem_mb", "wall_s", "threads", "prepare_s", "jobs", "load_avg", "cpus"]
INTEGER_RUN_COLUMNS = ["seed", "steps", "threads", "jobs", "cpus"]
CURVE_COLUMNS = ["run_id", "step", "split", "metric_name", "value"]
WEIGHT_COLUMNS = ["index", "weight", "group"]
WEIGHT_EXTRA = ["category"]  # optional: each example's finer category (efficient: WebNLG's)
COMPLETE = ("ok", "diverged")
STATUSES = ("ok", "diverged", "error", "oom")
RECORD_FORMAT = 1
LEASE_S = 600.0  # a claim whose owner has not shown life for this long is void


class StoreError(DpsBenchError):
    """A results directory that cannot be used as it is (what is wrong, where, how to fix it)."""


def _umask() -> int:
    """This process's umask, read from /proc (Linux) without changing it: ``os.umask`` can only
    be read by setting it, and another thread (a lease renewal) creating a file in between
    would get the wrong permissions. Elsewhere the value read once at import is used."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return _UMASK_AT_IMPORT


def _read_umask_once() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _read_umask_once()  # at import, before the suite starts any thread


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory, fsynced and
    renamed over ``path``, with mode 0666 & ~umask (``mkstemp`` alone would leave 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # the rename itself survives a power cut
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
    _raise_on_bad_rows(path, _bad_run_rows(frame), "a row without a run_id, a known status, a "
                       "readable config_json or numbers where numbers belong")
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
    bad = (~frame["run_id"].map(lambda r: isinstance(r, str) and bool(RUN_ID.fullmatch(r)))
           | ~frame["status"].isin(STATUSES)
           | ~frame["config_json"].map(_is_json_object))
    for column in NUMERIC_RUN_COLUMNS:  # a number, or blank where the column allows it
        if column not in frame.columns:
            continue
        number = pd.to_numeric(frame[column], errors="coerce")
        blank = frame[column].map(_blank)
        bad |= (number.isna() & ~blank) | (blank & (column == "seed"))
        if column in INTEGER_RUN_COLUMNS:
            bad |= number.notna() & (number != number.round())
    return bad


def _bad_curve_rows(frame: pd.DataFrame) -> pd.Series:
    step = pd.to_numeric(frame["step"], errors="coerce")
    value = pd.to_numeric(frame["value"], errors="coerce")
    return (step.isna() | (step != step.round())
            | ~frame["run_id"].map(lambda r: isinstance(r, str) and bool(RUN_ID.fullmatch(r)))
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


TEXT_COLUMNS = {"run_id", "scenario", "source", "profile", "method", "metric_name", "device",
                "status", "error", "config_json", "torch_version", "git_sha", "code_sha",
                "weights_status", "split", "group"}  # never numbers, even where they look it


def _numeric_where_possible(column: pd.Series) -> pd.Series:
    if column.name in TEXT_COLUMNS:
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
        or _bad_numbers(row)
        or not ("weights_sha256" in record and (
            record["weights_sha256"] is None or isinstance(record["weights_sha256"], str)
            and re.fullmatch(r"[0-9a-f]{64}", record["weights_sha256"])))
        and "a weights checksum that is not one"
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


def _bad_numbers(row: dict) -> str:
    """'' if every numeric field of a record's row is a number (an integer where one belongs) or
    null (not the seed), else what is wrong."""
    for column in NUMERIC_RUN_COLUMNS:
        value = row.get(column)
        if _blank(value) and column != "seed":  # None, NaN or "": a value not recorded
            continue
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or column in INTEGER_RUN_COLUMNS and isinstance(value, float)
                and not value.is_integer()):
            return f"{column} {value!r} where a number belongs"
    return ""


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
        self.manifest_path = self.root / "views.json"
        self.weights_dir = self.root / "weights"
        self.records_dir = self.root / "records"
        self.claims_dir = self.root / "claims"
        self.damaged_dir = self.root / "damaged"
        self._lock_depth = 0

    # -- opening ---------------------------------------------------------------------------

    def _misplaced(self) -> list[Path]:
        """Store entries of the wrong kind: a file where records/, weights/ or claims/ belongs,
        a folder where runs.csv, curves.csv or views.json belongs."""
        folders = (self.records_dir, self.weights_dir, self.root / "claims")
        files = (self.runs_path, self.curves_path, self.manifest_path)
        return ([p for p in folders if p.exists() and not p.is_dir()]
                + [p for p in files if p.is_dir()])

    def prepare(self) -> None:
        """Make sure runs can be written here, before anything trains: the path is (or can be
        made) a directory, it is writable, and any store files in it are dps-bench's and
        readable; a store from before run records is converted, and temporary files of dead
        writers are removed. Raises StoreError."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"--out {self.root} is a file, not a directory; give a directory "
                             "for the results")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=f".probe.{os.getpid()}.",
                                         suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise StoreError(f"cannot write results to {self.root}: {e.strerror or e}; choose a "
                             "writable results directory") from None
        misplaced = self._misplaced()
        if misplaced:
            raise StoreError(f"{misplaced[0]} is {_wrong_kind(misplaced[0])}: "
                             f"`dps-bench store repair {self.root}` sets it aside")
        with self._locked():
            _remove_orphaned_temporaries(self.root)
            self._load_unlocked(write_back=True)
            if self._legacy():
                self._convert_unlocked()

    def exists(self) -> bool:
        """Whether the directory holds a store (records or views)."""
        return self.records_dir.is_dir() or self.runs_path.exists()

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

    def _legacy(self) -> bool:
        """A store from before records: views, no records/ (an empty store is not legacy)."""
        return not self.records_dir.is_dir() and self.runs_path.exists()

    def _manifest(self) -> dict | None:
        try:
            manifest = json.loads(self.manifest_path.read_bytes())
        except (OSError, ValueError):
            return None
        ok = (isinstance(manifest, dict) and isinstance(manifest.get("records"), dict)
              and all(isinstance(manifest.get(k), str) for k in ("runs_sha256", "curves_sha256")))
        return manifest if ok else None

    def _views_current(self, paths: list[Path], full: bool) -> tuple[bytes, bytes] | None:
        """The views' bytes if the manifest says they were built from exactly these records
        (with ``full``, every record's SHA-256 is checked too; otherwise only their names) and
        the views are the bytes it names; else None."""
        manifest = self._manifest()
        if manifest is None or set(manifest["records"]) != {p.stem for p in paths}:
            return None
        try:
            runs, curves = self.runs_path.read_bytes(), self.curves_path.read_bytes()
        except OSError:
            return None
        if (hashlib.sha256(runs).hexdigest() != manifest["runs_sha256"]
                or hashlib.sha256(curves).hexdigest() != manifest["curves_sha256"]):
            return None
        if full and any(_sha256(p) != manifest["records"][p.stem] for p in paths):
            return None
        return runs, curves

    def _load_unlocked(self, write_back: bool, full: bool = True
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The views: from runs.csv/curves.csv when the manifest (views.json) says they were
        built from exactly the records in records/, else rebuilt from the records (and written
        back when ``write_back`` and the directory is writable). Raises StoreError."""
        paths = self._record_paths()
        if not paths:  # no records: the views are all there is (a store from before records)
            runs = (read_runs_csv(self.runs_path) if self.runs_path.exists()
                    else pd.DataFrame(columns=RUN_COLUMNS))
            curves = (read_curves_csv(self.curves_path) if self.curves_path.exists()
                      else pd.DataFrame(columns=CURVE_COLUMNS))
            return (runs if len(runs.columns) else pd.DataFrame(columns=RUN_COLUMNS),
                    curves if len(curves.columns) else pd.DataFrame(columns=CURVE_COLUMNS))
        if self._views_current(paths, full) is not None:
            with contextlib.suppress(StoreError):
                return read_runs_csv(self.runs_path), read_curves_csv(self.curves_path)
        records, hashes = [], {}
        for p in paths:
            try:
                records.append(read_record(p))
            except StoreError as e:
                raise StoreError(f"{e}; run `dps-bench store repair {self.root}` to set it aside "
                                 "(its run is trained again by the next `dps-bench run`)") from None
            hashes[p.stem] = _sha256(p)
        runs, curves = _views(records)
        if write_back:
            with contextlib.suppress(OSError):
                self._write_views_unlocked(runs, curves, hashes)
        return runs, curves

    def _write_views_unlocked(self, runs: pd.DataFrame, curves: pd.DataFrame,
                              records: dict[str, str]) -> None:
        """Write both views, then the manifest naming them and the records they come from."""
        runs_bytes, curves_bytes = _csv_bytes(runs), _csv_bytes(curves[CURVE_COLUMNS])
        atomic_write_bytes(self.curves_path, curves_bytes)
        atomic_write_bytes(self.runs_path, runs_bytes)
        atomic_write_bytes(self.manifest_path, json.dumps({
            "format": RECORD_FORMAT, "runs_sha256": hashlib.sha256(runs_bytes).hexdigest(),
            "curves_sha256": hashlib.sha256(curves_bytes).hexdigest(),
            "records": dict(sorted(records.items()))}, indent=0).encode())

    def _convert_unlocked(self) -> None:
        """Write a record for every run of a store made before records (views only), into
        ``records.partial/``, renamed to ``records/`` once complete: an interrupted conversion
        leaves the old store as it was."""
        runs, curves = self._load_unlocked(write_back=False)
        partial = self.root / "records.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        by_run = dict(tuple(curves.groupby("run_id"))) if len(curves) else {}
        hashes = {}
        for _, row in runs.iterrows():
            run_id = str(row["run_id"])
            weights = self.weights_dir / f"{run_id}.csv"
            own = by_run.get(run_id, pd.DataFrame(columns=CURVE_COLUMNS))
            data = json.dumps(_record(dict(row), own, _sha256(weights) if weights.exists()
                                      else None)).encode()
            atomic_write_bytes(partial / f"{run_id}.json", data)
            hashes[run_id] = hashlib.sha256(data).hexdigest()
        _fsync_dir(partial)
        os.rename(partial, self.records_dir)
        _fsync_dir(self.root)
        records = [read_record(p) for p in self._record_paths()]
        self._write_views_unlocked(*_views(records), hashes)

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
        path = self.weights_dir / f"{_checked_id(run_id)}.csv"
        if not path.exists():
            return None
        frame = _read_csv(path)
        if list(frame.columns) not in (WEIGHT_COLUMNS, WEIGHT_COLUMNS + WEIGHT_EXTRA) or \
                not pd.api.types.is_numeric_dtype(frame["weight"]):
            raise StoreError(f"{path} is not a weights file (columns {WEIGHT_COLUMNS}). "
                             f"{_recover(path)}")
        return frame

    def completed(self) -> set[str]:
        """run_ids whose run is complete (status ok or diverged: diverging is a deterministic
        outcome) with its weights file, where it has one."""
        paths = self._record_paths()
        if paths:
            done = set()
            for p in paths:
                with contextlib.suppress(StoreError):
                    if self._complete_record(read_record(p)):
                        done.add(p.stem)
            return done
        runs = self.runs()
        return set(runs.loc[runs["status"].isin(COMPLETE), "run_id"]) if len(runs) else set()

    def _complete_record(self, record: dict) -> bool:
        """A record of a complete run whose weights file (if it has one) is there: a run whose
        weights were lost is trained again."""
        sha = record["weights_sha256"]
        return record["row"]["status"] in COMPLETE and (
            not sha or (self.weights_dir / f"{record['row']['run_id']}.csv").is_file())

    def is_complete(self, run_id: str) -> bool:
        path = self.records_dir / f"{_checked_id(run_id)}.json"
        if path.exists():
            with contextlib.suppress(StoreError):
                return self._complete_record(read_record(path))
            return False
        return run_id in self.completed() if self._legacy() else False

    # -- writing ---------------------------------------------------------------------------

    def write(self, row: dict, curves: pd.DataFrame, weights: pd.DataFrame | None,
              views: bool = True) -> bool:
        """Record one run: its weights file, then its record (the commit: from here on the run
        is saved), then, with ``views``, the views (best effort: views left stale are rebuilt on
        the next read). Updating the views rewrites both CSV files, O(runs in the store), so a
        sweep passes ``views=False`` for most runs and calls :meth:`refresh_views` now and then.
        A failed run (status error or oom) never replaces a complete one (a ``--force`` rerun
        that fails keeps the earlier result); returns False when it was not written."""
        run_id = _checked_id(row["run_id"])
        wrong = _bad_numbers({k: _json_value(v) for k, v in row.items()})
        if wrong:  # a record that could not be read back: refuse it before anything is written
            raise StoreError(f"run {run_id}: {wrong}; not written")
        with self._locked():
            if self._legacy():
                self._convert_unlocked()
            self.records_dir.mkdir(parents=True, exist_ok=True)
            stored = self.records_dir / f"{run_id}.json"
            if row["status"] not in COMPLETE and stored.exists():
                with contextlib.suppress(StoreError):  # a failed run never replaces a complete
                    if read_record(stored)["row"]["status"] in COMPLETE:  # one (even one whose
                        return False                                       # weights were lost)
            runs = old = None
            if views:
                # the views as they are, before this record changes them (if another record
                # is damaged: save this run, leave the views)
                with contextlib.suppress(StoreError):
                    runs, old = self._load_unlocked(write_back=False, full=False)
            weights_path = self.weights_dir / f"{run_id}.csv"
            sha = None
            if weights is not None:
                self.weights_dir.mkdir(exist_ok=True)
                data = _csv_bytes(weights[[c for c in WEIGHT_COLUMNS + WEIGHT_EXTRA
                                           if c in weights.columns]])
                atomic_write_bytes(weights_path, data)
                sha = hashlib.sha256(data).hexdigest()
            else:  # a rerun that no longer has weights must not leave the old ones behind
                weights_path.unlink(missing_ok=True)
            own = curves.assign(run_id=run_id)[CURVE_COLUMNS]
            record = json.dumps(_record(row, own, sha)).encode()
            atomic_write_bytes(self.records_dir / f"{run_id}.json", record)
            if runs is None or not views:
                return True
            manifest = self._manifest()
            hashes = dict(manifest["records"]) if manifest else {}
            if manifest is None or set(hashes) - {run_id} != {
                    p.stem for p in self._record_paths()} - {run_id}:
                with contextlib.suppress(StoreError, OSError):
                    self._load_unlocked(write_back=True)  # rebuild everything from the records
                return True
            hashes[run_id] = hashlib.sha256(record).hexdigest()
            kept = old[old["run_id"] != run_id]
            new_curves = _as_read(pd.concat([kept, own], ignore_index=True) if len(kept) else own)
            kept_runs = runs[runs["run_id"] != run_id]
            new_row = pd.DataFrame([row])
            merged = pd.concat([kept_runs, new_row], ignore_index=True) if len(kept_runs) else new_row
            columns = [c for c in RUN_COLUMNS if c in merged.columns] + [
                c for c in merged.columns if c not in RUN_COLUMNS]
            with contextlib.suppress(OSError):
                self._write_views_unlocked(merged[columns], new_curves, hashes)
            return True

    def refresh_views(self) -> None:
        """Bring runs.csv, curves.csv and views.json up to date with the records (a no-op when
        they are). Best effort: a damaged record or an unwritable directory leaves the views as
        they are (the next read says what is wrong)."""
        if not self.records_dir.is_dir():
            return
        with contextlib.suppress(StoreError, OSError), self._locked():
            self._load_unlocked(write_back=True)

    # -- claims: several processes sharing a store ------------------------------------------

    def claim(self, run_id: str, force: bool = False) -> bool:
        """Take the lease on ``run_id`` for this process; False if another live process holds it
        or (unless ``force``) the run is complete. A lease is void once its owner is gone: on
        this host, once the process no longer exists; from another host, once it has not been
        renewed (:meth:`renew`) for LEASE_S seconds."""
        with self._locked():
            if not force and self.is_complete(run_id):
                return False
            self.claims_dir.mkdir(exist_ok=True)
            path = self.claims_dir / f"{_checked_id(run_id)}.json"
            holder = _read_claim(path)
            if holder is not None and holder != _me() and _alive(holder, path):
                return False
            atomic_write_bytes(path, json.dumps(_me()).encode())
            return True

    def renew(self, run_id: str) -> None:
        """Show this process is still training ``run_id`` (refreshes the lease's time), if the
        lease is still this process's."""
        path = self.claims_dir / f"{_checked_id(run_id)}.json"
        with contextlib.suppress(OSError):
            if _read_claim(path) == _me():
                os.utime(path)

    def release(self, run_id: str) -> None:
        """Give up this process's lease on ``run_id`` (if it holds it)."""
        path = self.claims_dir / f"{_checked_id(run_id)}.json"
        with self._locked():
            if _read_claim(path) == _me():
                path.unlink(missing_ok=True)

    def holder(self, run_id: str) -> dict | None:
        """The live process holding ``run_id``'s lease ({host, pid, start}), or None."""
        path = self.claims_dir / f"{_checked_id(run_id)}.json"
        holder = _read_claim(path)
        return holder if holder is not None and _alive(holder, path) else None

    # -- check and repair ------------------------------------------------------------------

    def check(self) -> CheckReport:
        """Read every file of the store and say what is wrong with it (nothing is changed)."""
        report = CheckReport()
        if not self.root.is_dir() or not self.exists():
            report.problems.append(f"{self.root} holds no dps-bench store (no records/ and no "
                                   "runs.csv)")
            return report
        for path in self._misplaced():
            report.problems.append(f"{path}: {_wrong_kind(path)}")
            report.damaged.append(path)
        paths = self._record_paths()
        report.legacy = self._legacy()
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
        good = []
        for p in paths:
            try:
                record = read_record(p)
            except StoreError as e:
                report.problems.append(str(e))
                report.damaged.append(p)
                continue
            weights = self.weights_dir / f"{p.stem}.csv"
            if record["weights_sha256"] and (
                    not weights.is_file() or _sha256(weights) != record["weights_sha256"]):
                report.problems.append(f"{weights}: missing or not the file its record names "
                                       "(checksum differs)")
                report.damaged.append(p)
                continue
            good.append(p)
        report.runs = len(good)
        if self._views_current(paths, full=True) is None:
            report.views_stale = True
            report.problems.append("runs.csv/curves.csv are not the views of the records in "
                                   "records/ (missing, edited or out of date)")
        return report

    def repair(self) -> list[str]:
        """Set damaged files aside in ``damaged/`` (never delete), salvage what can be read,
        convert an old store to records, and rebuild the views from the records. Returns what
        was done. Raises StoreError if the directory holds no store."""
        if not self.root.is_dir() or not self.exists():
            raise StoreError(f"{self.root} holds no dps-bench store (no records/ and no "
                             "runs.csv); check the path")
        if self._legacy() and not any(p.exists() for p in (
                self.records_dir, self.curves_path, self.manifest_path, self.weights_dir)):
            try:
                header = set(_read_csv(self.runs_path, drop_torn=True).columns)
            except StoreError:
                header = set()
            if not {"run_id", "config_json"} & header:
                raise StoreError(f"{self.runs_path} is not a dps-bench runs.csv (no run_id or "
                                 "config_json column): repair leaves a folder that is not a "
                                 "dps-bench store alone; check the path")
        done: list[str] = []
        try:
            (self.root / ".lock").touch(exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot repair {self.root}: {e.strerror or e}; repair needs write "
                             "access (`store check` reads without it)") from None
        with self._locked():
            report = self.check()
            stamp = time.strftime("%Y%m%d-%H%M%S")
            misplaced = self._misplaced()
            for path in misplaced:
                self.damaged_dir.mkdir(exist_ok=True)
                target = self.damaged_dir / f"{stamp}-{path.name}"
                shutil.move(path, target)
                done.append(f"set aside {path} -> {target} (it was of the wrong kind)")
            if misplaced:
                report = self.check()
            if report.legacy and report.damaged:  # keep both views as they were
                self.damaged_dir.mkdir(exist_ok=True)
                for path in (self.runs_path, self.curves_path):
                    if path.exists():
                        target = self.damaged_dir / f"{stamp}-{path.name}"
                        shutil.copy2(path, target)
                        done.append(f"copied {path} -> {target}")
            dropped: set[str] = set()
            for path in report.damaged:
                self.damaged_dir.mkdir(exist_ok=True)
                target = self.damaged_dir / f"{stamp}-{path.name}"
                if path.suffix == ".json":
                    shutil.move(path, target)
                    done.append(f"set aside {path} -> {target} (its run will be trained again)")
                else:  # a damaged view of an old store: salvage its good rows
                    kept, lost = _salvage(path)
                    dropped |= lost
                    done.append(f"kept the {kept} readable rows of {path}")
            if report.legacy and self.runs_path.exists():
                runs = read_runs_csv(self.runs_path)
                if self.curves_path.exists():
                    curves = read_curves_csv(self.curves_path)
                    missing = (set(runs["run_id"]) - set(curves["run_id"])) | dropped
                    lost = runs["run_id"].isin(missing) & runs["status"].isin(COMPLETE)
                    if lost.any():  # rows whose curves were (partly) unreadable: train again
                        done.append(f"{int(lost.sum())} runs lost curve rows: they will be "
                                    "trained again (their rows are in damaged/)")
                        atomic_write_bytes(self.runs_path, _csv_bytes(runs[~lost]))
                self._convert_unlocked()
                done.append(f"converted {self.root} to one record per run")
            records = {p.stem: read_record(p) for p in self._record_paths()}
            hashes = {run_id: _sha256(self.records_dir / f"{run_id}.json") for run_id in records}
            runs, curves = _views(list(records.values()))
            self._write_views_unlocked(runs, curves, hashes)
            done.append(f"rebuilt runs.csv and curves.csv from the records ({len(runs)} runs)")
        return done


def _wrong_kind(path: Path) -> str:
    """What is wrong with a store entry of the wrong kind (see Store._misplaced)."""
    return "a folder where a file belongs" if path.is_dir() else "a file where a folder belongs"


def _salvage(path: Path) -> tuple[int, set[str]]:
    """Rewrite the damaged CSV view ``path`` with only its rows that read cleanly; returns how
    many rows it kept and the run ids of the rows it dropped (where readable)."""
    frame = _read_csv(path, drop_torn=True)
    is_runs = path.name == "runs.csv"
    columns = REQUIRED_RUN_COLUMNS if is_runs else CURVE_COLUMNS
    if any(c not in frame.columns for c in columns):  # nothing readable: an empty file
        atomic_write_bytes(path, _csv_bytes(pd.DataFrame(columns=columns)))
        return 0, set()
    bad = _bad_run_rows(frame) if is_runs else _bad_curve_rows(frame)
    torn = _torn_ids(path)
    atomic_write_bytes(path, _csv_bytes(frame[~bad]))
    lost = {str(r) for r in frame.loc[bad, "run_id"] if not _blank(r)} | torn
    return int((~bad).sum()), lost


def _torn_ids(path: Path) -> set[str]:
    """The run ids (first field, where it looks like one) of the lines of a CSV file whose
    number of fields is not the header's."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        return set()
    if not rows:
        return set()
    return {r[0] for r in rows[1:] if len(r) != len(rows[0]) and r and RUN_ID.fullmatch(r[0])}


RUN_ID = re.compile(r"[0-9a-f]{16}")


def _checked_id(run_id) -> str:
    """``run_id`` if it is a run id (16 lower-case hex digits), which makes it safe as a file
    name; StoreError otherwise (a foreign or edited file must not steer a path)."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise StoreError(f"{run_id!r} is not a run id (16 hex digits); the store is damaged or "
                         "not dps-bench's")
    return run_id


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_orphaned_temporaries(root: Path) -> None:
    """Delete the temporary files (``.<name>.<pid>.<random>.tmp``) that writers killed mid-write
    left behind, where that writer's process no longer exists on this host."""
    for folder in (root, root / "records", root / "weights", root / "claims"):
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            match = re.search(r"\.(\d+)\.[^.]*\.tmp$", tmp.name)
            if match and not _pid_alive(int(match.group(1))):
                tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a pid reused by
    another process from the one that took a lease; None where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _read_claim(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and {"host", "pid"} <= set(holder) else None


def _alive(holder: dict, path: Path) -> bool:
    """Whether a lease's owner still holds it: on this host, while the process exists (and is
    the same process: same start time); from another host, while renewed within LEASE_S."""
    if holder.get("host") == socket.gethostname():
        try:
            pid = int(holder["pid"])
        except (TypeError, ValueError):
            return False
        if not _pid_alive(pid):
            return False
        start = holder.get("start")
        return start is None or _start_time(pid) in (None, start)
    try:
        return time.time() - path.stat().st_mtime < LEASE_S
    except OSError:
        return False
