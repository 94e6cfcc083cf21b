"""The ``dps-bench`` command: list | run | tune | reproduce | report | verify | store | download |
check-method | new-method."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys

from methods import (
    UnknownMethodError,
    entry_point_methods,
    get_method,
    hparam_fields,
    list_methods,
    shadowed_entry_points,
)

from .config import parse_grid, parse_sets
from .errors import DpsBenchError
from .scenarios import SCENARIOS, get_scenario

EXAMPLES = """examples:
  dps-bench list
  dps-bench run --scenario balancing --methods train_only,mixing --seeds 0,1,2 --out runs/balancing
  dps-bench run --scenario balancing --methods mixing --source mnist --data-dir ../shared/data \\
      --profile paper --set meta_per_class=5 --out runs/mnist
  dps-bench tune --scenario balancing --methods train_only,bads --budget 8 --out runs/tune
  dps-bench run --scenario balancing --methods train_only,bads --settings tuned --out runs/tuned
  dps-bench run --scenario balancing --methods bads,bads_prior_only,bads_frozen --seeds 1000,1001 \\
      --grid sigma=1e-5,1e-3,0.1,1,10,100 --grid lr_w=1e-4,1e-3,1e-2 --out runs/sigma
  dps-bench report --out runs/balancing
  dps-bench reproduce --profile quick --out results
  dps-bench new-method my_method && dps-bench check-method my_method
  dps-bench run --scenario balancing --methods bads,my_package.my_module:MyMethod --out runs/mine
"""


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _directory(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a results directory")
    return text


def _seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive) or a mix."""
    seeds: list[int] = []
    try:
        for part in _csv_list(text):
            if "-" in part[1:]:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise argparse.ArgumentTypeError(
                        f"seed range {part!r} is empty (the end is below the start); write it "
                        f"as {hi}-{lo}")
                if hi - lo >= MAX_SEEDS or len(seeds) + hi - lo >= MAX_SEEDS:
                    raise argparse.ArgumentTypeError(
                        f"{text!r} asks for more than {MAX_SEEDS:,} seeds; a sweep that size is "
                        "a mistake (split it into several commands if it is not)")
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        if any(not 0 <= seed < 2**63 for seed in seeds):
            raise argparse.ArgumentTypeError(f"seeds must lie in 0 .. 2**63-1 (got {text!r})")
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad seed list {text!r}; use e.g. 0,1,2 or 0-4") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given")
    return seeds


MAX_SEEDS = 100_000


def cmd_list(args: argparse.Namespace) -> int:
    print("scenarios:")
    for name, cls in SCENARIOS.items():
        scenario = cls()
        print(f"  {name}: {scenario.description}")
        print(f"    sources: {', '.join(scenario.sources)} (default {scenario.default_source})")
        for profile, values in scenario.profiles.items():
            note = scenario.profile_notes.get(profile)
            print(f"    profile {profile}: " + ", ".join(f"{k}={v}" for k, v in values.items())
                  + (f"\n      ({note})" if note else ""))
        defaults = {f.name: f.default for f in dataclasses.fields(scenario.Settings)}
        print("    settings: " + ", ".join(f"{k}={v}" for k, v in defaults.items()))
        for source, values in scenario.source_settings.items():
            print(f"    source {source}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        for source, values in scenario.source_method_defaults.items():
            print(f"    shared method defaults for source {source}: "
                  + ", ".join(f"{k}={v}" for k, v in values.items()))
        if scenario.method_defaults:
            print("    shared method defaults: " + ", ".join(
                f"{k}={v}" for k, v in scenario.method_defaults.items()))
        for method, values in scenario.method_settings.items():
            print(f"    {method} defaults: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        for profile, per_method in scenario.profile_method_settings.items():
            for method, values in per_method.items():
                print(f"    {method} defaults in profile {profile}: "
                      + ", ".join(f"{k}={v}" for k, v in values.items()))
    print("methods:")
    external = entry_point_methods()
    for name in list_methods():
        try:
            cls = get_method(name)
        except UnknownMethodError as e:  # a broken entry point must not hide the others
            print(f"  {name}: cannot be loaded: {e}")
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        if name in external:
            doc += f" [entry point {external[name]}]"
        hps = ", ".join(f"{k}={v}" for k, v in hparam_fields(cls).items()) or "no hyperparameters"
        space = "; ".join(f"{k} {dim.describe()}" for k, dim in cls.search_space.items())
        print(f"  {name}: {doc}\n    {hps}\n    tune searches: {space}")
        if cls.control_of:
            pinned = ", ".join(f"{k}={v}" for k, v in cls.fixed.items())
            print(f"    control of {cls.control_of} (pins {pinned}; takes {cls.control_of}'s "
                  "scenario defaults); report marks a "
                  f"{cls.control_of} row that does not beat it on the same seeds")
    for name, target in shadowed_entry_points().items():
        print(f"  note: the entry point {name} = {target} is not used: a built-in method has "
              "that name (run it as " + target + ")")
    return 0


def _problem(args: argparse.Namespace, scenario_name: str, method_names: list[str],
             sets: list[str]):
    """(methods, scenario, settings overrides, hyperparameter overrides) of a command."""
    methods = list(dict.fromkeys(method_names))  # drop repeats, keep the order
    if not methods:
        raise DpsBenchError("--methods is empty; see `dps-bench list` for the names")
    for m in methods:
        get_method(m)  # unknown names fail here, before any data is loaded
    scenario = get_scenario(scenario_name)
    settings, hparams = parse_sets(sets, scenario, methods)
    if args.steps is not None:
        settings["steps"] = args.steps
    return methods, scenario, settings, hparams


def cmd_check_method(args: argparse.Namespace) -> int:
    from . import conformance

    get_method(args.method)  # an unknown name or a broken module fails here, readably
    rules = conformance.RULES
    if args.rules:
        try:
            rules = tuple(conformance.rule(r) for r in args.rules)
        except KeyError as e:
            raise DpsBenchError(str(e.args[0])) from None
    print(f"checking {args.method} against {len(rules)} rules of the method contract ...",
          flush=True)
    outcomes = conformance.check_method(
        args.method, rules,
        progress=lambda o: print(f"  {o.rule.name}: {'PASS' if o.passed else 'FAIL'}",
                                 flush=True))
    print()
    print(conformance.table(outcomes))
    broken = [o for o in outcomes if not o.passed]
    total = sum(o.seconds for o in outcomes)
    print(f"\n{len(outcomes) - len(broken)} of {len(outcomes)} rules kept ({total:.1f} s)")
    return 1 if broken else 0


def cmd_new_method(args: argparse.Namespace) -> int:
    import importlib.util
    import keyword
    from pathlib import Path

    name = args.name
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise DpsBenchError(f"{name!r} is a Python keyword; choose another name")
    if not name.isidentifier() or name != name.lower():
        raise DpsBenchError(f"{name!r} is not a lowercase Python identifier; use e.g. "
                            "loss_rank (the file is NAME.py, the registry name NAME)")
    cls = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    builtin = Path(__file__).resolve().parent.parent / "methods"
    folder = Path(args.dir) if args.dir else builtin
    path = folder / f"{name}.py"
    if path.exists():
        raise DpsBenchError(f"{path} exists already; choose another name or delete it first")
    if name in list_methods():
        if not args.dir:
            raise DpsBenchError(f"a method called {name!r} is registered already")
        print(f"note: a built-in method is called {name!r}; registered under that name through "
              f"an entry point, yours would be hidden by it (run it as {name}:{cls})")
    if args.dir and importlib.util.find_spec(name) is not None:
        raise DpsBenchError(f"a module called {name!r} is importable already "
                            f"({importlib.util.find_spec(name).origin}); {folder}/{name}.py would "
                            "shadow it, or be shadowed by it: choose another name")
    template = (Path(__file__).parent / "templates" / "method.py.txt").read_text()
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(template.format(name=name, cls=cls))
    print(f"wrote {path}: the class {cls}, with comments where the method's own logic goes")
    if folder.resolve() == builtin:
        print(f"next: register it in methods/__init__.py, in REGISTRY:\n"
              f'    "{name}": "methods.{name}:{cls}",\n'
              f"then: dps-bench check-method {name}")
    else:
        print(f"next: dps-bench check-method {name}:{cls} (with {folder} on PYTHONPATH), or "
              "register it from your package's pyproject.toml:\n"
              '    [project.entry-points."dps_bench.methods"]\n'
              f'    {name} = "your_package.{name}:{cls}"')
    return 0


def _tuned_dir(args: argparse.Namespace):
    from pathlib import Path

    from .tuned import TUNED_DIR

    return Path(args.tuned_dir) if args.tuned_dir else TUNED_DIR


def _sweep(args: argparse.Namespace, scenario_name: str, source: str | None, profile: str,
           method_names: list[str], seeds: list[int], sets: list[str], out: str,
           grid: list[str] | None = None):
    from .sweep import plan, run_sweep
    from .tuned import load_tuned

    methods, scenario, settings, hparams = _problem(args, scenario_name, method_names, sets)
    grid = grid if grid is not None else getattr(args, "grid", None) or []
    setting_axes, hparam_axes = parse_grid(grid, scenario, methods)
    clash = {k for k, _ in setting_axes} & set(settings)
    clash |= {f"{m}.{k}" for m, axes in hparam_axes.items() for k, _ in axes if k in hparams[m]}
    if clash:
        raise DpsBenchError(f"--grid and --set (or --steps) both give {', '.join(sorted(clash))}; "
                            "keep one")
    per_method: dict[str, dict] = {}
    if args.settings == "tuned":
        if setting_axes:
            raise DpsBenchError("--grid over a setting changes the problem the tuned settings "
                                "were chosen for; with --settings tuned, grid hyperparameters only")
        for m in methods:
            per_method[m], tuned = load_tuned(
                _tuned_dir(args), scenario_name, source or scenario.default_source, profile,
                settings, m, hparams[m])
            gridded = {k for k, _ in hparam_axes[m]} & (set(tuned) | set(per_method[m]))
            if gridded:
                raise DpsBenchError(f"--grid {', '.join(sorted(gridded))}: tuned for {m}; drop "
                                    "the grid, or use --settings paper")
            hparams[m] = {**hparams[m], **tuned}
    specs = plan(scenario_name, source, profile, methods, seeds, settings, hparams, per_method,
                 setting_axes, hparam_axes)
    if getattr(args, "ddp", False):
        from .ddp import run_ddp

        if args.backend != "local" or _resolve_jobs(args) != 1:
            raise DpsBenchError("--ddp trains each run across torchrun's processes; it takes "
                                "neither --backend ray nor --jobs")
        result = run_ddp(specs, out, args.data_dir, args.device, args.threads, args.force)
        if os.environ.get("RANK", "0") == "0":
            print(f"{result.ran} runs done, {result.skipped} skipped (already complete), "
                  f"{len(result.failed)} failed; results in {out}/runs.csv")
        return result
    result = run_sweep(specs, out, data_dir=args.data_dir, device=args.device,
                       progress=None if not args.no_progress else False, force=args.force,
                       threads=args.threads, jobs=_resolve_jobs(args),
                       backend=args.backend, ray_address=args.ray_address)
    print(f"{result.ran} runs done, {result.skipped} skipped (already complete), "
          f"{len(result.failed)} failed"
          + (f", {result.elsewhere} left to another process" if result.elsewhere else "")
          + (f", {result.diverged} diverged (their loss became non-finite: see the error column; "
             "not retried)" if result.diverged else "")
          + f"; results in {out}/runs.csv")
    if result.failed:
        print("failed runs (rerun the same command to retry them):", file=sys.stderr)
        for f in result.failed:
            print("  " + f.strip().replace("\n", "\n    "), file=sys.stderr)
    return result


def cmd_run(args: argparse.Namespace) -> int:
    result = _sweep(args, args.scenario, args.source, args.profile, _csv_list(args.methods),
                    args.seeds, args.set or [], args.out)
    return 1 if result.failed else 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from .report import summarize_store, to_markdown
    from .reproduce import references, report_dir, select
    from .store import Store

    started = time.perf_counter()
    folder = Path(args.references) if args.references else None
    if folder is not None and not folder.is_dir():
        raise DpsBenchError(f"--references {folder}: not a directory of reference YAML files")
    chosen = select(references(folder), args.profile, _csv_list(args.only) if args.only else None)
    if not chosen:
        raise DpsBenchError(f"no reference experiment has profile {args.profile!r}; "
                            "see `dps-bench reproduce --list`")
    _announce(chosen, args)
    failed, skipped, outs = 0, [], []
    for i, ref in enumerate(chosen, 1):
        out = str(Path(args.out) / (ref.out + ("-tuned" if args.settings == "tuned" else "")))
        seeds = args.seeds or ref.seeds
        print(f"[{i}/{len(chosen)}] {ref.name}: {ref.scenario} on {ref.source}, profile "
              f"{ref.profile}, {len(ref.methods)} methods x {len(seeds)} seeds"
              + (f" x grid {' '.join(ref.grid)}" if ref.grid else "") + f" -> {out}")
        try:
            result = _sweep(args, ref.scenario, ref.source, ref.profile, ref.methods, seeds,
                            ref.sets, out, grid=ref.grid)
        except DpsBenchError as e:  # e.g. real data absent: the other experiments still run
            skipped.append(f"{ref.name}: {e}")
            print(f"  skipped: {e}", file=sys.stderr)
            continue
        failed += len(result.failed)
        outs.append(out)
        store = Store(out)
        summary = to_markdown(summarize_store(store))
        (Path(out) / "summary.md").write_text(summary + "\n")
        print(f"  summary: {out}/summary.md")
    for ref in chosen:
        out = str(Path(args.out) / (ref.out + ("-tuned" if args.settings == "tuned" else "")))
        if ref.retrain_fractions and out in outs:
            print(f"retrain {ref.name}: fractions {ref.retrain_fractions} of "
                  f"{', '.join(ref.retrain_methods) or 'every method'}'s weights -> {out}/retrain")
            try:
                failed += len(_retrain(args, out, ref.retrain_fractions,
                                       ref.retrain_methods).failed)
            except DpsBenchError as e:  # e.g. every run of a listed method diverged
                failed += 1
                print(f"  retrain of {ref.name} not run: {e}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} of {len(chosen)} reference experiments skipped:", file=sys.stderr)
        for line in skipped:
            print("  " + line, file=sys.stderr)
    if len(skipped) == len(chosen):
        return 2
    if args.profile and not args.only:
        to = Path(args.out) / report_dir(args.profile, args.settings == "tuned")
        _write_report(list(dict.fromkeys(outs)), to, ["md", "csv", "tex", "html"], ["png"],
                      _command(), args.screenshot)
        _write_claims(list(dict.fromkeys(outs)), to.parent / "CLAIMS.md", _command())
    print(f"reproduce: {time.perf_counter() - started:.0f} s wall in all")
    return 1 if failed else 0


def _announce(chosen, args: argparse.Namespace) -> None:
    """Before a long profile starts: the data, hardware and time each experiment needs."""
    from .scenarios import get_scenario

    for ref in chosen:
        note = ref.needs or get_scenario(ref.scenario).profile_notes.get(ref.profile)
        if note and ref.profile != "quick":
            print(f"{ref.name} needs: {note}")


def _command() -> str:
    import shlex

    return "dps-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _retrain(args: argparse.Namespace, out: str, fractions: list[float], methods: list[str]):
    from .retrain import retrain

    result = retrain(out, fractions, methods or None, data_dir=args.data_dir, device=args.device,
                     jobs=_resolve_jobs(args), threads=args.threads, force=args.force,
                     progress=None if not args.no_progress else False)
    print(f"{result.ran} retraining runs done, {result.skipped} skipped (already complete), "
          f"{len(result.failed)} failed; results in {out}/retrain/runs.csv")
    for f in result.failed:
        print("  " + f.strip().replace("\n", "\n    "), file=sys.stderr)
    return result


def cmd_retrain(args: argparse.Namespace) -> int:
    fractions = []
    for text in _csv_list(args.fractions):
        try:
            fractions.append(float(text.rstrip("%")) / (100 if text.endswith("%") else 1))
        except ValueError:
            raise DpsBenchError(f"--fractions {text!r} is not a number; e.g. 0.05,0.1,0.25,0.5 "
                                "or 5%,10%") from None
    methods = _csv_list(args.methods) if args.methods else []
    result = _retrain(args, args.source_dir, fractions, methods)
    return 1 if result.failed else 0


def _write_report(dirs: list[str], to, formats: list[str], figure_formats: list[str],
                  command: str, screenshot: bool = False) -> None:
    from pathlib import Path

    from .report.build import write_report

    written = write_report(dirs, to, formats, figure_formats, command)
    print(f"report: {written[0]}" + (f", {written[1]}" if len(written) > 1 and
                                     written[1].name == "report.html" else "")
          + f" ({len(written)} files)")
    if screenshot:
        from .report.browser import screenshot as shoot

        html = Path(to) / "report.html"
        if not html.exists():
            raise DpsBenchError("--screenshot needs the html format (--format ...,html)")
        try:
            shoot(html, Path(to) / 'report.png', height=6000)
            print(f"screenshot: {Path(to) / 'report.png'}")
        except RuntimeError as e:
            raise DpsBenchError(str(e)) from None


def _write_claims(dirs: list[str], to, command: str) -> None:
    from pathlib import Path

    from .report.build import collect
    from .report.claims import check_claims, claims_markdown

    text = claims_markdown(check_claims(collect(dirs)), command)
    if to is None:
        print(text)
        return
    Path(to).parent.mkdir(parents=True, exist_ok=True)
    Path(to).write_text(text)
    print(f"claims: {to}")


def cmd_claims(args: argparse.Namespace) -> int:
    _write_claims(args.out, args.to, _command())
    return 0


def cmd_references(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .reproduce import references

    for ref in references(Path(args.references) if args.references else None):
        sets = f" set {', '.join(ref.sets)}" if ref.sets else ""
        sets += f" grid {' '.join(ref.grid)}" if ref.grid else ""
        sets += (f" retrain {ref.retrain_fractions} of {', '.join(ref.retrain_methods) or 'all'}"
                 if ref.retrain_fractions else "")
        sets += " (runs only when named with --only)" if ref.named_only else ""
        print(f"{ref.name}: {ref.scenario} / {ref.source} / profile {ref.profile}; "
              f"{', '.join(ref.methods)}; seeds {ref.seeds}{sets} -> {ref.out}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    import shlex

    from .tune import tune

    methods, scenario, settings, hparams = _problem(args, args.scenario, _csv_list(args.methods),
                                                    args.set or [])
    result = tune(args.scenario, args.source, args.profile, methods, args.budget, args.seeds,
                  settings, hparams, args.out, _tuned_dir(args), strategy=args.strategy,
                  search_seed=args.search_seed, window=args.window, data_dir=args.data_dir,
                  device=args.device, progress=None if not args.no_progress else False,
                  force=args.force, threads=args.threads, jobs=_resolve_jobs(args),
                  backend=args.backend, ray_address=args.ray_address,
                  command="dps-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    for path in result.written:
        print(f"tuned: {path}")
    if result.failed:
        print(f"{len(result.failed)} tuning runs failed (rerun the same command to retry them):",
              file=sys.stderr)
        for f in result.failed:
            print("  " + f.strip().splitlines()[0], file=sys.stderr)
    if result.untuned:
        print(f"no eligible configuration (every run failed or diverged) for: "
              f"{', '.join(result.untuned)}", file=sys.stderr)
    return 1 if result.failed or result.untuned else 0


REPORT_FORMATS = ("md", "csv", "tex", "html")
FIGURE_FORMATS = ("png", "pdf", "svg")


def _formats(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    values = ["md" if v == "markdown" else v for v in _csv_list(text)]
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise DpsBenchError(f"{option} {text!r}: choose from {', '.join(allowed)} (comma-separated)")
    return values


def cmd_report(args: argparse.Namespace) -> int:
    import pandas as pd

    if args.to:
        ignored = [o for o, v in (("--side-by-side", args.side_by_side), ("--columns", args.columns),
                                  ("--methods", args.methods)) if v]
        if ignored:
            raise DpsBenchError(f"{', '.join(ignored)} shape the printed table; with --to the "
                                "whole report is written: drop them, or drop --to")
        formats = _formats(args.format or "md,csv,tex,html", REPORT_FORMATS, "--format")
        figure_formats = _formats(args.figures, FIGURE_FORMATS, "--figures")
        dirs = [o.partition("=")[2] if "=" in o and "/" not in o.partition("=")[0] else o
                for o in args.out]
        _write_report(dirs, args.to, formats, figure_formats, _command(), args.screenshot)
        return 0
    if args.format not in (None, "markdown", "md", "csv"):
        raise DpsBenchError(f"--format {args.format!r} without --to: the table prints as md "
                            "(markdown) or csv; the other formats need --to REPORT_DIR")

    from .report import side_by_side, summarize_store, to_markdown
    from .store import Store

    tables = {}
    for out in args.out:
        head, sep, tail = out.partition("=")
        label, path = (head, tail) if sep and "/" not in head else (out, out)
        if label in tables:
            raise DpsBenchError(f"--out: the label {label!r} is given twice; give each "
                                "directory its own LABEL=DIR")
        if not path:
            raise DpsBenchError(f"--out {out!r} names no directory; use --out DIR or LABEL=DIR")
        store = Store(path)
        if not store.exists():
            raise DpsBenchError(f"no results in {path}; run `dps-bench run ... --out {path}`")
        tables[label] = summarize_store(store, args.compare_on, args.controls_side_by_side)
    if args.side_by_side:
        try:
            table = side_by_side(tables)
        except ValueError as e:
            raise DpsBenchError(str(e)) from None
    else:
        if len(tables) > 1:
            for label, t in tables.items():
                t.insert(0, "results", label)
        table = pd.concat(tables.values(), ignore_index=True)
    if args.methods:
        wanted_methods = _csv_list(args.methods)
        absent = [m for m in wanted_methods if m not in set(table["method"])]
        if absent:
            raise DpsBenchError(f"--methods: no rows of {', '.join(absent)} in this report; "
                                f"methods: {', '.join(dict.fromkeys(table['method']))}")
        table = table[table["method"].isin(wanted_methods)]
    if args.columns is not None:
        wanted = _csv_list(args.columns)
        if not wanted:
            raise DpsBenchError("--columns names no column; e.g. --columns method,final_mean")
        missing = [c for c in wanted if c not in table.columns]
        if missing:
            raise DpsBenchError(f"--columns: no column {', '.join(missing)} in this report; "
                                f"columns: {', '.join(map(str, table.columns))}")
        table = table[wanted]
    text = table.to_csv(index=False) if args.format == "csv" else to_markdown(table)  # md
    print(text)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if args.sample < 0:
        raise DpsBenchError(f"--sample must be >= 0 (0: every complete run), got {args.sample}")
    if len(args.store) == 1:
        return _verify_store(args, args.store[0])
    failed, empty = [], []
    for store in args.store:
        print(f"\n## {store}\n", flush=True)
        try:
            if _verify_store(args, store):
                failed.append(store)
        except DpsBenchError as e:
            if str(e).startswith("no complete run of"):  # --methods absent here: nothing to do
                print(f"nothing to verify: {e}")
                empty.append(store)
                continue
            print(f"dps-bench: error: {e}", file=sys.stderr)
            failed.append(store)
    checked = len(args.store) - len(empty)
    if failed:
        print(f"\n{len(failed)} of {checked} stores verified do not reproduce: "
              f"{', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"\nevery sampled run of the {checked} stores verified reproduces"
          + (" or was refreshed" if args.refresh else "")
          + (f" ({len(empty)} had no run of --methods)" if empty else ""))
    return 0


def _verify_store(args: argparse.Namespace, store: str) -> int:
    import pandas as pd

    from .report import to_markdown
    from .verify import verify

    def show(v) -> None:
        print(f"  {v.method} seed={v.seed} ({v.run_id}): {v.verdict}"
              + (f", largest difference {v.max_abs_diff:.3g}" if v.verdict == "DIFFERS" else "")
              + (f"; {v.note}" if v.note else ""), flush=True)

    print(f"rerunning {'all' if args.sample == 0 else f'up to {args.sample}'} complete runs of "
          f"{store} at this code:", flush=True)
    verdicts = verify(store, None if args.sample == 0 else args.sample, args.seed,
                      args.tolerance, args.data_dir,
                      _csv_list(args.methods) if args.methods else None, on_result=show,
                      refresh=args.refresh)
    table = pd.DataFrame([vars(v) for v in verdicts])
    print(to_markdown(table[["method", "seed", "run_id", "stored", "now", "max_abs_diff",
                             "verdict", "note"]]))
    if args.refresh:
        print(f"{int(table['refreshed'].sum())} reruns stored in {store} in place of runs "
              "that did not reproduce; `dps-bench report` shows the updated numbers")
    bad = table[table["verdict"].isin(["DIFFERS", "STALE", "ERROR"]) & ~table["refreshed"]]
    if len(bad):
        kinds = set(bad["verdict"])
        how = []
        if "DIFFERS" in kinds:
            how.append("`--refresh` stores the reruns that differ in place of the stored runs")
        if kinds & {"STALE", "ERROR"}:
            how.append("runs that are STALE or whose rerun raised (ERROR) must be trained again "
                       f"with the command that made them and `--force` (`--out {store}`)")
        print(f"{len(bad)} of {len(table)} runs do not reproduce at this code: "
              + "; ".join(how) + " (for results/, see results/README.md, then commit the new "
              "numbers)", file=sys.stderr)
        return 1
    refreshed = int(table["refreshed"].sum())
    agreed = table[~table["refreshed"]]
    if refreshed:
        print(f"{len(agreed)} of {len(table)} runs reproduce"
              + (f" ({', '.join(sorted(set(agreed['verdict'])))})" if len(agreed) else "")
              + f"; {refreshed} did not and were replaced by their reruns")
        return 0
    print(f"all {len(table)} runs reproduce ({', '.join(sorted(set(table['verdict'])))})")
    return 0

def cmd_store(args: argparse.Namespace) -> int:
    from .store import Store

    store = Store(args.store)
    if args.action == "check":
        if not store.exists():
            raise DpsBenchError(f"{args.store} holds no dps-bench store (no records/ and no "
                                "runs.csv); check the path")
        report = store.check()
        kind = "old-format store (views only)" if report.legacy else "store"
        if report.ok:
            print(f"{args.store}: {kind}, {report.runs} runs, every file reads cleanly")
            return 0
        print(f"{args.store}: {kind}, {report.runs} readable runs; problems:")
        for line in report.problems:
            print("  " + line)
        print(f"run `dps-bench store repair {args.store}` to set damaged files aside and rebuild "
              "the views (nothing is deleted)")
        return 1
    for line in store.repair():
        print(line)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .data.mnist import FASHION_MNIST, MNIST, data_dir, download

    root = data_dir(args.data_dir)
    if root is None:
        raise DpsBenchError("give --data-dir DIR (or set DPS_DATA_DIR)")
    if args.dataset == "cifar10":
        from .data.cifar10 import download_cifar10

        folder = download_cifar10(root)
        print(f"cifar10: verified batches in {folder}")
        return 0
    if args.dataset == "webnlg":
        from .data.webnlg import download_webnlg

        folder = download_webnlg(root)
        print(f"webnlg: verified WebNLG 2017 (enriched v2.0) files in {folder}")
        return 0
    spec = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST}[args.dataset]
    folder = download(spec, root)
    print(f"{spec.name}: verified files in {folder}")
    return 0


def _problem_options(p: argparse.ArgumentParser, set_help: str) -> None:
    """--source, --profile, --steps, --data-dir, --set and --device, shared by run and tune."""
    p.add_argument("--source", help="data source (default: the scenario's embedded default)")
    p.add_argument("--profile", default="quick",
                   help="quick (default: minutes on 2 CPU cores), paper (the paper's settings), or "
                        "one a scenario adds (denoising: cifar-cpu); `dps-bench list` shows them")
    p.add_argument("--steps", type=int, help="override the profile's number of training steps")
    p.add_argument("--data-dir", help="directory holding <source>/ data files "
                                      "(default: $DPS_DATA_DIR)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")


def _machine_options(p: argparse.ArgumentParser, jobs_default: str = "1",
                     backends: bool = True) -> None:
    """--threads and --jobs (and --backend, --ray-address), shared by run, tune and reproduce."""
    if backends:
        p.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local (default): this process, or --jobs worker processes; ray: "
                            "every run a Ray task (pip install 'dps-bench[ray]'), written to the "
                            "same resumable --out as it finishes; a local Ray instance with "
                            "--jobs x --threads CPUs unless --ray-address is given")
        p.add_argument("--ray-address", help="with --backend ray: join this Ray cluster (e.g. "
                                             "auto, or ray://HOST:10001); --out must then be on "
                                             "a file system its workers share")
    p.add_argument("--threads", type=_positive, default=None,
                   help="intra-op CPU threads per run (default 1: the suite's models are small, "
                        "and more threads than free cores slow a step 15-200x); recorded with "
                        "each run")
    p.add_argument("--jobs", type=_jobs, default=jobs_default,
                   help=f"runs trained at once, in separate processes (default {jobs_default}; "
                        "auto: usable cores / threads). Times per step are then "
                        "taken under contention (rows record `jobs` and `load_avg`, the report "
                        "flags them in `timing`): measure costs with --jobs 1 on a quiet machine, "
                        "or with `tox -e bench`")


def _jobs(text: str) -> int | str:
    return "auto" if text == "auto" else _positive(text)


def _resolve_jobs(args: argparse.Namespace) -> int:
    import os

    if args.jobs != "auto":
        return args.jobs
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // (args.threads or 1))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _settings_options(p: argparse.ArgumentParser, more: str = "") -> None:
    p.add_argument("--settings", choices=("paper", "tuned"), default="paper",
                   help="paper (default): the scenario's fixed settings; tuned: each method's "
                        "settings chosen by `dps-bench tune` for the same scenario, source, "
                        "profile and --set/--steps" + more)
    p.add_argument("--tuned-dir", help="where tuned settings are read from (default: the "
                                       "suite's benchmarks/configs/tuned)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dps-bench",
        description="Benchmark data point selection methods (BADS and baselines) on shared "
                    "scenarios, measuring the target metric, time and peak memory per step.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="scenarios (sources, profiles, settings) and methods "
                                    "(hyperparameters and defaults)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "run", help="run methods x seeds on a scenario; resumable",
        description="Run every method for every seed. Each run is identified by a hash of its "
                    "full resolved configuration; runs already complete in --out are skipped, "
                    "so an interrupted command is resumed by running it again.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", required=True, help=f"one of: {', '.join(SCENARIOS)}")
    p.add_argument("--methods", required=True, help="comma-separated method names (dps-bench list)")
    p.add_argument("--seeds", type=_seeds, default=[0], help="e.g. 0,1,2 or 0-4 (default 0)")
    _problem_options(p, "a scenario setting (meta_per_class=5) or a method hyperparameter "
                        "(random_select.beta=0.01); repeatable")
    p.add_argument("--ddp", action="store_true",
                   help="train each run data-parallel across the processes torchrun starts "
                        "(torchrun --nproc-per-node N -m benchmarks.cli run ... --ddp): gloo on "
                        "CPU, nccl on CUDA; each rank takes 1/N of every batch (batch_size and "
                        "meta_batch_size divisible by N); bads and its controls")
    p.add_argument("--out", required=True, type=_directory,
                   help="results directory (created if needed)")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                   help="sweep: run every combination of the listed values; KEY is a setting, "
                        "METHOD.NAME, or NAME for every listed method with that hyperparameter "
                        "(not the controls that pin it or ignore it); repeatable, e.g. "
                        "--grid sigma=1e-5,1e-3,1 --grid lr_w=1e-4,1e-3")
    _settings_options(p)
    _machine_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true",
                   help="rerun runs already complete in --out (each old row is replaced only "
                        "when its new run has finished), e.g. after changing a method's code")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "tune", help="tune every method with the same budget, on the validation split; resumable",
        description="Give every method the same budget of configurations from its declared "
                    "search space (the model lr for every method; e.g. lr_w, beta and sigma for "
                    "bads, inner_lr and k for blo, r_floor for cds), run them through the same "
                    "resumable sweep as `run` (into --out), score each on the validation split "
                    "only (mean of the last --window evaluations over --seeds; the test split is "
                    "never read) and write each method's choice to "
                    "TUNED_DIR/<scenario>-<source>-<profile>[-<fixed settings>]/<method>.yaml, "
                    "which `run --settings tuned` reads. Configurations whose weights end "
                    "collapsed or uniform rank below healthy ones.",
        epilog="examples:\n  dps-bench tune --scenario balancing --methods train_only,bads "
               "--budget 8 --out runs/tune-quick\n"
               "  dps-bench tune --scenario balancing --source mnist --data-dir ../shared/data "
               "--profile paper --set meta_per_class=5 --steps 1500 --methods bads --budget 4 "
               "--out runs/tune-mnist\n"
               "  dps-bench run --scenario balancing --methods bads --settings tuned --seeds 0-2 "
               "--out runs/tuned",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", required=True, help=f"one of: {', '.join(SCENARIOS)}")
    p.add_argument("--methods", required=True, help="comma-separated method names (dps-bench list)")
    p.add_argument("--budget", type=int, default=8,
                   help="configurations per method, the same for every method (default 8)")
    p.add_argument("--strategy", choices=("random", "grid"), default="random",
                   help="random (default): the default configuration, then budget-1 seeded draws; "
                        "grid: budget points of the search grid in a seeded order")
    p.add_argument("--search-seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--seeds", type=_seeds, default=[1000],
                   help="run seeds each configuration is scored on (default 1000: apart from "
                        "the seeds results are reported on)")
    p.add_argument("--window", type=int, default=3,
                   help="score = mean validation metric over the last WINDOW evaluations (default 3)")
    _problem_options(p, "fix a scenario setting or a method hyperparameter while tuning; part "
                        "of the tuned settings' key")
    p.add_argument("--out", required=True, type=_directory,
                   help="results directory of the tuning runs")
    p.add_argument("--tuned-dir", help="where the tuned YAML files go (default: the suite's "
                                       "benchmarks/configs/tuned)")
    _machine_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="rerun tuning runs already complete")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "reproduce", help="run the reference experiments of the paper's tables; resumable",
        description="Run every reference experiment (benchmarks/configs/reference/*.yaml) of a "
                    "profile through the same resumable sweep as `run`, and write each results "
                    "directory's summary.md. Experiments whose data is absent are skipped with "
                    "the reason. `--profile quick` needs no data files.",
        epilog="examples:\n  dps-bench reproduce --profile quick --out results\n"
               "  dps-bench reproduce --profile paper --data-dir ../shared/data --out results\n"
               "  dps-bench reproduce --list",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="quick",
                   help="quick (default: the offline references; a quick reference on real data "
                        "runs when named with --only), paper, or cifar-cpu")
    p.add_argument("--only", help="comma-separated reference names (see --list); with --only, "
                                  "no profile report is written")
    p.add_argument("--seeds", type=_seeds, help="override every experiment's seeds (e.g. 0-4)")
    p.add_argument("--references", help="a folder of reference YAML files to run instead of the "
                                        "suite's (benchmarks/configs/reference)")
    p.add_argument("--screenshot", action="store_true",
                   help="also save the profile report as headless Chromium renders it "
                        "(report.png; needs chromium)")
    p.add_argument("--list", action="store_true", help="list the reference experiments and exit")
    p.add_argument("--out", default="runs", type=_directory,
                   help="results root (default: runs/); each experiment writes to OUT/<its out>")
    p.add_argument("--data-dir", help="directory holding <source>/ data files "
                                      "(default: $DPS_DATA_DIR)")
    p.add_argument("--steps", type=int, help="override every experiment's number of steps")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    _settings_options(p, "; tuned results go to OUT/<its out>-tuned")
    _machine_options(p, jobs_default="auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="rerun runs already complete")
    p.set_defaults(func=lambda a: cmd_references(a) if a.list else cmd_reproduce(a))

    p = sub.add_parser("report", help="summary table (mean over seeds) of results directories")
    p.add_argument("--out", required=True, action="append",
                   help="results directory written by `run`, or LABEL=DIR; repeat to report several "
                        "(a `results` column names each row's directory or label)")
    p.add_argument("--side-by-side", action="store_true",
                   help="with several --out: one row per method and Dm size, one column group "
                        "per directory (final mean ± std (n), selected, degenerate runs), e.g. "
                        "--out paper=results/a --out tuned=results/a-tuned")
    p.add_argument("--to", metavar="REPORT_DIR",
                   help="write the whole report here: REPORT.md, report.html (one self-contained "
                        "page, sortable tables), tables/<name>.{md,csv,tex}, figures/ (cost, "
                        "curves, meta-set size, weights, retraining, sensitivity), the "
                        "leaderboard over every directory given. Without --to: print one table")
    p.add_argument("--format", default=None,
                   help="with --to: comma-separated md,csv,tex,html (default all); without: md "
                        "(markdown, default) or csv for the printed table")
    p.add_argument("--figures", default="png",
                   help="with --to: figure formats, comma-separated png,pdf,svg (default png)")
    p.add_argument("--screenshot", action="store_true",
                   help="with --to: also save report.png, report.html as headless Chromium "
                        "renders it (needs chromium: apt-get install chromium)")
    p.add_argument("--columns", help="only these columns, in this order (comma-separated, "
                                     "e.g. method,params,final_mean,selection)")
    p.add_argument("--methods", help="only the rows of these methods (comma-separated)")
    p.add_argument("--controls-side-by-side", action="store_true",
                   help="next to a method's row, each matched control's final_mean, val_mean and "
                        "auroc (columns '<control> <column>')")
    p.add_argument("--compare-on", choices=("test", "val"), default="test",
                   help="what the `selection`/`vs_controls` columns compare a method with its "
                        "controls on: test (default; the final test metric) or val (the "
                        "validation score, to choose settings without reading the test split)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "retrain", help="retrain fresh models on each method's top-weighted points and on random "
                        "ones (point addition); resumable",
        description="For every ok run with weights in --from DIR and each fraction f: train a "
                    "fresh train_only model (same scenario, settings, seed) on only the "
                    "⌊f·N_t⌋ points of Dt with the highest final weights, and once per setting "
                    "and seed on as many random points. Writes DIR/retrain/ (a store: rerun to "
                    "resume); `dps-bench report --to` reads it.",
        epilog="example:\n  dps-bench retrain --from results/reference/quick/balancing "
               "--fractions 0.05,0.25,0.5 --methods bads,blo",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source_dir", required=True, type=_directory,
                   help="results directory whose runs' weights to retrain on")
    p.add_argument("--fractions", default="0.05,0.1,0.25,0.5",
                   help="fractions of Dt to keep, comma-separated, in (0, 1] or as 5%% "
                        "(default 0.05,0.1,0.25,0.5)")
    p.add_argument("--methods", help="only the runs of these methods (default: every method "
                                     "with weights)")
    p.add_argument("--data-dir", help="directory holding <source>/ data files "
                                      "(default: $DPS_DATA_DIR)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    _machine_options(p, backends=False)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="rerun retraining runs already complete")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser(
        "claims", help="check the paper's claims against results directories (CLAIMS.md)",
        description="For each claim the paper makes in words (cost, meta-set size, label noise, "
                    "the weights), what the given results show, a verdict, and the directories "
                    "it drew on. Nothing is rerun.")
    p.add_argument("--out", required=True, action="append", type=_directory,
                   help="results directory; repeat for several")
    p.add_argument("--to", help="write the table to this file (default: print it)")
    p.set_defaults(func=cmd_claims)

    p = sub.add_parser(
        "verify", help="rerun a sample of a results directory's runs and compare with the stored "
                       "numbers",
        description="Rerun complete runs of a results directory at this code, with their "
                    "recorded configuration, seed and thread count, and compare every curve value "
                    "and the status with what is stored: exact (bit for bit), within tolerance, "
                    "DIFFERS, STALE (an older suite version) or ERROR (the rerun raised). Exit "
                    "status 1 if any run does not reproduce. No result in the directory is "
                    "changed (the reruns are not stored) unless --refresh is given.",
        epilog="examples:\n  dps-bench verify results/balancing/mnist1d-quick --sample 3\n"
               "  dps-bench verify results/balancing/mnist-short --methods bads --data-dir "
               "../shared/data --sample 0\n"
               "  dps-bench verify results/balancing/mnist-short --methods mwn --sample 0 "
               "--refresh",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", metavar="DIR", nargs="+", type=_directory,
                   help="results directories written by run/reproduce/tune (several: each is "
                        "verified in turn, exit status 1 if any does not reproduce)")
    p.add_argument("--sample", type=int, default=5,
                   help="how many complete runs of each directory to rerun, drawn at random "
                        "(default 5; 0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    p.add_argument("--methods", help="only runs of these methods (comma-separated)")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="largest absolute difference still counted as agreement (default 0: "
                        "exact, as on the CPU; allow some on a GPU)")
    p.add_argument("--data-dir", help="directory holding <source>/ data files (for real-data "
                                      "stores; default: $DPS_DATA_DIR)")
    p.add_argument("--refresh", action="store_true",
                   help="store each rerun that does not reproduce in place of the stored run "
                        "(brings a store made by older code up to this code without retraining "
                        "the runs that still reproduce; exit status 0 once all are refreshed)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "store", help="check a results directory's files, or repair it",
        description="check: read every file of a results directory and say what is damaged. "
                    "repair: set damaged run records and unreadable rows aside in DIR/damaged/ "
                    "(nothing is deleted; their runs are trained again by the next run), convert "
                    "an old-format store to one record per run, and rebuild runs.csv and "
                    "curves.csv from the records.")
    p.add_argument("action", choices=("check", "repair"))
    p.add_argument("store", metavar="DIR", type=_directory, help="results directory")
    p.set_defaults(func=cmd_store)

    p = sub.add_parser(
        "check-method", help="run the method contract's conformance checks on one method",
        description="Run every rule of the method contract (benchmarks/conformance.py) against "
                    "a registered method or any method class (module.path:ClassName): finite "
                    "logs, valid weights, non-finite values surfacing, determinism, BatchNorm "
                    "and dtypes, no side effects on the model or the batches, a few steps on "
                    "every scenario's quick setup, documented and valid hyperparameters, no "
                    "import of benchmarks/. Prints a pass/fail table; exit status 1 if a rule "
                    "is broken, with what was seen and why the rule exists.")
    p.add_argument("method", help="a name from `dps-bench list`, or module.path:ClassName")
    p.add_argument("--rules", type=_csv_list, help="only these rules (comma-separated names)")
    p.set_defaults(func=cmd_check_method)

    p = sub.add_parser(
        "new-method", help="write a new method file from the template",
        description="Write NAME.py: a method class with the interface filled in (hyperparameter "
                    "dataclass, step, weights) that passes `dps-bench check-method` as written, "
                    "with comments where the method's own logic goes. By default into the "
                    "suite's methods/ (then add the registry line it prints).")
    p.add_argument("name", help="the method's name: a lowercase identifier, e.g. loss_rank")
    p.add_argument("--dir", help="write into this folder instead (for a method in your own "
                                 "package; register it with an entry point)")
    p.set_defaults(func=cmd_new_method)

    p = sub.add_parser("download", help="fetch and verify MNIST, Fashion-MNIST, CIFAR-10's python "
                                        "batches or the WebNLG 2017 corpus (needs internet)")
    p.add_argument("dataset", choices=("mnist", "fashion-mnist", "cifar10", "webnlg"))
    p.add_argument("--data-dir", help="files go to DATA_DIR/<dataset>/ (cifar10: DATA_DIR/"
                                      "cifar-10-batches-py/; webnlg: DATA_DIR/webnlg/"
                                      "webnlg-en-v2.0/; default: $DPS_DATA_DIR)")
    p.set_defaults(func=cmd_download)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the run in progress is abandoned, finished runs are kept."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except DpsBenchError as e:
        print(f"dps-bench: error: {e}", file=sys.stderr)
        return 2
    except UnknownMethodError as e:
        print(f"dps-bench: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `dps-bench report ... | head`: the reader has gone
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return 0
    except OSError as e:  # a file system refusal not anticipated closer to where it happened
        where = f" ({e.filename})" if e.filename else ""
        print(f"dps-bench: error: {e.strerror or e}{where}; check that path (its name, that it "
              "is a folder where one is expected, its permissions) and run the command again; "
              "completed runs are saved", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"\ndps-bench: {'terminated' if isinstance(e, _Terminated) else 'interrupted'}; "
              "completed runs are saved. Run the same command again to resume.", file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def entry() -> None:
    """The ``dps-bench`` executable: :func:`main`, then exit with its status. After a sweep's
    worker processes were stopped (Ctrl-C, SIGTERM, an error), the process ends at once once its
    output is flushed: every finished run is already saved, and Python's exit-time join of a
    stopped process pool can otherwise wait on a queue the dead workers no longer read."""
    from . import sweep

    code = main(sys.argv[1:])
    if sweep.POOL_STOPPED.is_set():
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
