"""results/benchmarks/COST.md: per-step cost of every method, as ratios within one run."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pandas as pd
import torch

from benchmarks.report import to_markdown

FIELDS = ("scenario", "source", "case", "device", "threads", "peak_mb", "prepare_s")  # extra_info
OUT = Path(os.environ.get("DPS_BENCH_OUT", Path(__file__).resolve().parents[2] / "results"
                                            / "benchmarks"))
COST_FILE = os.environ.get("DPS_BENCH_COST", "COST.md")  # tox -e bench-gpu: COST-cuda.md


def results_from_json(path: Path) -> dict[tuple[str, str], dict]:
    """The step-cost measurements of a pytest-benchmark JSON file (``--benchmark-json``), keyed
    like ``test_step_cost.RESULTS``: the median time and every field the COST table needs."""
    data = json.loads(Path(path).read_text())
    out = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if not all(k in info for k in FIELDS):
            continue  # not a step-cost benchmark (e.g. scaling)
        out[(info["scenario"], info["case"])] = {"ms": bench["stats"]["median"] * 1e3, **info}
    return out


def cost_frame(results: dict[tuple[str, str], dict]) -> pd.DataFrame:
    rows = []
    for (scenario, case), r in results.items():
        base = results.get((scenario, "train_only"), {})
        limit = results.get((scenario, "bads_limit"), {})
        rows.append({
            "method": case, "scenario": f"{scenario} ({r['source']})", "ms/step": r["ms"],
            "x train_only": r["ms"] / base["ms"] if base else float("nan"),
            "x BADS limit": r["ms"] / limit["ms"] if limit else float("nan"),
            "peak MB": r["peak_mb"],
            "mem x train_only": r["peak_mb"] / base["peak_mb"] if base else float("nan"),
            "mem x BADS limit": r["peak_mb"] / limit["peak_mb"] if limit else float("nan"),
            "offline s": round(r["prepare_s"], 3),
        })
    return pd.DataFrame(rows)


def write_cost_table(results: dict[tuple[str, str], dict], path: Path,
                     checks: dict[str, dict] | None = None, bound: float = 1.15,
                     peers: dict[tuple[str, str], dict] | None = None,
                     peer_bound: float = 1.05) -> None:
    """COST.md from the step-cost benchmarks, with the BADS-limit check's own measurements and the
    side-by-side timings against peer libraries (torchopt)."""
    any_result = next(iter(results.values()), None) or next(iter((peers or {}).values()))
    device = any_result["device"]
    name = (torch.cuda.get_device_name(0) if device.startswith("cuda")
            else f"{platform.processor() or platform.machine()}, {any_result['threads']} threads")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# Per-step cost ({device}: {name}; torch {torch.__version__})\n\n"
    if results:
        text += ("Median wall time of one `method.step` and its peak memory, from one run of "
                 "`tox -e bench`; ratios are within that run. `bads_limit` is a plain SGD step on "
                 "|Bt| + |Bm| examples, the physical limit of a BADS step. `offline s` is a "
                 "method's offline scoring before training (CDS, ClassAct's reference model).\n\n"
                 + to_markdown(cost_frame(results), 3) + "\n")
    for scenario, c in (checks or {}).items():
        verdict = "pass" if max(c["time_ratio"], c["mem_ratio"]) <= bound else "FAIL"
        text += (f"\n**BADS-limit check, {scenario}** ({verdict}, bound {bound}x): BADS "
                 f"{c['ms']['bads']:.3f} ms vs the limit's {c['ms']['bads_limit']:.3f} ms per "
                 f"step, **{c['time_ratio']:.3f}x** the time, timed in {c['blocks']} alternating "
                 f"blocks of {c['block_steps']} steps each (medians); peak memory "
                 f"**{c['mem_ratio']:.3f}x**.\n")
    if peers:
        text += ("\n## Against the library a user would pick instead (torchopt)\n\n"
                 "The same model, initial state, batches and weights (checked equal before timing) "
                 "through the suite's method and through the same algorithm written with "
                 "torchopt (`torchopt.MetaSGD`, `extract_state_dict`/`recover_state_dict`, as in "
                 "its L2R example); timed in alternating blocks; the bench fails if the suite is "
                 f"more than {peer_bound}x slower.\n\n" + to_markdown(peer_frame(peers, peer_bound), 3)
                 + "\n")
    path.write_text(text)


def peer_frame(peers: dict[tuple[str, str], dict], bound: float) -> pd.DataFrame:
    rows = []
    for (scenario, method), r in peers.items():
        for backend, ms in r["suite_ms"].items():
            ratio = ms / r["peer_ms"]
            rows.append({"method": method, "scenario": f"{scenario} ({r['source']})",
                         "suite backend": backend, "suite ms": ms, "torchopt ms": r["peer_ms"],
                         "suite / torchopt": ratio,
                         "verdict": ("pass" if ratio <= bound else "FAIL")
                         if backend == r["checked"] else "(not checked)"})
    return pd.DataFrame(rows)
