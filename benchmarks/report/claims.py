"""The paper's claims in words, checked against results directories (``dps-bench claims``).

Each claim is a function of the collected runs that returns what the suite's results show and a
verdict: ``holds``, ``does not hold``, ``mixed`` (holds in some blocks, not in others) or ``no
evidence`` (no block of these directories tests it, e.g. no MNIST run with 5 meta examples per
class). A verdict is a plain comparison of means over seeds; where a paired comparison over seeds
is possible it is shown with its 95% interval (``stats``), and with fewer than 5 seeds a
comparison counts as unresolved there. Nothing is rerun; the directories each claim drew on are
listed beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .build import Collected, annotate, main_runs
from .quality import quality_of_runs
from .stats import MIN_SEEDS, compare, mean_ci

NON_DPS = ("train_only", "mixing", "meta_only", "dup_meta", "random_select")
CONTROLS = ("bads_prior_only", "bads_frozen", "blo_frozen")  # the suite's, not the paper's


@dataclass
class Finding:
    claim: str
    paper: str  # where the paper says it
    shows: str
    verdict: str
    folders: list[str]


def _by_setting(runs: pd.DataFrame, scenario: str) -> dict[str, pd.DataFrame]:
    part = runs[(runs["scenario"] == scenario) & (runs["status"] == "ok")]
    return dict(tuple(part.groupby("setting", sort=False))) if len(part) else {}


def _mean(block: pd.DataFrame, method: str, column: str = "final_metric") -> float:
    values = block.loc[block["method"] == method, column]
    return float(values.mean()) if len(values) else float("nan")


def _paired(block: pd.DataFrame, a: str, b: str) -> str:
    return _paired_verdict(block, a, b)[0]


def _paired_verdict(block: pd.DataFrame, a: str, b: str) -> tuple[str, str]:
    """(text, verdict) of the paired difference a − b over their common seeds; the verdict is
    ``stats.compare``'s (better, not better, unresolved)."""
    x = block[block["method"] == a].set_index("seed")["final_metric"]
    y = block[block["method"] == b].set_index("seed")["final_metric"]
    common = x.index.intersection(y.index)
    if not len(common):
        return "no common seed", "unresolved"
    diff = (x.loc[common] - y.loc[common]).to_numpy()
    low, high = mean_ci(diff)
    ci = f" [{low:+.3f}, {high:+.3f}]" if not np.isnan(low) else ""
    verdict = compare(diff)
    return f"{diff.mean():+.3f}{ci} over {len(diff)} seeds, {verdict}", verdict


WEAK = "holds on the means; not resolved with these seeds (fewer than 5, or an interval with 0)"


def _verdict(results: list, weak: str = WEAK) -> str:
    """Blocks' outcomes (True, False, or "means": the claim holds on the means but the evidence
    is not conclusive, ``weak`` says why) as one verdict."""
    if not results:
        return "no evidence"
    if all(r is True for r in results):
        return "holds"
    if all(r is False for r in results):
        return "does not hold"
    if all(r in (True, "means") for r in results):
        return weak
    return "mixed"


def claim_cost(runs: pd.DataFrame) -> Finding:
    lines, results, folders = [], [], set()
    for scenario in dict.fromkeys(runs["scenario"]):
        for setting, block in _by_setting(runs, scenario).items():
            methods = set(block["method"])
            if not {"train_only", "bads", "blo"} <= methods:
                continue
            base_t = block.loc[block["method"] == "train_only", "time_per_step_ms"].median()
            base_m = block.loc[block["method"] == "train_only", "peak_mem_mb"].max()
            bt = block.loc[block["method"] == "bads", "time_per_step_ms"].median() / base_t
            bm = block.loc[block["method"] == "bads", "peak_mem_mb"].max() / base_m
            lt = block.loc[block["method"] == "blo", "time_per_step_ms"].median() / base_t
            lm = block.loc[block["method"] == "blo", "peak_mem_mb"].max() / base_m
            ok = bt < lt and bm < lm and bt <= 1.5
            jobs = pd.to_numeric(block.get("jobs", pd.Series(dtype=float)), errors="coerce")
            contended = " (timed beside other runs, --jobs > 1)" if (jobs > 1).any() else ""
            results.append(("means" if contended else True) if ok else False)
            folders |= set(block["folder"])
            lines.append(f"{scenario} {setting}: BADS {bt:.2f}x time, {bm:.2f}x memory; BLO "
                         f"{lt:.2f}x time, {lm:.2f}x memory (of train_only){contended}")
    return Finding("BADS costs about as much as non-DPS training (time and memory per step), "
                   "while BLO needs about twice the time and 2.5x the memory",
                   "Table 1, Sec. 5.1", "; ".join(lines) or "no block ran train_only, bads and "
                   "blo together",
                   _verdict(results, "holds on timings taken beside other runs (--jobs > 1): "
                                     "compare results/benchmarks/COST.md")
                   + (" (criterion: BADS ≤ 1.5x the time of train_only, below BLO in time and "
                      "memory)" if results else ""),
                   sorted(folders))


def claim_meta5(runs: pd.DataFrame) -> Finding:
    """Among the paper's methods (the suite's controls are reported beside them, not counted),
    only BADS and BLO exceed 90% with Dm 5 per class on MNIST, and BADS beats BLO."""
    lines, results, folders, partial = [], [], set(), False
    mnist = runs[(runs["source"] == "mnist") & (runs["meta_per_class"] == 5)]
    for setting, block in _by_setting(mnist, "balancing").items():
        means = block.groupby("method")["final_metric"].mean()
        if "bads" not in means:
            continue
        paper = means[[m for m in means.index if m not in CONTROLS]]
        above = sorted(paper[paper > 0.9].index)
        controls = ", ".join(f"{m} {means[m]:.3f}" for m in means.index if m in CONTROLS)
        line = (f"{setting} ({', '.join(f'{m} {v:.3f}' for m, v in paper.items())}): above 90%: "
                f"{', '.join(above) or 'none'}")
        ok = set(above) <= {"bads", "blo"} and "bads" in above
        outcome: bool | str = bool(ok)
        if "blo" in means:
            text, verdict = _paired_verdict(block, "bads", "blo")
            ok = ok and means["bads"] > means["blo"]
            outcome = (True if verdict == "better" else "means") if ok else False
            line += f"; BADS − BLO {text}"
        else:
            partial = True
            line += "; BLO did not run here, so 'BADS beats BLO' is untested"
        if controls:
            line += f" (controls, not in the paper: {controls})"
        results.append(outcome)
        folders |= set(block["folder"])
        lines.append(line)
    verdict = _verdict(results)
    if partial and verdict == "holds":
        verdict = "holds as far as tested (no BLO run at this size)"
    return Finding("With 5 meta examples per class on MNIST, only BADS and BLO exceed 90% "
                   "accuracy, and BADS beats BLO", "Sec. 5.1, Fig. 3",
                   "; ".join(lines) or "no MNIST balancing run with meta_per_class=5 here",
                   verdict, sorted(folders))


def claim_noise(runs: pd.DataFrame) -> Finding:
    lines, results, folders = [], [], set()
    for setting, block in _by_setting(runs, "denoising").items():
        methods = set(block["method"])
        base = [m for m in NON_DPS if m in methods]
        if "bads" not in methods or "blo" not in methods or not base:
            continue
        means = block.groupby("method")["final_metric"].mean()
        best = max(base, key=lambda m: means[m])
        ok = means["bads"] > means["blo"] and means["bads"] > means[best]
        vs_blo, blo_verdict = _paired_verdict(block, "bads", "blo")
        vs_best, best_verdict = _paired_verdict(block, "bads", best)
        resolved = blo_verdict == "better" and best_verdict == "better"
        results.append((True if resolved else "means") if ok else False)
        folders |= set(block["folder"])
        lines.append(f"{setting} ({block['folder'].iloc[0]}): BADS {means['bads']:.3f}, BLO "
                     f"{means['blo']:.3f}, best non-DPS {best} {means[best]:.3f}; BADS − BLO "
                     f"{vs_blo}; BADS − {best} {vs_best}")
    return Finding("Under label noise, BADS is well ahead of BLO and of the non-DPS methods",
                   "Sec. 5.2, Table 3", "; ".join(lines) or "no denoising block ran bads, blo "
                   "and a non-DPS method together", _verdict(results), sorted(folders))


def claim_weights(runs: pd.DataFrame, collected: Collected) -> Finding:
    """BADS's final weights separate the favoured group (AUROC above ½, its interval too); the
    prior-only control's AUROC is shown beside it, since a weight network can separate the
    groups through the prior alone (``controls.py``)."""
    lines, results, folders = [], [], set()
    family = runs[runs["method"].isin(["bads", "bads_prior_only"]) & (runs["status"] == "ok")]
    q = quality_of_runs(family, collected.weights)
    if not q.empty:
        q = q.merge(family[["run_id", "method", "scenario", "setting", "folder"]], on="run_id")
        for (scenario, setting), part in q.groupby(["scenario", "setting"], sort=False):
            values = part.loc[part["method"] == "bads", "auroc"].dropna().to_numpy()
            if not len(values):
                continue
            low, high = mean_ci(values)
            above = not np.isnan(low) and low > 0.5  # the interval excludes chance
            results.append(True if above and len(values) >= MIN_SEEDS else "means" if above
                           else False)
            folders |= set(part["folder"])
            ci = f" [{low:.3f}, {high:.3f}]" if not np.isnan(low) else ""
            control = part.loc[part["method"] == "bads_prior_only", "auroc"].dropna()
            beside = (f"; bads_prior_only (no data term) {control.mean():.3f}" if len(control)
                      else "")
            lines.append(f"{scenario} {setting}: AUROC {values.mean():.3f}{ci} for "
                         f"{part['favoured'].iloc[0]} (n={len(values)}){beside}")
    return Finding("BADS's weights favour the useful points (minority / clean / target)",
                   "Sec. 5, weight plots (Figs. 4-6)",
                   "; ".join(lines) or "no BADS run with stored weights here",
                   _verdict(results) + (" (criterion: the AUROC's interval above 0.5, with 5 "
                                        "seeds or more to hold; where the prior-only control "
                                        "matches it, the separation does not come from the "
                                        "data term)" if results else ""),
                   sorted(folders))


CLAIMS: list[Callable] = [claim_cost, claim_meta5, claim_noise]


def check_claims(collected: Collected) -> list[Finding]:
    """Every claim, checked against the default-configuration runs of ``collected``."""
    runs = main_runs(annotate(collected.runs))
    runs = runs.assign(method=runs["label"])  # "bads" is its default row only, never pooled
    return [c(runs) for c in CLAIMS] + [claim_weights(runs, collected)]


def claims_markdown(findings: list[Finding], command: str = "") -> str:
    lines = ["# The paper's claims, checked", "",
             "Generated by " + (f"`{command}`" if command else "`dps-bench claims`") + " from the "
             "reference results (nothing rerun). Verdicts compare means over seeds; a paired "
             "difference shows its 95% interval and whether it resolves (5 seeds or more). "
             "Short CPU profiles are not the paper's protocol: a claim that does not hold on them "
             "is a finding about that profile, not a refutation of the paper.", "",
             "| claim | paper | what these results show | verdict | from |", "|---|---|---|---|---|"]
    for f in findings:
        cell = [f.claim, f.paper, f.shows, f.verdict, ", ".join(f"`{d}`" for d in f.folders)]
        lines.append("| " + " | ".join(c.replace("|", r"\|") for c in cell) + " |")
    return "\n".join(lines) + "\n"
