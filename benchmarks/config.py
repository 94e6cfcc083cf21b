"""Resolving a run's full configuration, and its identity (a hash of that configuration).

``--set key=value`` sets a scenario setting (``meta_per_class=5``); ``--set method.key=value``
sets a method hyperparameter (``random_select.beta=0.01``). Values are parsed as Python literals
(numbers, True/False, quoted strings) and checked against the declared field types.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from methods import get_method

from .errors import ConfigError
from .scenarios import Scenario

SUITE_VERSION = 3  # bump when a change alters what an existing configuration computes


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's result. Its hash is the run's identity."""

    scenario: str
    source: str
    profile: str
    method: str
    seed: int
    settings: dict[str, Any]
    hparams: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"suite_version": SUITE_VERSION, **dataclasses.asdict(self)},
                          sort_keys=True)

    @property
    def run_id(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def parse_literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def coerce(value: Any, cls: type, name: str, where: str) -> Any:
    """Check and convert ``value`` for field ``name`` of dataclass ``cls``.

    int and float fields take numbers but not booleans (an int field takes only whole numbers);
    bool fields take True/False or 0/1; str fields take strings; ``X | None`` also takes None.
    """
    hint = typing.get_type_hints(cls)[name]
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) \
        else (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in (k for k in allowed if k is not type(None)):
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if isinstance(value, bool) or value in (0, 1):
                return bool(value)
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
        elif kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif kind is str:
            if isinstance(value, str):
                return value
        else:
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed)
    raise ConfigError(f"{where}: expected {names}, got {value!r}")


def parse_sets(items: list[str], scenario: Scenario, methods: list[str]
               ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split ``key=value`` items into scenario settings and per-method hyperparameters."""
    settings: dict[str, Any] = {}
    hparams: dict[str, dict[str, Any]] = {m: {} for m in methods}
    setting_fields = {f.name: f for f in dataclasses.fields(scenario.Settings)}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. meta_per_class=5)")
        key, raw = item.split("=", 1)
        key, value = key.strip(), parse_literal(raw.strip())
        if "." in key:
            method, _, name = key.rpartition(".")  # a method may be module.path:Class
            if method not in hparams:
                raise ConfigError(f"--set {item!r}: method {method!r} is not among --methods "
                                  f"({', '.join(methods)})")
            fields = {f.name: f for f in dataclasses.fields(get_method(method).Hparams)}
            if name not in fields:
                raise ConfigError(f"--set {item!r}: {method} has no hyperparameter {name!r}; it has: "
                                  f"{', '.join(fields) or 'none'}")
            hparams[method][name] = coerce(value, get_method(method).Hparams, name, f"--set {item}")
        elif key in setting_fields:
            settings[key] = coerce(value, scenario.Settings, key, f"--set {item}")
        else:
            raise ConfigError(
                f"--set {item!r}: {scenario.name} has no setting {key!r}. Settings: "
                f"{', '.join(setting_fields)}. Method hyperparameters are set as METHOD.NAME=VALUE."
            )
    return settings, hparams


def parse_grid(items: list[str], scenario: Scenario, methods: list[str]
               ) -> tuple[list[tuple[str, list[Any]]], dict[str, list[tuple[str, list[Any]]]]]:
    """``KEY=V1,V2,...`` items of ``--grid`` as (setting axes, {method: hyperparameter axes}).

    KEY is a scenario setting (an axis for every method), ``METHOD.NAME`` (that method's
    hyperparameter) or a bare hyperparameter NAME: an axis for every listed method that declares
    it, except the controls that pin it or for which it is inert (``bads_frozen`` has no σ axis).
    Values are checked like ``--set``'s."""
    setting_names = {f.name for f in dataclasses.fields(scenario.Settings)}
    settings: list[tuple[str, list[Any]]] = []
    per_method: dict[str, list[tuple[str, list[Any]]]] = {m: [] for m in methods}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        raws = [r.strip() for r in raw.split(",") if r.strip()]
        if not sep or not raws:
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. bads.sigma=1e-5,1)")
        if key in setting_names:
            if key in {k for k, _ in settings}:
                raise ConfigError(f"--grid {item!r}: {key} has a grid already; give its values once")
            settings.append((key, [coerce(parse_literal(r), scenario.Settings, key,
                                          f"--grid {item}") for r in raws]))
            continue
        method, _, name = key.rpartition(".")
        targets = [method] if method else methods
        if method and method not in per_method:
            raise ConfigError(f"--grid {item!r}: method {method!r} is not among --methods")
        inert = False
        for m in targets:
            cls = get_method(m)
            if name not in {f.name for f in dataclasses.fields(cls.Hparams)}:
                if method:
                    raise ConfigError(f"--grid {item!r}: {m} has no hyperparameter {name!r}")
                continue
            if name in cls.fixed or name in cls.inert:
                inert = True
                if method:
                    raise ConfigError(f"--grid {item!r}: {m} is a control that pins {name} or "
                                      "is unaffected by it; sweep its method instead")
                continue
            if name in {k for k, _ in per_method[m]}:
                raise ConfigError(f"--grid {item!r}: {m}.{name} has a grid already; give its "
                                  "values once")
            per_method[m].append((name, [coerce(parse_literal(r), cls.Hparams, name,
                                                f"--grid {item}") for r in raws]))
        if not any(k == name for m in targets for k, _ in per_method[m]):
            reason = (f"{name} is pinned in, or does not affect, every listed method" if inert
                      else f"{key!r} is neither a setting of {scenario.name} nor a "
                           f"hyperparameter of {', '.join(targets)}")
            raise ConfigError(f"--grid {item!r}: {reason}")
    return settings, per_method


def check_requirements(scenario: Scenario, method: str) -> None:
    """ConfigError when ``method`` needs a Context field (``Method.requires``, e.g. askllm_o's
    ``judge``) that ``scenario`` does not provide (``Scenario.provides``), naming the scenarios
    that do: before any run starts, not at set-up."""
    from .scenarios import SCENARIOS

    missing = [r for r in get_method(method).requires if r not in scenario.provides]
    if missing:
        able = [name for name, cls in SCENARIOS.items() if set(missing) <= set(cls.provides)]
        raise ConfigError(f"{method} needs the context's {', '.join(missing)}, which the "
                          f"{scenario.name} scenario cannot give (its model is not a language "
                          f"model); run it on {', '.join(able) or 'a scenario that does'}")


def resolve_hparams(scenario: Scenario, method: str, overrides: dict[str, Any],
                    profile: str = "quick", source: str | None = None) -> Any:
    """The method's Hparams: declared defaults <- the scenario's (source's, profile's) <- overrides.

    A control (``Method.control_of``) takes the scenario's defaults of the method it controls,
    then its pinned values (``Method.fixed``), which no override may change."""
    method_cls = get_method(method)
    cls = method_cls.Hparams
    names = {f.name for f in dataclasses.fields(cls)}
    values = scenario.hparam_defaults(method_cls.control_of or method, names, profile,
                                      source or scenario.default_source)
    pinned = sorted(k for k, v in method_cls.fixed.items() if k in overrides and overrides[k] != v)
    if pinned:
        raise ConfigError(f"{method} is {method_cls.control_of} with {method_cls.fixed} pinned; "
                          f"{', '.join(pinned)} cannot be set (use {method_cls.control_of} itself)")
    values.update(method_cls.fixed)
    values.update(overrides)
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{method} hyperparameters {values}: {e}") from None


def resolve_settings(scenario: Scenario, source: str, profile: str, overrides: dict[str, Any]):
    if source not in scenario.sources:
        raise ConfigError(f"scenario {scenario.name} has no source {source!r}; sources: "
                          f"{', '.join(scenario.sources)}")
    if profile not in scenario.profiles:
        raise ConfigError(f"scenario {scenario.name} has no profile {profile!r}; profiles: "
                          f"{', '.join(scenario.profiles)}")
    try:
        return scenario.resolve_settings(source, profile, overrides)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{scenario.name} settings: {e}") from None


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed derived deterministically from ``parts``."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
