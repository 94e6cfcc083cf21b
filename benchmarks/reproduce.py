"""Reference experiments: one YAML file per block of a paper table or figure, run by name.

Each file under ``benchmarks/configs/reference/`` names a scenario, source, profile, methods,
seeds, optional ``set`` overrides (as ``--set`` takes them) and the results sub-directory ``out``.
``dps-bench reproduce`` runs every reference experiment of a profile through the same resumable
sweep as ``run`` and writes each directory's ``summary.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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
    except (OSError, yaml.YAMLError) as e:
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
    return Reference(name=path.stem, scenario=raw["scenario"], source=raw["source"],
                     profile=raw["profile"], methods=[str(m) for m in raw["methods"]],
                     seeds=[int(s) for s in raw["seeds"]], out=str(raw["out"]),
                     sets=[f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                           for k, v in sets.items()])


def references(folder: Path | None = None) -> list[Reference]:
    """Every reference experiment (in ``folder``, default REFERENCE_DIR), by file name."""
    return [load_reference(p) for p in sorted((folder or REFERENCE_DIR).glob("*.yaml"))]


def select(refs: list[Reference], profile: str | None, names: list[str] | None) -> list[Reference]:
    """The references of ``profile`` (all when None), restricted to ``names`` when given."""
    if names:
        known = {r.name for r in refs}
        bad = [n for n in names if n not in known]
        if bad:
            raise ConfigError(f"unknown reference experiment(s) {', '.join(bad)}; available: "
                              f"{', '.join(sorted(known))}")
        refs = [r for r in refs if r.name in names]
    return [r for r in refs if profile is None or r.profile == profile]
