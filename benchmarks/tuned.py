"""Tuned settings: one YAML file per (scenario, source, profile, fixed settings, method).

``dps-bench tune`` writes ``TUNED_DIR/<problem>/<method>.yaml`` (like benchopt's
``*_best_params.yml``), where ``<problem>`` is ``<scenario>-<source>-<profile>`` followed by the
scenario settings fixed with ``--set``/``--steps`` while tuning (``-meta_per_class=5-steps=1500``).
``run``/``reproduce --settings tuned`` look the file up under the same key, so tuned settings are
only ever applied to the problem they were tuned on. The file's ``tuned`` mapping holds the chosen
values by search-space name (``lr`` is the model learning rate, a scenario setting; every other
name is a hyperparameter of the method).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from methods import MODEL_LR

from .errors import ConfigError

TUNED_DIR = Path(__file__).resolve().parent / "configs" / "tuned"
REQUIRED = {"scenario", "source", "profile", "settings", "method", "fixed", "tuned", "val_score"}


def problem_key(scenario: str, source: str, profile: str, settings: dict[str, Any]) -> str:
    """The folder name of a tuning problem: scenario, source, profile and fixed settings."""
    fixed = "".join(f"-{k}={settings[k]}" for k in sorted(settings))
    return f"{scenario}-{source}-{profile}{fixed}"


def tuned_path(root: Path, scenario: str, source: str, profile: str, settings: dict[str, Any],
               method: str) -> Path:
    return root / problem_key(scenario, source, profile, settings) / f"{method}.yaml"


def write_tuned(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(record, sort_keys=False, width=100))
    tmp.replace(path)


def load_tuned(root: Path, scenario: str, source: str, profile: str, settings: dict[str, Any],
               method: str, fixed: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(scenario-setting overrides, hyperparameter overrides) of the tuned ``method``.

    ``settings`` and ``fixed`` are this run's ``--set`` items (scenario settings, the method's
    hyperparameters); they must be those the tuning ran with, apart from the tuned names."""
    path = tuned_path(root, scenario, source, profile, settings, method)
    if not path.exists():
        key = problem_key(scenario, source, profile, settings)
        have = sorted(p.name for p in root.glob(f"{scenario}-{source}-{profile}*") if p.is_dir())
        raise ConfigError(
            f"no tuned settings for {method} on {key} (looked for {path}). Tune it with "
            f"`dps-bench tune --scenario {scenario} --source {source} --profile {profile} "
            f"--methods {method} ...` with the same --set/--steps, or use --settings paper."
            + (f" Tuned problems for {scenario}/{source}/{profile}: {', '.join(have)}"
               if have else ""))
    try:
        record = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"tuned settings {path}: cannot read them ({e})") from None
    if not isinstance(record, dict) or REQUIRED - set(record):
        have = set(record) if isinstance(record, dict) else set()
        raise ConfigError(f"tuned settings {path}: missing keys "
                          f"{sorted(REQUIRED - have)}; rerun `dps-bench tune`")
    tuned: dict[str, Any] = record["tuned"] or {}
    fixed_then = record["fixed"] or {}
    scalars = (int, float, str, bool, type(None))
    if not isinstance(tuned, dict) or not isinstance(fixed_then, dict) or not all(
            isinstance(k, str) and isinstance(v, scalars)
            for d in (tuned, fixed_then) for k, v in d.items()):
        raise ConfigError(f"tuned settings {path}: tuned and fixed must map names to values; "
                          "rerun `dps-bench tune`")
    clash = sorted(set(fixed) & set(tuned))
    if clash:
        raise ConfigError(f"--set {', '.join(f'{method}.{k}' for k in clash)}: tuned in {path}; "
                          "drop the --set, or use --settings paper")
    if fixed_then != fixed:
        raise ConfigError(f"{path} was tuned with {method} hyperparameters {record['fixed']} "
                          f"fixed, but this run fixes {fixed}; tune again with the same --set")
    settings_out = {k: v for k, v in tuned.items() if k == MODEL_LR}
    hparams_out = {k: v for k, v in tuned.items() if k != MODEL_LR}
    return settings_out, hparams_out
