"""Reference experiments: one YAML file per block of a paper table or figure, run by name.

Each file under ``benchmarks/configs/reference/`` names a scenario, source, profile, methods,
seeds, optional ``named_only: true`` (run only when named with ``--only``), ``needs`` (the data,
hardware and time it needs: printed before it starts), optional ``set``
overrides (as ``--set`` takes them), an optional ``grid`` (a list of
``KEY=V1,V2,...`` items, as ``--grid`` takes them: the meta-set-size and β/σ sweeps), an optional
``retrain`` ({fractions: [...], methods: [...]}: ``dps-bench retrain`` on the directory once its
runs are done) and the results sub-directory ``out``. ``dps-bench reproduce`` runs every
reference experiment of a profile through the same resumable sweep as ``run``, writes each
directory's ``summary.md``, then the profile's report and claims (``report_dir``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .errors import ConfigError

REFERENCE_DIR = Path(__file__).resolve().parent / "configs" / "reference"
KEYS = {"scenario", "source", "profile", "methods", "seeds", "set", "grid", "retrain", "out",
        "named_only", "needs"}
OPTIONAL = {"set", "grid", "retrain", "named_only", "needs"}


@dataclass(frozen=True)
class Reference:
    """One reference experiment (a results directory's worth of runs)."""

    name: str
    scenario: str
    source: str
    profile: str
    methods: list[str]
    seeds: list[int]
    out: str
    sets: list[str] = field(default_factory=list)  # "key=value" items, as --set takes them
    grid: list[str] = field(default_factory=list)  # "KEY=V1,V2" items, as --grid takes them
    retrain_fractions: list[float] = field(default_factory=list)
    retrain_methods: list[str] = field(default_factory=list)
    named_only: bool = False  # runs only when named with --only (not part of its profile's suite)
    needs: str = ""  # the data, hardware and time it needs, printed before it starts


def load_reference(path: Path) -> Reference:
    """Parse and check one reference file; errors name the file and the bad key."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"reference config {path}: cannot read it ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"reference config {path}: expected a mapping of {sorted(KEYS)}")
    unknown = set(raw) - KEYS
    missing = KEYS - OPTIONAL - set(raw)
    if unknown or missing:
        raise ConfigError(f"reference config {path}: unknown keys {sorted(unknown)}, missing keys "
                          f"{sorted(missing)}; allowed: {sorted(KEYS)}")
    sets: dict[str, Any] = raw.get("set") or {}
    if not isinstance(sets, dict) or not isinstance(raw["methods"], list) \
            or not isinstance(raw["seeds"], list):
        raise ConfigError(f"reference config {path}: methods and seeds must be lists, set a mapping")
    texts = {k: raw[k] for k in ("scenario", "source", "profile", "out")}
    if not all(isinstance(v, str) and v for v in texts.values()):
        raise ConfigError(f"reference config {path}: scenario, source, profile and out must be "
                          "non-empty strings")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in raw["seeds"]):
        raise ConfigError(f"reference config {path}: seeds must be whole numbers")
    if not all(isinstance(k, str) for k in sets):
        raise ConfigError(f"reference config {path}: set's keys must be names")
    grid = raw.get("grid") or []
    if not isinstance(grid, list) or not all(isinstance(g, str) and "=" in g for g in grid):
        raise ConfigError(f"reference config {path}: grid must be a list of 'KEY=V1,V2,...' "
                          "strings (e.g. meta_per_class=5,10,25,50)")
    retrain = raw.get("retrain") or {}
    if not isinstance(retrain, dict) or set(retrain) - {"fractions", "methods"} or (
            retrain and not isinstance(retrain.get("fractions"), list)):
        raise ConfigError(f"reference config {path}: retrain must be a mapping with a list "
                          "'fractions' and optionally a list 'methods'")
    fractions = retrain.get("fractions") or []
    retrain_methods = retrain.get("methods") or []
    if not isinstance(retrain_methods, list) or not all(
            isinstance(m, str) and m in raw["methods"] for m in retrain_methods):
        raise ConfigError(f"reference config {path}: retrain methods must be a list of names "
                          f"among its methods {raw['methods']}")
    if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1
               for f in fractions):
        raise ConfigError(f"reference config {path}: retrain fractions must lie in (0, 1]")
    out = PurePosixPath(texts["out"])
    if out.is_absolute() or ".." in out.parts or "\\" in texts["out"]:
        raise ConfigError(f"reference config {path}: out {texts['out']!r} must be a relative path "
                          "inside the results folder (no '..', not absolute)")
    return Reference(name=path.stem, scenario=texts["scenario"], source=texts["source"],
                     profile=texts["profile"], methods=[str(m) for m in raw["methods"]],
                     seeds=list(raw["seeds"]), out=texts["out"],
                     sets=[f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                           for k, v in sets.items()],
                     grid=list(grid), retrain_fractions=[float(f) for f in fractions],
                     retrain_methods=list(retrain_methods),
                     named_only=raw.get("named_only") is True, needs=str(raw.get("needs") or ""))


def report_dir(profile: str, tuned: bool = False) -> PurePosixPath:
    """Where ``reproduce --profile PROFILE`` writes the profile's report, under its results
    root: ``reference/<profile>/report`` (``reference/<profile>-tuned/report`` with
    ``--settings tuned``)."""
    return PurePosixPath("reference") / (profile + ("-tuned" if tuned else "")) / "report"


def references(folder: Path | None = None) -> list[Reference]:
    """Every reference experiment (in ``folder``, default REFERENCE_DIR), by file name."""
    return [load_reference(p) for p in sorted((folder or REFERENCE_DIR).glob("*.yaml"))]


def select(refs: list[Reference], profile: str | None, names: list[str] | None) -> list[Reference]:
    """The references of ``profile`` (all when None), restricted to ``names`` when given. Without
    names, ``quick`` means the embedded default: references on offline sources only (a quick-
    profile reference on a real data set, e.g. Fashion-MNIST, runs when named)."""
    if names:
        known = {r.name for r in refs}
        bad = [n for n in names if n not in known]
        if bad:
            raise ConfigError(f"unknown reference experiment(s) {', '.join(bad)}; available: "
                              f"{', '.join(sorted(known))}")
        refs = [r for r in refs if r.name in names]
    else:
        refs = [r for r in refs if not r.named_only]
    chosen = [r for r in refs if profile is None or r.profile == profile]
    if profile == "quick" and not names:
        from .data import OFFLINE

        chosen = [r for r in chosen if r.source in OFFLINE]
    return chosen
