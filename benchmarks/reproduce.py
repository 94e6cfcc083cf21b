"""Reference experiments: one YAML file per block of a paper table or figure, run by name.

Each file under ``benchmarks/configs/reference/`` names a scenario, source, profile, methods,
seeds, optional ``set`` overrides (as ``--set`` takes them) and the results sub-directory ``out``.
``dps-bench reproduce`` runs every reference experiment of a profile through the same resumable
sweep as ``run`` and writes each directory's ``summary.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .errors import ConfigError

REFERENCE_DIR = Path(__file__).resolve().parent / "configs" / "reference"
KEYS = {"scenario", "source", "profile", "methods", "seeds", "set", "out"}


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


def load_reference(path: Path) -> Reference:
    """Parse and check one reference file; errors name the file and the bad key."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"reference config {path}: cannot read it ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"reference config {path}: expected a mapping of {sorted(KEYS)}")
    unknown = set(raw) - KEYS
    missing = KEYS - {"set"} - set(raw)
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
    out = PurePosixPath(texts["out"])
    if out.is_absolute() or ".." in out.parts or "\\" in texts["out"]:
        raise ConfigError(f"reference config {path}: out {texts['out']!r} must be a relative path "
                          "inside the results folder (no '..', not absolute)")
    return Reference(name=path.stem, scenario=texts["scenario"], source=texts["source"],
                     profile=texts["profile"], methods=[str(m) for m in raw["methods"]],
                     seeds=list(raw["seeds"]), out=texts["out"],
                     sets=[f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                           for k, v in sets.items()])


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
    chosen = [r for r in refs if profile is None or r.profile == profile]
    if profile == "quick" and not names:
        from .data import OFFLINE

        chosen = [r for r in chosen if r.source in OFFLINE]
    return chosen
