"""The method contract as executable rules: what every method must do so that the suite measures
it exactly as it measures BADS.

Each :class:`Rule` checks one promise, on a small problem built here (a 3-class classifier with
BatchNorm, 48 train and 12 meta examples, cross-entropy) or on each scenario's ``quick`` setup
shrunk by its ``check_settings``. A broken rule reports what was seen and why the rule exists.
``dps-bench check-method NAME|module:Class`` prints the table; ``tests/test_conformance.py`` runs
every rule over every registered method, so a new method is tested by adding nothing.

The rules, in order:

- ``hparams-documented``: every field of the method's Hparams is explained where it is declared;
- ``defaults-validate``: its defaults (and each scenario's defaults for it) construct, and its
  search space, pinned and inert names are fields;
- ``no-benchmarks-import``: its module (and the modules of its own package it imports) never
  import ``benchmarks``;
- ``step-logs-finite``: ``step`` returns a dict of names to finite scalars;
- ``weights-valid``: ``weights()`` is None or a floating vector [N_t] inside ``weight_range``
  (NaN only for examples no step drew, where the method declares ``nan_until_drawn``);
- ``non-finite-surfaces``: with NaN in Dm, a step raises NonFiniteError or logs a non-finite value,
  unless the run is identical to one on a clean Dm (the method never reads Dm);
- ``deterministic``: two runs with the same seed give identical logs, weights and models on CPU;
- ``batchnorm-and-dtypes``: it runs on a BatchNorm model in float32 and float64, and the model
  and the method's own modules keep the model's dtype;
- ``no-side-effects``: ``prepare`` changes nothing in the model; a step moves BatchNorm's running
  statistics exactly once (its training forward pass), never moves a frozen parameter, and never
  mutates the batches or the data sets it is given;
- ``scenarios-quick``: a few steps on every scenario's quick setup (those whose context lacks a
  field the method ``requires`` are named, not run).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import importlib.util
import inspect
import io
import math
import re
import time
import tokenize
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods import (
    MODEL_LR,
    Batch,
    Context,
    Method,
    NonFiniteError,
    Pool,
    get_method,
)
from methods.base import buffers_kept

N_TRAIN, N_META, BATCH, META_BATCH, STEPS, FEATURES, CLASSES = 48, 12, 16, 8, 4, 4, 3


class RuleBroken(AssertionError):
    """A method broke a rule; the message says what was seen."""


@dataclass(frozen=True)
class Rule:
    """One promise of the method contract: ``check(name)`` raises RuleBroken (or any error,
    reported as such) or returns a note."""

    name: str
    promise: str
    why: str
    check: Callable[[str], str]


@dataclass
class Outcome:
    """A rule's result for one method: passed (with a note), or broken (with what was seen)."""

    rule: Rule
    method: str
    passed: bool
    detail: str
    seconds: float

    def message(self) -> str:
        if self.passed:
            return f"{self.method} keeps rule {self.rule.name}" + (f" ({self.detail})"
                                                                     if self.detail else "")
        return (f"{self.method} broke rule {self.rule.name!r}: {self.detail}\n"
                f"  the rule: {self.rule.promise}\n  why it exists: {self.rule.why}")


# -- the small problem --------------------------------------------------------------------------

class CheckNet(nn.Module):
    """features: Linear(4, 8) + BatchNorm1d(8) + ReLU; head: Linear(8, 3). The smallest model
    with buffers that a train-mode forward pass updates (BatchNorm's running statistics)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(FEATURES, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.head = nn.Linear(8, CLASSES)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def cross_entropy(out: Tensor, y: Tensor) -> Tensor:
    """Per-example cross-entropy, shape [B]."""
    return F.cross_entropy(out, y, reduction="none")


def problem(dtype: torch.dtype, seed: int = 0, nan_meta: bool = False
            ) -> tuple[Batch, Batch]:
    """(Dt, Dm) of the small problem: 4 features, 3 classes from two thresholds, Dm shifted so
    that its statistics differ from Dt's (a look-ahead that leaks them into BatchNorm shows)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TRAIN + N_META, FEATURES, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0.4).long() + (x[:, 1] > 0).long()
    x = x.to(dtype)
    meta_x = x[N_TRAIN:] + 1.5
    if nan_meta:
        meta_x = torch.full_like(meta_x, math.nan)
    return (Batch(x[:N_TRAIN], y[:N_TRAIN], torch.arange(N_TRAIN)),
            Batch(meta_x, y[N_TRAIN:], torch.arange(N_META)))


def toy_hparams(cls: type[Method]):
    """The method's defaults with its ``check_hparams`` and (for a control) its pinned values."""
    return cls.Hparams(**{**cls.check_hparams, **cls.fixed})


def make_context(dtype: torch.dtype, seed: int = 0, nan_meta: bool = False,
                 freeze: bool = False) -> Context:
    """A Context on the small problem, built as the harness builds one (with a ``judge`` from the
    model's own output, for methods that ask one). ``freeze`` freezes the head's bias."""
    torch.manual_seed(seed)
    model = CheckNet().to(dtype)
    if freeze:
        model.head.bias.requires_grad_(False)
    train, meta = problem(dtype, seed, nan_meta)

    @torch.no_grad()
    def judge(index: Tensor) -> Tensor:  # P(yes): the model's probability of class 0, eval mode
        was = model.training
        model.eval()
        try:
            with buffers_kept(model):
                return model(train.x[index]).softmax(-1)[:, 0]
        finally:
            model.train(was)

    return Context(model=model, make_optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                   n_train=N_TRAIN, n_meta=N_META, loss=cross_entropy,
                   embed=lambda x: model.features(x).detach(), device=torch.device("cpu"),
                   num_classes=CLASSES, generator=torch.Generator().manual_seed(seed + 1),
                   train_set=train, meta_set=meta, total_steps=STEPS, offline_chunk=20,
                   judge=judge)


def _batches(pool: Pool, train: Batch, meta: Batch, seed: int) -> Iterator[tuple[Batch, Batch]]:
    """Bt from the method's pool and Bm from Dm, as the harness draws them."""
    from .harness import PoolBatches, SplitBatches
    from .scenarios import Split

    t, m = Split(train.x, train.y), Split(meta.x, meta.y)
    tb = PoolBatches(pool, t, m, BATCH, torch.Generator().manual_seed(seed + 2), train.x.device)
    mb = SplitBatches(m, META_BATCH, torch.Generator().manual_seed(seed + 3), train.x.device)
    while True:
        yield next(tb), next(mb)


def _clone(b: Batch) -> Batch:
    return Batch(b.x.clone(), b.y.clone(), b.index.clone(),
                 None if b.from_meta is None else b.from_meta.clone())


def _same(a: Batch, b: Batch) -> bool:
    def eq(u, v):
        return (u is None and v is None) or (u is not None and v is not None
                                              and torch.equal(u, v) and u.dtype == v.dtype)
    return eq(a.x, b.x) and eq(a.y, b.y) and eq(a.index, b.index) and eq(a.from_meta, b.from_meta)


def _copy(value):
    return value.detach().clone() if isinstance(value, Tensor) else value


def _bn_counts(model: nn.Module) -> list[int]:
    return [int(m.num_batches_tracked) for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@dataclass
class Trace:
    """What a few steps of a method on the small problem did."""

    logs: list[dict[str, float]] = field(default_factory=list)
    bad_logs: list[str] = field(default_factory=list)  # not a name -> scalar
    diagnostics: dict[str, float] = field(default_factory=dict)
    weights_prepared: Tensor | None = None
    weights: Tensor | None = None
    weights_error: str = ""
    state: dict[str, Tensor] = field(default_factory=dict)
    drawn: set[int] = field(default_factory=set)
    error: BaseException | None = None
    error_text: str = ""
    prepare_changed: list[str] = field(default_factory=list)
    bn_moves: list[int] = field(default_factory=list)  # per step: how often the statistics moved
    mutated: list[str] = field(default_factory=list)
    frozen_moved: bool = False
    dtype_mismatch: list[str] = field(default_factory=list)


def _as_float(value) -> float | None:
    if isinstance(value, Tensor):
        return float(value.detach()) if value.numel() == 1 and value.dim() == 0 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _own_modules(method: Method, model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The nn.Modules a method holds besides the model (weight networks, copies), one level down
    and inside lists, tuples and dicts."""
    for name, value in vars(method).items():
        values = (value.items() if isinstance(value, dict)
                  else enumerate(value) if isinstance(value, (list, tuple)) else [("", value)])
        for key, v in values:
            if isinstance(v, nn.Module) and v is not model:
                yield (f"{name}[{key}]" if key != "" else name), v


@functools.lru_cache(maxsize=64)
def trace(name: str, dtype: torch.dtype = torch.float64, seed: int = 0, nan_meta: bool = False,
          freeze: bool = False) -> Trace:
    """Set the method up on the small problem, run ``prepare`` and STEPS steps, and record what it
    did (cached: several rules read one trace). An error stops the trace and is recorded."""
    out = Trace()
    cls = get_method(name)
    ctx = make_context(dtype, seed, nan_meta, freeze)
    model = ctx.model
    data_before = (_clone(ctx.train_set), _clone(ctx.meta_set))
    frozen_before = model.head.bias.detach().clone()
    try:
        method = cls(ctx, toy_hparams(cls))
        before = copy.deepcopy(model.state_dict())
        method.prepare()
        out.prepare_changed = [k for k, v in model.state_dict().items()
                               if not torch.equal(v, before[k])]
        out.weights_prepared = _copy(method.weights())  # weights() may return its own state
        stream = _batches(method.pool(), ctx.train_set, ctx.meta_set, seed)
        for step in range(STEPS):
            bt, bm = next(stream)
            bm = bm if cls.uses_meta_batch else None
            given = (_clone(bt), None if bm is None else _clone(bm))
            counts = _bn_counts(model)
            logs = method.step(bt, bm)
            out.bn_moves.append(max(c - b for b, c in zip(counts, _bn_counts(model), strict=True)))
            if not _same(bt, given[0]):
                out.mutated.append(f"the train batch at step {step}")
            if bm is not None and not _same(bm, given[1]):
                out.mutated.append(f"the meta batch at step {step}")
            drawn = bt.index if bt.from_meta is None else bt.index[~bt.from_meta]
            out.drawn.update(drawn.tolist())
            if not isinstance(logs, dict):
                out.bad_logs.append(f"step {step} returned {type(logs).__name__}, not a dict")
                continue
            row = {}
            for k, v in logs.items():
                value = _as_float(v)
                if not isinstance(k, str) or value is None:
                    out.bad_logs.append(f"step {step}: {k!r} -> {v!r} is not a name -> scalar "
                                        "(a float or a 0-d tensor)")
                else:
                    row[k] = value
            out.logs.append(row)
        out.diagnostics = dict(method.diagnostics())
        try:
            out.weights = _copy(method.weights())
            given = method.weights()
            if isinstance(given, Tensor) and given.is_floating_point():
                with torch.no_grad():
                    given.fill_(-7.0)  # the caller owns what weights() returns ...
                again = method.weights()  # ... so editing it must not change the method
                if not torch.equal(torch.nan_to_num(again, nan=-1.0),
                                   torch.nan_to_num(out.weights, nan=-1.0)):
                    out.weights_error = ("weights() returns a tensor that shares memory with "
                                         "the method's state (editing it changed the next "
                                         "weights()): return a copy, e.g. .to('cpu', copy=True)")
        except NonFiniteError:
            raise
        except Exception as e:  # noqa: BLE001 (recorded, reported by weights-valid)
            out.weights_error = f"weights() raised {type(e).__name__}: {e}"
        for what, modules in _own_modules(method, model):
            for p in list(modules.parameters()) + list(modules.buffers()):
                if p.is_floating_point() and p.dtype != dtype:
                    out.dtype_mismatch.append(f"{what} holds {p.dtype}")
                    break
    except Exception as e:  # noqa: BLE001 (a method's error is what the rules report)
        out.error = e
        out.error_text = "".join(traceback.format_exception_only(type(e), e)).strip()
    out.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out.frozen_moved = not torch.equal(model.head.bias.detach(), frozen_before)
    for what, a, b in (("Dt (the context's train_set)", ctx.train_set, data_before[0]),
                       ("Dm (the context's meta_set)", ctx.meta_set, data_before[1])):
        if not _same(a, b):
            out.mutated.append(what)
    return out


def _ok(t: Trace, what: str) -> Trace:
    """``t`` if its run raised nothing, else RuleBroken saying what failed."""
    if t.error is not None:
        raise RuleBroken(f"{what} raised {t.error_text}")
    return t


def _values(t: Trace) -> list[float]:
    return [v for row in t.logs for v in row.values()] + list(t.diagnostics.values())


# -- the rules ----------------------------------------------------------------------------------

def _hparam_source(cls: type
                   ) -> tuple[ast.ClassDef, list[str], dict[int, str], dict[int, str]] | None:
    """(class node, source lines, line -> end-of-line comment, line -> comment on a line of its
    own) of a dataclass's source, or None."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return None
    source = inspect.cleandoc("\n" + "".join(lines)) if lines[0][:1].isspace() else "".join(lines)
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    comments, alone = {}, {}
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if lines[tok.start[0] - 1][: tok.start[1]].strip():
                comments[tok.start[0]] = text  # at the end of a line of code
            else:
                alone[tok.start[0]] = text  # a line of its own
    return node, lines, comments, alone


def undocumented_fields(hparams: type) -> list[str]:
    """Fields of the dataclass ``hparams`` (and of the dataclasses it inherits) not explained by
    any of: a comment at the end of the field's line (or on a line of its own right above it),
    a string right below it (an attribute docstring), the class docstring naming it, or
    ``field(metadata={"doc": ...})``."""
    missing = []
    for f in dataclasses.fields(hparams):
        if f.metadata.get("doc") or f.metadata.get("help"):
            continue
        owner = next((c for c in hparams.__mro__ if f.name in c.__dict__.get("__annotations__", {})),
                     None)
        found = _hparam_source(owner) if owner is not None else None
        if found is None:
            missing.append(f"{f.name} (source not readable)")
            continue
        node, _, comments, alone = found
        doc = ast.get_docstring(node) or ""
        if re.search(rf"(?<![\w.]){re.escape(f.name)}(?!\w)", doc):
            continue
        body = node.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign) and getattr(stmt.target, "id", None) == f.name:
                nxt = body[i + 1] if i + 1 < len(body) else None
                if (comments.get(stmt.lineno) or alone.get(stmt.lineno - 1)
                        or (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                            and isinstance(nxt.value.value, str))):
                    break
        else:
            missing.append(f.name)
    return missing


def check_hparams_documented(name: str) -> str:
    cls = get_method(name)
    if not dataclasses.is_dataclass(cls.Hparams):
        raise RuleBroken(f"Hparams is {cls.Hparams!r}, not a dataclass")
    missing = undocumented_fields(cls.Hparams)
    if missing:
        raise RuleBroken(f"{cls.Hparams.__name__} does not explain {', '.join(missing)}: add a "
                         "comment on the field's line or name it in the class docstring")
    n = len(dataclasses.fields(cls.Hparams))
    return f"{n} field{'s' * (n != 1)}"


def check_defaults_validate(name: str) -> str:
    from .config import ConfigError, resolve_hparams
    from .scenarios import SCENARIOS, get_scenario

    cls = get_method(name)
    fields = {f.name for f in dataclasses.fields(cls.Hparams)}
    for what, names in (("search_space", set(cls.search_space) - {MODEL_LR}),
                        ("fixed", set(cls.fixed)), ("inert", set(cls.inert)),
                        ("check_hparams", set(cls.check_hparams))):
        unknown = sorted(names - fields)
        if unknown:
            raise RuleBroken(f"{what} names {', '.join(unknown)}, which {cls.Hparams.__name__} "
                             "does not have")
    try:
        cls.Hparams(**cls.fixed)
    except (TypeError, ValueError) as e:
        raise RuleBroken(f"the declared defaults do not validate: {e}") from None
    try:
        cls(make_context(torch.float32), toy_hparams(cls))
    except Exception as e:  # noqa: BLE001
        raise RuleBroken(f"the method cannot be built with its defaults: "
                         f"{type(e).__name__}: {e}") from None
    checked = []
    for scenario_name in SCENARIOS:
        scenario = get_scenario(scenario_name)
        for profile in scenario.profiles:
            try:
                resolve_hparams(scenario, name, {}, profile)
            except ConfigError as e:
                raise RuleBroken(f"{scenario_name}'s {profile} defaults for it do not validate: "
                                 f"{e}") from None
            checked.append(profile)
    return f"declared defaults and {len(checked)} scenario profiles' defaults"


def _module_file(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") \
        else None


def benchmarks_imports(module: str) -> list[str]:
    """``file:line imports X`` for every import of ``benchmarks`` in ``module``'s source and in the
    modules of the same top-level package that it imports, transitively."""
    top = module.split(".")[0]
    seen, todo, found = set(), [module], []
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = _module_file(mod)
        if path is None:
            continue
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                if target.split(".")[0] == "benchmarks":
                    found.append(f"{path.name}:{node.lineno} imports {target}")
                elif target.split(".")[0] == top and importlib.util.find_spec(
                        target.rpartition(".")[0] or target) is not None:
                    todo.append(target if _is_module(target) else target.rpartition(".")[0])
    return sorted(set(found))


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_no_benchmarks_import(name: str) -> str:
    cls = get_method(name)
    if cls.__module__.split(".")[0] == "benchmarks":
        raise RuleBroken(f"the method itself lives in {cls.__module__}")
    found = benchmarks_imports(cls.__module__)
    if found:
        raise RuleBroken("; ".join(found))
    return f"{cls.__module__} and its package's modules it imports"


def check_step_logs_finite(name: str) -> str:
    t = _ok(trace(name, torch.float32), "a step on good data")
    if t.bad_logs:
        raise RuleBroken("; ".join(t.bad_logs[:3]))
    bad = [f"step {i}: {k}={v}" for i, row in enumerate(t.logs) for k, v in row.items()
           if not math.isfinite(v)]
    bad += [f"diagnostic {k}={v}" for k, v in t.diagnostics.items() if not math.isfinite(v)]
    if bad:
        raise RuleBroken("non-finite values on good data: " + "; ".join(bad[:3]))
    keys = sorted({k for row in t.logs for k in row})
    return f"logs {', '.join(keys) or 'nothing'}"


def _check_weights(w, cls: type[Method], drawn: set[int], when: str) -> None:
    if w is None:
        return
    if not isinstance(w, Tensor):
        raise RuleBroken(f"weights() {when} returned {type(w).__name__}, not a Tensor or None")
    if w.shape != (N_TRAIN,) or not w.is_floating_point():
        raise RuleBroken(f"weights() {when} has shape {tuple(w.shape)} and dtype {w.dtype}; "
                         f"expected a floating vector of shape [N_t] = [{N_TRAIN}]")
    w = w.detach().cpu().double()
    nan = torch.isnan(w)
    if torch.isinf(w).any():
        raise RuleBroken(f"weights() {when} holds inf")
    if nan.any():
        if not cls.nan_until_drawn:
            raise RuleBroken(f"weights() {when} holds NaN for {int(nan.sum())} examples "
                             "(declare nan_until_drawn only if NaN means 'never drawn')")
        seen = sorted(set(torch.nonzero(nan).flatten().tolist()) & drawn)
        if seen:
            raise RuleBroken(f"weights() {when} is NaN for examples a step drew: {seen[:5]}")
    lo, hi = cls.weight_range
    finite = w[~nan]
    tol = 1e-6 * max(1.0, abs(lo), abs(hi) if math.isfinite(hi) else 1.0)
    if len(finite) and (finite.min() < lo - tol or finite.max() > hi + tol):
        raise RuleBroken(f"weights() {when} spans [{float(finite.min()):.4g}, "
                         f"{float(finite.max()):.4g}], outside the declared weight_range "
                         f"[{lo}, {hi}]")


def check_weights_valid(name: str) -> str:
    cls = get_method(name)
    t = _ok(trace(name, torch.float32), "the run")
    if t.weights_error:
        raise RuleBroken(t.weights_error)
    _check_weights(t.weights_prepared, cls, set(), "after prepare")
    _check_weights(t.weights, cls, t.drawn, f"after {STEPS} steps")
    if t.weights is None:
        return "no weights (None)"
    return f"[N_t] in [{cls.weight_range[0]}, {cls.weight_range[1]}]"


def check_non_finite_surfaces(name: str) -> str:
    poisoned = trace(name, torch.float64, nan_meta=True)
    if isinstance(poisoned.error, NonFiniteError):
        return "raised NonFiniteError"
    _ok(poisoned, "a step with NaN in Dm")  # any other error is not the documented signal
    if poisoned.bad_logs:
        raise RuleBroken("; ".join(poisoned.bad_logs[:3]))
    if not all(math.isfinite(v) for v in _values(poisoned)):
        return "logged a non-finite value"
    clean = _ok(trace(name, torch.float64), "a step on good data")
    same = (poisoned.logs == clean.logs and poisoned.state.keys() == clean.state.keys()
            and all(torch.equal(poisoned.state[k], clean.state[k]) for k in clean.state))
    if same:
        return "never reads Dm (identical to a run on a clean Dm)"
    params_finite = all(bool(torch.isfinite(v).all()) for v in poisoned.state.values()
                        if v.is_floating_point())
    raise RuleBroken("with NaN in every Dm input, every logged value stayed finite and the run "
                     "differs from one on a clean Dm (the model is "
                     f"{'finite' if params_finite else 'non-finite'}): a fallback or a clamp "
                     "hid the non-finite meta loss; let it show in a logged value or raise "
                     "methods.NonFiniteError")


def check_deterministic(name: str) -> str:
    a = _ok(trace(name, torch.float32, seed=0), "the first run")
    b = _ok(trace.__wrapped__(name, torch.float32, seed=0), "the second run")  # not the cache
    if a.logs != b.logs:
        raise RuleBroken(f"logged values differ: {a.logs[-1]} vs {b.logs[-1]}")
    differing = [k for k in a.state if not torch.equal(a.state[k], b.state[k])]
    if differing:
        raise RuleBroken(f"the models differ after {STEPS} steps in {', '.join(differing[:3])}: "
                         "draw randomness from ctx.generator (seeded by the harness), not from "
                         "an unseeded source")
    wa, wb = a.weights, b.weights
    if (wa is None) != (wb is None) or (wa is not None and not torch.equal(
            torch.nan_to_num(wa, nan=-1.0), torch.nan_to_num(wb, nan=-1.0))):
        raise RuleBroken("weights() differ between the two runs")
    return "logs, model and weights identical"


def check_batchnorm_and_dtypes(name: str) -> str:
    notes = []
    for dtype in (torch.float32, torch.float64):
        t = _ok(trace(name, dtype), f"the run in {dtype}")
        wrong = [k for k, v in t.state.items() if v.is_floating_point() and v.dtype != dtype]
        if wrong:
            raise RuleBroken(f"in {dtype} the model's {', '.join(wrong[:3])} changed dtype")
        if t.dtype_mismatch:
            raise RuleBroken(f"the model is {dtype} but " + "; ".join(t.dtype_mismatch))
        if not all(bool(torch.isfinite(v).all()) for v in t.state.values()
                   if v.is_floating_point()):
            raise RuleBroken(f"in {dtype} the model became non-finite on good data")
        notes.append(str(dtype).removeprefix("torch."))
    return " and ".join(notes)


def check_no_side_effects(name: str) -> str:
    t = _ok(trace(name, torch.float64, freeze=True), "the run with a frozen parameter")
    problems = []
    if t.prepare_changed:
        problems.append(f"prepare() changed the model's {', '.join(t.prepare_changed[:3])} "
                        "(offline work must train copies)")
    moved = [f"step {i}: {n}x" for i, n in enumerate(t.bn_moves) if n != 1]
    if moved:
        problems.append("BatchNorm's running statistics moved other than once per step ("
                        + ", ".join(moved[:3]) + "): wrap auxiliary or look-ahead passes in "
                        "methods.base.buffers_kept")
    if t.frozen_moved:
        problems.append("a frozen parameter (requires_grad=False: head.bias) moved")
    if t.mutated:
        problems.append("mutated " + ", ".join(t.mutated[:3]))
    if problems:
        raise RuleBroken("; ".join(problems))
    return "model, frozen parameter, batches and data sets as required"


@functools.cache
def _scenario_data(scenario_name: str):
    from .data import load_source
    from .scenarios import get_scenario

    scenario = get_scenario(scenario_name)
    source = scenario.default_source
    settings = scenario.resolve_settings(source, "quick", dict(scenario.check_settings))
    return scenario, source, scenario.build(load_source(source), settings, 0)


def check_scenarios_quick(name: str, steps: int = 3) -> str:
    from .harness import set_up
    from .scenarios import SCENARIOS
    from .sweep import plan

    cls = get_method(name)
    ran, skipped = [], []
    for scenario_name, scenario_cls in SCENARIOS.items():
        missing = [r for r in cls.requires if r not in scenario_cls.provides]
        if missing:
            skipped.append(f"{scenario_name} (no {', '.join(missing)})")
            continue
        scenario, source, data = _scenario_data(scenario_name)
        overrides = {k: v for k, v in cls.check_hparams.items() if k not in cls.fixed}
        spec = plan(scenario_name, source, "quick", [name], [0],
                    {**scenario.check_settings, "steps": steps, "eval_every": steps},
                    {name: overrides})[0]
        try:
            setup = set_up(spec, scenario, data, torch.device("cpu"))
            for step in range(steps):
                logs = setup.method.step(*setup.next_batches())
                bad = {k: v for k, v in logs.items()
                       if _as_float(v) is None or not math.isfinite(_as_float(v))}
                if bad:
                    raise RuleBroken(f"on {scenario_name} step {step} logged {bad}")
            w = setup.method.weights()
        except RuleBroken:
            raise
        except Exception as e:  # noqa: BLE001
            raise RuleBroken(f"on {scenario_name}: {type(e).__name__}: {e}") from None
        if w is not None and tuple(w.shape) != (len(data.train),):
            raise RuleBroken(f"on {scenario_name} weights() has shape {tuple(w.shape)}, "
                             f"expected [{len(data.train)}]")
        ran.append(scenario_name)
    return f"{steps} steps on {', '.join(ran)}" + (f"; not run on {', '.join(skipped)}"
                                                    if skipped else "")


RULES: tuple[Rule, ...] = (
    Rule("hparams-documented", "every Hparams field is explained where it is declared",
         "`dps-bench list`, runs.csv and the report name hyperparameters; a reader must be able "
         "to find what each one means", check_hparams_documented),
    Rule("defaults-validate", "the defaults, and every scenario's defaults for the method, "
         "construct; search_space, fixed, inert and check_hparams name real fields",
         "a sweep with the defaults would otherwise fail at its first run, after the data is "
         "loaded, and `dps-bench tune` would search a name nothing reads", check_defaults_validate),
    Rule("no-benchmarks-import", "the method's module never imports benchmarks/",
         "a method must not know which scenario it runs on (the suite's layering: methods depend "
         "on torch only), or it could be tuned to the benchmark", check_no_benchmarks_import),
    Rule("step-logs-finite", "step() returns a dict of names to finite scalars on good data",
         "the harness averages the logs and declares a run diverged on a non-finite one",
         check_step_logs_finite),
    Rule("weights-valid", "weights() is None or a floating [N_t] vector inside weight_range "
         "(NaN only for never-drawn examples, where declared)",
         "the stored weights, their per-group means, effective sample size and AUROC assume it",
         check_weights_valid),
    Rule("non-finite-surfaces", "with NaN in Dm, a step raises NonFiniteError or logs a "
         "non-finite value (or the method provably never reads Dm)",
         "a fallback that turns a NaN meta loss into finite weights records a broken run as ok",
         check_non_finite_surfaces),
    Rule("deterministic", "two runs with the same seed give identical logs, weights and models "
         "on CPU", "methods at one seed share data, initial model and batches (common random "
         "numbers), and `dps-bench verify` reruns stored runs exactly", check_deterministic),
    Rule("batchnorm-and-dtypes", "runs on a BatchNorm model in float32 and float64; the model "
         "and the method's own modules keep the model's dtype",
         "ResNets have BatchNorm, and a weight network in another dtype fails or silently "
         "casts", check_batchnorm_and_dtypes),
    Rule("no-side-effects", "prepare() leaves the model alone; a step moves BatchNorm statistics "
         "once, never moves a frozen parameter, never mutates its batches or data sets",
         "a look-ahead that folds Dm's statistics into BatchNorm changes the test model; moved "
         "frozen parameters or edited batches change other methods' data", check_no_side_effects),
    Rule("scenarios-quick", "a few steps on every scenario's quick setup",
         "a method must not assume one model or input shape (token batches, sequence outputs)",
         check_scenarios_quick),
)


def rule(name: str) -> Rule:
    """The rule called ``name``."""
    for r in RULES:
        if r.name == name:
            return r
    raise KeyError(f"no rule {name!r}; rules: {', '.join(r.name for r in RULES)}")


def run_rule(r: Rule, method: str) -> Outcome:
    """``r`` for ``method``; an unexpected error in the check counts as a broken rule."""
    started = time.perf_counter()
    try:
        note = r.check(method)
        passed = True
    except RuleBroken as e:
        passed, note = False, str(e)
    except Exception as e:  # noqa: BLE001 (e.g. the method's constructor failing)
        passed, note = False, f"{type(e).__name__}: {e}"
    return Outcome(r, method, passed, note, time.perf_counter() - started)


def check_method(method: str, rules: tuple[Rule, ...] = RULES,
                 progress: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Every rule for ``method`` (a registered name or ``module:Class``), in order."""
    get_method(method)  # an unknown name fails here with its own message
    outcomes = []
    for r in rules:
        outcomes.append(run_rule(r, method))
        if progress is not None:
            progress(outcomes[-1])
    trace.cache_clear()
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    """The outcomes as a plain-text table: rule, PASS/FAIL, seconds, what was seen."""
    width = max(len(o.rule.name) for o in outcomes)
    lines = [f"{'rule':<{width}}  result   time  detail", "-" * (width + 30)]
    for o in outcomes:
        lines.append(f"{o.rule.name:<{width}}  {'PASS' if o.passed else 'FAIL':<6}  "
                     f"{o.seconds:5.1f}s  {o.detail}")
    for o in outcomes:
        if not o.passed:
            lines += ["", o.message()]
    return "\n".join(lines)


__all__ = ["RULES", "Outcome", "Rule", "RuleBroken", "check_method", "problem", "rule",
           "run_rule", "table", "trace", "undocumented_fields"]
