"""The whole comparison from results directories: tables, figures, one document.

Reads each directory's store (runs.csv, curves.csv, weights/, and retrain/ when
``dps-bench retrain`` wrote it) with pandas; nothing is rerun. Per scenario and *setting* (a
block of runs sharing the scenario, source, profile and every scenario setting that varies in
the directories, e.g. ``meta_per_class=5``; the model's lr, momentum and weight decay do not make
a setting: tuning sets them per method), it builds:

- the final-metric table: method × setting, mean ± std over seeds, the 95% interval
  (``stats.mean_ci``), n, the best per column in bold, each method's rank in its column, its
  mean rank, the runs whose weights ended degenerate, and the verdict against BADS's controls
  (``controls.compare_with_controls``), the controls' rows next to BADS's;
- the cost table (the paper's Table 1) and the cost figure (metric against time and memory);
- the curves (the paper's Fig. 2), the meta-set-size figure (Fig. 3), the weight plots (mean
  weight per group over training, histograms of final weights by group, BADS's gradient shares);
- weight quality (AUROC, precision at ⌊β·N_t⌋: ``quality.py``) and retraining on the selection;
- sensitivity (Fig. 10): the final metric against each hyperparameter a sweep varied alone;
- the leaderboard: each method's mean rank over every block it ran in.

Which configuration is a method's row: the one whose hyperparameters are the method's defaults
for that scenario, profile and source (a sweep's other points go to the sensitivity section
only); where none is (tuned or hand-set runs), every configuration is a row, labelled with what
differs (``bads (sigma=1)``). Higher is better for every metric the suite's scenarios report.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd

from ..errors import DpsBenchError
from ..store import Store
from . import figures
from .backfill import fill_weights_status
from .document import Document, Figure, Section, Table, Text
from .quality import category_weights, favoured_group, quality_of_runs
from .style import save
from .summary import config_id, summarize, varying_params

TRAINING_KEYS = {"lr", "momentum", "weight_decay"}  # set per method by tuning: not a setting
RETRAIN_DIR = "retrain"
RANDOM = "random"  # the retraining baseline's method name
SCENARIO_TITLES = {"balancing": "Balancing (class imbalance; paper Sec. 5.1)",
                   "denoising": "Denoising (label noise; paper Sec. 5.2)",
                   "efficient": "Efficient learning (data-to-text; paper Sec. 5.3)",
                   "ift": "Instruction fine-tuning (paper Sec. 5.4)"}


@dataclass
class Collected:
    """Every run of the directories (deduplicated by run id), their curves, where each run's
    weights are, and the retraining runs."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    stores: dict[str, Store]
    retrain: pd.DataFrame
    dirs: list[str]

    def weights(self, run_id: str) -> pd.DataFrame | None:
        store = self.stores.get(run_id)
        return None if store is None else store.weights(run_id)


def collect(dirs: list[str]) -> Collected:
    """Read the stores of ``dirs``. Raises DpsBenchError for a directory without results."""
    runs, curves, retrain, stores = [], [], [], {}
    for d in dirs:
        store = Store(d)
        if not store.exists():
            raise DpsBenchError(f"no results in {d}; run `dps-bench run ... --out {d}` (or "
                                "`dps-bench reproduce`) first")
        r = fill_weights_status(store.runs(), store)
        r["folder"] = str(d)
        runs.append(r)
        curves.append(store.curves())
        for run_id in r["run_id"].astype(str):
            stores.setdefault(run_id, store)
        side = Store(Path(d) / RETRAIN_DIR)
        if side.exists():
            rr = side.runs()
            rr["folder"] = str(d)
            retrain.append(rr)
    all_runs = pd.concat(runs, ignore_index=True).drop_duplicates("run_id")
    all_curves = pd.concat(curves, ignore_index=True).drop_duplicates(
        ["run_id", "step", "split", "metric_name"])
    all_retrain = (pd.concat(retrain, ignore_index=True).drop_duplicates("run_id") if retrain
                   else pd.DataFrame())
    return Collected(all_runs.reset_index(drop=True), all_curves, stores, all_retrain,
                     [str(d) for d in dirs])


# -- settings, default configurations ---------------------------------------------------------

def _settings(config_json: str) -> dict:
    return json.loads(config_json)["settings"]


def setting_labels(runs: pd.DataFrame) -> pd.Series:
    """Per run, its setting: ``source · profile`` and every scenario setting (but the model's
    lr, momentum and weight decay) whose value varies among the runs of its scenario, source
    and profile (``fashion-mnist · quick · noise_rate=0.8``)."""
    settings = runs["config_json"].map(_settings)
    out = pd.Series("", index=runs.index, dtype=object)
    for _, idx in runs.groupby(["scenario", "source", "profile"]).groups.items():
        part = settings.loc[idx]
        keys = sorted({k for s in part for k in s} - TRAINING_KEYS)
        varying = [k for k in keys if len({repr(s.get(k)) for s in part}) > 1]
        out.loc[idx] = [" · ".join([runs.at[i, "source"], runs.at[i, "profile"]]
                                   + [f"{k}={part[i].get(k)}" for k in varying]) for i in idx]
    return out


@cache
def _defaults(scenario: str, method: str, profile: str, source: str) -> str | None:
    from ..config import resolve_hparams
    from ..errors import ConfigError
    from ..scenarios import get_scenario

    try:
        hp = resolve_hparams(get_scenario(scenario), method, {}, profile, source)
    except (KeyError, ConfigError, ValueError):
        return None
    return json.dumps(dataclasses.asdict(hp), sort_keys=True)


def hparam_diff(row) -> dict | None:
    """The hyperparameters in which a run differs from its method's defaults for its scenario,
    profile and source ({} for a default run; None when the defaults cannot be resolved)."""
    default = _defaults(row.scenario, row.method, row.profile, row.source)
    if default is None:
        return None
    d, h = json.loads(default), json.loads(row.config_json)["hparams"]
    return {k: v for k, v in h.items() if d.get(k) != v}


def annotate(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with setting, config, is_default and meta_per_class."""
    runs = runs.copy()
    runs["setting"] = setting_labels(runs)
    runs["config"] = runs["config_json"].map(config_id)
    runs["meta_per_class"] = runs["config_json"].map(lambda c: _settings(c).get("meta_per_class"))
    runs["is_default"] = [hparam_diff(r) == {} for r in runs.itertuples(index=False)]
    return runs


def main_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of each (scenario, setting, method)'s rows: its default configuration where it
    ran, else every configuration; each run's ``label`` names its row: the method, with the
    settings and hyperparameters that differ (``params``) where the method has several rows in
    the setting or its row is not the default (``bads (sigma=1)``, ``bads (lr=0.1)`` beside
    ``bads (lr=0.05)`` for two directories that differ in the model's lr)."""
    keep = []
    for _, part in runs.groupby(["scenario", "setting", "method"], sort=False):
        keep.append(part[part["is_default"]] if part["is_default"].any() else part)
    if not keep:
        return runs.iloc[:0].assign(label=pd.Series(dtype=object))
    main = pd.concat(keep)
    params = varying_params(main)
    labels = []
    for i, r in zip(main.index, main.itertuples(index=False), strict=True):
        several = main.loc[(main["scenario"] == r.scenario) & (main["setting"] == r.setting)
                           & (main["method"] == r.method), "config"].nunique() > 1
        extra = params.at[i] if (several or not r.is_default) and params.at[i] else ""
        if several and not extra:
            extra = f"config {r.config}"
        labels.append(r.method + (f" ({extra})" if extra else ""))
    return main.assign(label=labels)


# -- formatting ---------------------------------------------------------------------------------

def natural(text: str) -> tuple:
    """Sort key reading the numbers in ``text`` as numbers (``Dm=5`` before ``Dm=10``)."""
    import re

    return tuple((0, float(p), "") if re.fullmatch(r"\d+(\.\d+)?(e-?\d+)?", p) else (1, 0.0, p)
                 for p in re.split(r"(\d+(?:\.\d+)?(?:e-?\d+)?)", text) if p)


def _fmt(value: float, digits: int = 4) -> str:
    return "" if pd.isna(value) else f"{value:.{digits}f}"


def _cell(mean, std, low, high, n) -> str:
    if pd.isna(mean):
        return ""
    ci = f" [{low:.4f}, {high:.4f}]" if pd.notna(low) else ""
    return f"{mean:.4f} ± {0.0 if pd.isna(std) else std:.4f}{ci} (n={int(n)})"


def _label(row) -> str:
    return row.method + (f" ({row.params})" if row.params and not row.is_default else "")


def _machine(runs: pd.DataFrame) -> str:
    parts = []
    for column, name in (("device", "device"), ("threads", "threads"), ("torch_version", "torch"),
                         ("jobs", "jobs at once")):
        if column in runs:
            values = sorted({f"{v:g}" if isinstance(v, float) else str(v)
                             for v in runs[column].dropna()})
            if values:
                parts.append(f"{name} {'/'.join(values)}")
    return ", ".join(parts)


# -- the builder --------------------------------------------------------------------------------

class ReportBuilder:
    """Builds the Document of ``collected`` into ``folder`` (figures in folder/figures)."""

    def __init__(self, collected: Collected, folder: str | Path, figure_formats: list[str]):
        self.c = collected
        self.folder = Path(folder)
        self.formats = figure_formats or ["png"]
        self.runs = annotate(collected.runs)
        self.ok = self.runs[self.runs["status"] == "ok"]
        self.main = main_runs(self.ok)

    def figure(self, fig, name: str, title: str, caption: str) -> Figure | None:
        if fig is None:
            return None
        return Figure(name, title, save(fig, self.folder / "figures", name, self.formats), caption)

    def document(self, command: str = "") -> Document:
        n_ok = len(self.ok)
        intro = (f"{len(self.runs)} runs ({n_ok} ok) from {', '.join(self.c.dirs)}; drawn from the "
                 "stores alone (runs.csv, curves.csv, weights/, retrain/)."
                 + (f" Generated by `{command}`." if command else "")
                 + " Means are over seeds; [low, high] is the 95% bootstrap interval of the mean "
                 "(expanded percentile, `benchmarks/report/stats.py`); bold marks the best mean "
                 "of a column; #k is the method's rank in its column.")
        doc = Document("dps-bench report", intro)
        board = self.leaderboard()
        if board is not None:
            doc.sections.append(Section("Leaderboard", [board]))
        for scenario in dict.fromkeys(self.runs["scenario"]):
            doc.sections.append(self.scenario_section(scenario))
        return doc

    # one scenario ---------------------------------------------------------------------------

    def scenario_section(self, scenario: str) -> Section:
        runs = self.runs[self.runs["scenario"] == scenario]
        ok = runs[runs["status"] == "ok"]
        metric = str(runs["metric_name"].dropna().iloc[0]) if runs["metric_name"].notna().any() \
            else "metric"
        section = Section(SCENARIO_TITLES.get(scenario, scenario))
        if ok.empty:
            section.items.append(Text("No run of this scenario finished."))
            return section
        summary = self.summary(runs)
        main = summary[summary["main"]]
        section.subsections.append(Section("Final test metric", [self.final_table(main, scenario,
                                                                                    metric)]))
        section.subsections.append(self.cost_section(main, scenario, metric, runs))
        items = [self.curves(scenario, metric)]
        section.subsections.append(Section("Test metric over training", [i for i in items if i]))
        meta = self.meta_size(main, scenario, metric)
        if meta is not None:
            section.subsections.append(Section("Meta-set size", [meta]))
        section.subsections.append(self.weights_section(scenario))
        retrain = self.retrain_section(scenario, metric)
        if retrain is not None:
            section.subsections.append(retrain)
        sens = self.sensitivity(scenario, metric)
        if sens is not None:
            section.subsections.append(sens)
        return section

    def summary(self, runs: pd.DataFrame) -> pd.DataFrame:
        """``summarize`` of the scenario's runs, with setting, label and ``main`` (the row is its
        method's row in the tables)."""
        table = summarize(runs.drop(columns=["setting", "config", "meta_per_class", "is_default"]),
                          self.c.curves[self.c.curves["run_id"].isin(runs["run_id"])])
        by_config = runs.drop_duplicates("config").set_index("config")
        table["setting"] = table["config"].map(by_config["setting"])
        table["is_default"] = table["config"].map(by_config["is_default"]).astype(bool)
        label_of = self.main.drop_duplicates("config").set_index("config")["label"]
        table["main"] = table["config"].isin(label_of.index) & (table["n"] > 0)
        table["label"] = [label_of.get(c, _label(r)) for c, r in
                          zip(table["config"], table.itertuples(index=False), strict=True)]
        return table

    def final_table(self, main: pd.DataFrame, scenario: str, metric: str) -> Table:
        settings = sorted(dict.fromkeys(main["setting"]), key=natural)
        labels = list(dict.fromkeys(in_registry_order(main)["label"]))
        frame = pd.DataFrame({"method": labels})
        best: set[tuple[int, str]] = set()
        ranks = pd.DataFrame(index=labels, columns=settings, dtype=float)
        for s in settings:
            part = main[main["setting"] == s].set_index("label")
            rank = part["final_mean"].rank(ascending=False, method="min")
            ranks[s] = rank
            frame[s] = [(_cell(*part.loc[m, ["final_mean", "final_std", "ci_low", "ci_high", "n"]])
                         + f" #{int(rank[m])}") if m in part.index and pd.notna(rank.get(m)) else ""
                        for m in labels]
            top = part["final_mean"].max()
            best |= {(i, s) for i, m in enumerate(labels)
                     if m in part.index and part.at[m, "final_mean"] == top}
        frame["mean rank"] = [_fmt(ranks.loc[m].mean(), 2) for m in labels]
        degenerate = main.groupby("label").agg(d=("n_degenerate", "sum"), n=("n", "sum"),
                                               w=("weights", lambda w: (w != "").any()))
        frame["degenerate weights"] = [f"{int(degenerate.at[m, 'd'])}/{int(degenerate.at[m, 'n'])}"
                                       if degenerate.at[m, "w"] else "n/a" for m in labels]
        several = len(settings) > 1
        verdicts = main[main["selection"] != ""].groupby("label").apply(
            lambda part: ", ".join(f"{v} ({s})" if several else v
                                   for v, s in zip(part["selection"], part["setting"], strict=True)),
            include_groups=False)
        frame["beats its controls"] = [verdicts.get(m, "") for m in labels]
        caption = (f"Final test {metric} (last iterate), mean ± std over seeds [95% interval] "
                   "(n seeds) #rank in the column; mean rank: over the columns the method ran "
                   "in (the leaderboard compares across blocks). 'degenerate weights': runs "
                   "whose final weights "
                   "collapsed or went uniform. 'beats its controls': the paired comparison with "
                   "the same method with selection switched off (yes / NO / unresolved; "
                   "`benchmarks/report/controls.py`), per setting.")
        return Table(f"{scenario}-final", f"{scenario}: final test {metric}", frame, caption, best)

    def cost_section(self, main: pd.DataFrame, scenario: str, metric: str,
                     runs: pd.DataFrame) -> Section:
        rows = []
        main = in_registry_order(main, by_setting=True)
        base = main[main["label"] == "train_only"].drop_duplicates("setting").set_index("setting")
        for r in main.itertuples(index=False):
            t0 = base["time_ms"].get(r.setting, float("nan"))
            m0 = base["peak_mb"].get(r.setting, float("nan"))
            rows.append({"setting": r.setting, "method": r.label,
                         "time per step (ms)": _fmt(r.time_ms, 2),
                         "time ×train_only": _fmt(r.time_ms / t0, 2),
                         "peak memory (MB)": _fmt(r.peak_mb, 2),
                         "memory ×train_only": _fmt(r.peak_mb / m0, 2),
                         "timing": getattr(r, "timing", "")})
        frame = pd.DataFrame(rows)
        caption = (f"Median time per training step (evaluation excluded) and peak memory of a "
                   f"step, and both over train_only's in the same setting; {_machine(runs)}. "
                   "'contended': some runs trained beside others (--jobs > 1) or on a busy "
                   "machine, so compare ratios within one table only.")
        items: list = [Table(f"{scenario}-cost", f"{scenario}: cost per step", frame, caption)]
        counts = main.groupby("setting").size()
        primary = counts.idxmax() if len(counts) else None
        if primary is not None:
            part = main[main["setting"] == primary].assign(method=lambda t: t["label"])
            fig = figures.cost_figure(part, metric, f"{scenario}, {primary}: cost against quality")
            item = self.figure(fig, f"{scenario}-cost", f"{scenario}: cost against quality",
                               f"Final test {metric} against time and memory per step "
                               f"({primary}); error bars: std over seeds; log axes.")
            if item:
                items.append(item)
        return Section("Cost per step (the paper's Table 1)", items)

    def curves(self, scenario: str, metric: str) -> Figure | None:
        main = self.main[self.main["scenario"] == scenario]
        test = self.c.curves[(self.c.curves["split"] == "test")
                             & self.c.curves["run_id"].isin(main["run_id"])]
        rows = main[["run_id", "setting", "label", "seed"]].rename(columns={"label": "method"})
        frame = in_registry_order(test.merge(rows, on="run_id"))
        fig = figures.curves_figure(frame, metric, f"{scenario}: test {metric} over training")
        return self.figure(fig, f"{scenario}-curves", f"{scenario}: test {metric} over training",
                           "Mean over seeds (line) ± one standard deviation (band), a panel per "
                           "setting.")

    def meta_size(self, main: pd.DataFrame, scenario: str, metric: str) -> Figure | None:
        runs = self.main[self.main["scenario"] == scenario]
        if runs["meta_per_class"].nunique() < 2:
            return None
        runs = runs.assign(base=runs["setting"].str.replace(r" · meta_per_class=\d+", "",
                                                            regex=True))
        table = (runs.groupby(["base", "label", "meta_per_class"], sort=False)["final_metric"]
                 .agg(final_mean="mean", final_std="std").reset_index()
                 .rename(columns={"label": "method"}))
        sizes = table.groupby(["base", "method"])["meta_per_class"].transform("nunique")
        table = table[sizes > 1]
        fig = figures.meta_size_figure(table, metric, f"{scenario}: final {metric} against |Dm|")
        return self.figure(fig, f"{scenario}-meta-size", f"{scenario}: meta-set size",
                           "Final test metric against meta examples per class (the paper's "
                           "Fig. 3), a panel per source and profile; error bars: std over seeds.")

    def weights_section(self, scenario: str) -> Section:
        section = Section("Weights")
        main = self.main[self.main["scenario"] == scenario]
        counts = main.groupby("setting").size()
        if counts.empty:
            return section
        primary = counts.idxmax()
        runs = main[main["setting"] == primary]
        w = self.c.curves[(self.c.curves["split"] == "weights")
                          & self.c.curves["run_id"].isin(runs["run_id"])]
        means = w[w["metric_name"].astype(str).str.startswith("mean_weight:")]
        labels = runs[["run_id", "label"]].rename(columns={"label": "method"})
        frame = in_registry_order(means.merge(labels, on="run_id"))
        frame["group"] = frame["metric_name"].str.split(":", n=1).str[1]
        item = self.figure(figures.group_weights_figure(frame, f"{scenario}, {primary}: mean "
                                                                "weight per group"),
                           f"{scenario}-group-weights", f"{scenario}: mean weight per group",
                           f"Mean weight of each group over training ({primary}), mean over "
                           "seeds; weights on each method's own scale.")
        if item:
            section.items.append(item)
        finals = []
        for r in runs.itertuples(index=False):
            weights = self.c.weights(str(r.run_id))
            if weights is not None:
                finals.append(weights.assign(method=r.label))
        if finals:
            frame = in_registry_order(pd.concat(finals, ignore_index=True))
            item = self.figure(figures.weight_histograms(frame, f"{scenario}, {primary}: final "
                                                                "weights by group"),
                               f"{scenario}-weight-histograms", f"{scenario}: final weights",
                               "Histogram of the final weights, each group's own density, pooled "
                               "over seeds (symmetric-log density axis).")
            if item:
                section.items.append(item)
        shares = in_registry_order(w[w["metric_name"] == "data_share"].merge(labels, on="run_id"))
        if not shares.empty:
            shares = shares.rename(columns={"value": "data_share"})
            item = self.figure(figures.gradient_shares_figure(shares, f"{scenario}, {primary}: "
                                                                      "BADS's gradient on φ"),
                               f"{scenario}-gradient-shares", f"{scenario}: BADS's gradient shares",
                               "The data term's and the prior's shares of ‖∇φ U‖ over training "
                               "(mean over seeds): a data share near 0 means the prior alone moves "
                               "the weights.")
            if item:
                section.items.append(item)
        quality = self.quality_table(scenario)
        if quality is not None:
            section.items.insert(0, quality)
        per_category = self.category_table(runs, scenario, primary)
        if per_category is not None:
            section.items.insert(1 if quality is not None else 0, per_category)
        return section

    def category_table(self, runs: pd.DataFrame, scenario: str, setting: str) -> Table | None:
        """Mean weight per training category relative to the method's mean weight (which
        categories a method prefers), mean over seeds; None without per-example categories."""
        c = category_weights(runs, self.c.weights)
        if c.empty:
            return None
        c = c.merge(runs[["run_id", "label"]], on="run_id").rename(columns={"label": "method"})
        favoured = favoured_group(c["group"].drop_duplicates())
        groups = c.drop_duplicates("category").set_index("category")["group"]
        order = sorted(groups.index, key=lambda k: (groups[k] != favoured, natural(str(k))))
        table = (c.groupby(["method", "category"])["relative"].mean().unstack("category")
                 .reindex(columns=order))
        table = in_registry_order(table.reset_index())
        frame = table[["method"]].copy()
        for category in order:
            frame[f"{category} ({groups[category]})"] = table[category].map(lambda v: _fmt(v, 2))
        marked = (f"columns marked ({favoured}) are the categories related to the targets"
                  if favoured else "no category is related to the targets")
        caption = (f"Which categories of Dt each method weights up ({setting}): a category's mean "
                   "final weight divided by the method's mean weight over all of Dt (1 = no "
                   f"preference; {marked}), mean over seeds.")
        return Table(f"{scenario}-category-weights", f"{scenario}: weight per category", frame,
                     caption)

    def quality_table(self, scenario: str) -> Table | None:
        main = self.main[self.main["scenario"] == scenario]
        q = quality_of_runs(main, self.c.weights, _scenario_beta)
        if q.empty:
            return None
        q = in_registry_order(q.merge(main[["run_id", "label", "setting"]], on="run_id")
                              .rename(columns={"label": "method"}), by_setting=True)
        rows = []
        for (setting, method), part in q.groupby(["setting", "method"], sort=False):
            rows.append({"setting": setting, "method": method,
                         "favoured": part["favoured"].iloc[0],
                         "AUROC": f"{part['auroc'].mean():.3f} ± {part['auroc'].std():.3f}"
                         if len(part) > 1 else _fmt(part["auroc"].mean(), 3),
                         "precision@⌊β·N_t⌋": f"{part['precision'].mean():.3f} ± "
                                              f"{part['precision'].std():.3f}"
                         if len(part) > 1 else _fmt(part["precision"].mean(), 3),
                         "k": int(part["k"].iloc[0]) if pd.notna(part["k"].iloc[0]) else "",
                         "base rate": _fmt(part["base_rate"].iloc[0], 3), "n": len(part)})
        frame = pd.DataFrame(rows)
        best = set()
        for column in ("AUROC", "precision@⌊β·N_t⌋"):
            lead = frame.groupby("setting")[column].transform(
                lambda s: s.map(lambda t: float(t.split()[0]) if t else float("nan")).max())
            values = frame[column].map(lambda t: float(t.split()[0]) if t else float("nan"))
            best |= {(i, column) for i in frame.index[values == lead]}
        caption = ("How well each method's final weights find the favoured group: AUROC "
                   "(½ = chance) and the share of the favoured group among the ⌊β·N_t⌋ highest "
                   "weights (ties shared out; the base rate is what equal weights score), mean "
                   "± std over seeds (`benchmarks/report/quality.py`).")
        return Table(f"{scenario}-weight-quality", f"{scenario}: weight quality", frame, caption,
                     best)

    def retrain_section(self, scenario: str, metric: str) -> Section | None:
        r = self.c.retrain
        if r.empty:
            return None
        r = r[(r["scenario"] == scenario) & (r["status"] == "ok")]
        if r.empty:
            return None
        r = r.copy()
        setting_of = {_setting_key(row): row.setting for row in self.runs.itertuples(index=False)}
        r["setting"] = [setting_of.get(_setting_key(row), f"{row.source} · {row.profile}")
                        for row in r.itertuples(index=False)]
        label_of = self.main.set_index("run_id")["label"]
        r["method"] = [RANDOM if m == RANDOM else label_of.get(str(i), f"{m} (other config)")
                       for m, i in zip(r["source_method"], r["source_run_id"], strict=True)]
        r = in_registry_order(r, by_setting=True)
        table = (r.groupby(["setting", "method", "fraction"], sort=False)
                 .agg(final_mean=("final_metric", "mean"), final_std=("final_metric", "std"),
                      n=("final_metric", "count"), share=("favoured_share", "mean"))
                 .reset_index())
        fractions = sorted(table["fraction"].unique())
        rows, best = [], set()
        for (setting, method), part in table.groupby(["setting", "method"], sort=False):
            row = {"setting": setting, "weights of": method}
            for f in fractions:
                hit = part[part["fraction"] == f]
                if hit.empty:
                    row[_share(f)] = ""
                    continue
                h = hit.iloc[0]
                std = 0.0 if pd.isna(h["final_std"]) else h["final_std"]
                row[_share(f)] = (f"{h['final_mean']:.4f} ± {std:.4f} ({h['share']:.0%} "
                                         f"fav., n={int(h['n'])})")
            rows.append(row)
        frame = pd.DataFrame(rows)
        for f in fractions:
            column = _share(f)
            values = frame[column].map(lambda t: float(t.split()[0]) if t else float("nan"))
            lead = values.groupby(frame["setting"]).transform("max")
            best |= {(i, column) for i in frame.index[values == lead]}
        caption = (f"Test {metric} of a fresh train_only model trained on only the given share "
                   "of Dt with the highest final weights of each method, against the same share "
                   "drawn at random ('random'); mean ± std over seeds, with the share of the "
                   "favoured group among the kept points (`dps-bench retrain`).")
        items: list = [Table(f"{scenario}-retrain", f"{scenario}: retraining on the selection",
                             frame, caption, best)]
        fig = figures.retrain_figure(table, metric, f"{scenario}: retraining on the top weights")
        item = self.figure(fig, f"{scenario}-retrain", f"{scenario}: retraining on the selection",
                           "Final test metric of a model trained on the top fraction of Dt by "
                           "each method's weights, and on a random fraction (dashed).")
        if item:
            items.append(item)
        return Section("Retraining on the selection", items)

    def sensitivity(self, scenario: str, metric: str) -> Section | None:
        ok = self.ok[self.ok["scenario"] == scenario]
        rows = []
        for r in ok.itertuples(index=False):
            diff = hparam_diff(r)
            if diff is None or len(diff) > 1:
                continue
            rows.append({"setting": r.setting, "method": r.method, "seed": r.seed,
                         "profile": r.profile, "source": r.source,
                         "final_metric": r.final_metric, "diff": diff,
                         "hparams": json.loads(r.config_json)["hparams"]})
        if not rows:
            return None
        frame = pd.DataFrame(rows)
        points = []
        for (setting, method), part in frame.groupby(["setting", "method"], sort=False):
            swept = {k for d in part["diff"] for k in d}
            for param in sorted(swept):
                use = part[part["diff"].map(lambda d, p=param: d == {} or set(d) == {p})]
                values = use["hparams"].map(lambda h, p=param: h.get(p))
                if values.nunique() < 2 or not all(isinstance(v, (int, float)) and v > 0
                                                   for v in values):
                    continue
                stats = use.assign(value=values).groupby("value")["final_metric"].agg(
                    final_mean="mean", final_std="std", n="count").reset_index()
                default = json.loads(_defaults(scenario, method, part["profile"].iloc[0],
                                               part["source"].iloc[0]) or "{}")
                for s in stats.itertuples(index=False):
                    points.append({"setting": setting, "method": method, "param": param,
                                   "value": float(s.value), "final_mean": s.final_mean,
                                   "final_std": s.final_std, "n": int(s.n),
                                   "default": float(s.value) == float(default.get(param, -1))})
        if not points:
            return None
        table = pd.DataFrame(points)
        frame = table.assign(**{"final (mean ± std)": [f"{m:.4f} ± {0 if pd.isna(s) else s:.4f}"
                                                        for m, s in zip(table["final_mean"],
                                                                        table["final_std"],
                                                                        strict=True)],
                                "value": table["value"].map(lambda v: f"{v:g}"),
                                "default": table["default"].map({True: "default", False: ""})})
        frame = frame[["setting", "method", "param", "value", "final (mean ± std)", "n", "default"]]
        items: list = [Table(f"{scenario}-sensitivity", f"{scenario}: sensitivity", frame,
                             f"Final test {metric} with one hyperparameter changed from its "
                             "default at a time (the paper's Fig. 10).")]
        for setting in dict.fromkeys(table["setting"]):
            part = table[table["setting"] == setting]
            slug = setting.replace(" · ", "-").replace("=", "").replace(" ", "")
            item = self.figure(figures.sensitivity_figure(part, metric, f"{scenario}, {setting}"),
                               f"{scenario}-sensitivity-{slug}", f"{scenario}: sensitivity "
                               f"({setting})", "Final test metric against each swept "
                               "hyperparameter; circled: the default; error bars: std over seeds.")
            if item:
                items.append(item)
        return Section("Sensitivity (the paper's Fig. 10)", items)

    def leaderboard(self) -> Table | None:
        main = self.main
        if main.empty:
            return None
        means = (main.groupby(["scenario", "setting", "label"], sort=False)["final_metric"].mean()
                 .dropna().rename_axis(["scenario", "setting", "method"]))
        ranks = means.groupby(level=["scenario", "setting"]).rank(ascending=False, method="average")
        blocks = ranks.groupby(level=["scenario", "setting"]).size()
        if len(blocks) < 1:
            return None
        per_method = ranks.groupby(level="method").agg(["mean", "count"]).sort_values("mean")
        frame = pd.DataFrame({"method": per_method.index,
                              "mean rank": per_method["mean"].map(lambda v: f"{v:.2f}").to_numpy(),
                              "blocks": per_method["count"].astype(int).to_numpy()})
        caption = (f"Each method's rank by mean final test metric (1 = best, ties averaged) in "
                   f"every block (scenario and setting) it ran in, averaged; {len(blocks)} "
                   "blocks: " + "; ".join(f"{s} / {t}" for s, t in blocks.index) + ".")
        top = per_method["mean"].min()
        best = {(i, "mean rank") for i, v in enumerate(per_method["mean"]) if v == top}
        return Table("leaderboard", "Leaderboard", frame, caption, best)


def in_registry_order(frame: pd.DataFrame, column: str = "method", by_setting: bool = False
                      ) -> pd.DataFrame:
    """``frame`` sorted (stably) by the registry's order of ``column``'s methods (``random``,
    the retraining baseline, last); with ``by_setting``, by setting first (numbers as numbers)."""
    from methods import list_methods

    rank = {m: i for i, m in enumerate(list_methods())}
    key = frame[column].map(lambda m: rank.get(str(m).split(" (", 1)[0], len(rank)))
    frame = frame.assign(_rank=key).sort_values("_rank", kind="stable").drop(columns="_rank")
    if by_setting:
        order = {s: i for i, s in enumerate(sorted(dict.fromkeys(frame["setting"]), key=natural))}
        frame = frame.sort_values("setting", key=lambda c: c.map(order), kind="stable")
    return frame


def _share(fraction: float) -> str:
    """'5% of Dt', '0.1% of Dt': a retraining column's name."""
    return f"{fraction * 100:g}% of Dt"


def _setting_key(row) -> str:
    """A run's source, profile and scenario settings: the retraining runs of a setting share it."""
    return json.dumps([row.scenario, row.source, row.profile, _settings(row.config_json)],
                      sort_keys=True)


def _scenario_beta(row) -> float | None:
    """The scenario's shared β for a method without its own."""
    from ..scenarios import get_scenario

    try:
        scenario = get_scenario(row.scenario)
    except (KeyError, ValueError):
        return None
    return scenario.hparam_defaults(row.method, {"beta"}, row.profile, row.source).get("beta")


def write_report(dirs: list[str], to: str | Path, formats: list[str] | None = None,
                 figure_formats: list[str] | None = None, command: str = "") -> list[Path]:
    """Build the report of ``dirs`` into ``to``: REPORT.md always; tables/<name>.<fmt> for md,
    csv and tex; report.html for html; figures/<name>.<fmt> for each figure format. Returns
    the files written (REPORT.md and report.html first)."""
    from .markdown import write_markdown, write_tables

    formats = list(formats or ["md", "csv", "tex", "html"])
    folder = Path(to)
    folder.mkdir(parents=True, exist_ok=True)
    builder = ReportBuilder(collect(dirs), folder, list(figure_formats or ["png"]))
    doc = builder.document(command)
    written = [write_markdown(doc, folder)]
    if "html" in formats:
        from .html import write_html

        written.append(write_html(doc, folder / "report.html"))
    written += write_tables(doc, folder, [f for f in formats if f != "html"])
    written += [p for f in doc.figures() for p in f.files.values()]
    return written
