"""Wall time of one grid through each sweep backend, and one BADS run in 1 and N processes.

    python -m benchmarks.backends_timing --out results/distributed

1. The grid (``--methods`` x ``--seeds`` on ``balancing``, quick profile) through ``--backend
   local`` (sequential), ``local --jobs 2`` and ``--backend ray --jobs 2``, each into a fresh
   store: wall time of the whole command (Ray's start included) and whether every run's metrics
   equal the sequential ones.
2. One ``bads`` run (``--ddp-steps`` steps, each global batch of ``--ddp-batches``) in one
   process and under ``torchrun
   --nproc-per-node N --ddp`` with the same global batch: the median time per step (each rank's)
   and the largest relative difference of any logged training value (every 10 steps), up to step
   ``--early`` and over the whole run. The two agree to rounding for the first ~80 steps; then
   BADS's dynamics (σ = 1e-5 makes the prior stiff) amplify rounding differences, as they do
   between one process with 1 and with 2 threads.

Writes OUT/backends.md and OUT/backends.csv. Timings on a shared 2-core machine are noisy:
compare within one run of this script; the thread count (1 per run) is recorded.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch


def _cli(args: list[str], cwd: Path, ranks: int = 0) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    head = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
             f"--nproc-per-node={ranks}", "-m", "benchmarks.cli"] if ranks
            else [sys.executable, "-m", "benchmarks.cli"])
    started = time.perf_counter()
    done = subprocess.run(head + args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(args)}\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started


def _metrics(store: Path) -> pd.DataFrame:
    runs = pd.read_csv(store / "runs.csv")
    return runs.set_index("run_id")[["method", "seed", "status", "final_metric"]].sort_index()


def _markdown(frame: pd.DataFrame) -> str:
    """``frame`` as the report's markdown table, floats to 3 significant digits, blanks empty."""
    from .report import to_markdown

    cells = frame.astype(object).where(frame.notna(), "")
    return to_markdown(cells.map(lambda v: f"{v:.3g}" if isinstance(v, float) else v))


def compare_stores(pairs: list[tuple[str, str]]) -> str:
    """A markdown table: for each (A, B) pair of stores, how many of A's runs B also holds and
    how many of those have the same status, final and best metric (run ids are config hashes)."""
    rows = []
    for a_dir, b_dir in pairs:
        a, b = (pd.read_csv(Path(d) / "runs.csv").set_index("run_id") for d in (a_dir, b_dir))
        common = a.index.intersection(b.index)
        same = ((a.loc[common, ["status", "final_metric", "best_metric"]]
                 == b.loc[common, ["status", "final_metric", "best_metric"]]).all(axis=1))
        rows.append({"A": a_dir, "B": b_dir, "runs in A": len(a), "also in B": len(common),
                     "identical": int(same.sum())})
    return _markdown(pd.DataFrame(rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for backends.md and backends.csv")
    p.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"),
                   help="only compare the runs of store A with those of store B (repeatable) "
                        "and write OUT/compare.md; trains nothing")
    p.add_argument("--methods", default="mixing,bads,l2rw,cds")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--ddp-steps", type=int, default=500)
    p.add_argument("--ddp-batches", type=lambda t: [int(v) for v in t.split(",")],
                   default=[100, 1000], help="global batch sizes (Bt and Bm) of the bads runs")
    p.add_argument("--early", type=int, default=50,
                   help="also report the largest difference of the logged training values up to "
                        "this step (rounding differences grow over a long run: see the doc)")
    args = p.parse_args(argv)
    if args.compare:
        table = compare_stores([tuple(pair) for pair in args.compare])
        Path(args.out).mkdir(parents=True, exist_ok=True)
        text = ("# Runs of one store against another\n\n`python -m benchmarks.backends_timing "
                f"--out {args.out} " + " ".join(f"--compare {a} {b}" for a, b in args.compare)
                + "`\n\n" + table + "\n")
        (Path(args.out) / "compare.md").write_text(text)
        print(text)
        return 0
    work = Path(tempfile.mkdtemp(prefix="dps-backends-"))
    grid = ["run", "--scenario", "balancing", "--methods", args.methods, "--seeds", args.seeds,
            "--no-progress"]
    rows = []
    variants = {"local (sequential)": [], "local --jobs 2": ["--jobs", "2"],
                "ray --jobs 2": ["--backend", "ray", "--jobs", "2"]}
    for name, extra in variants.items():
        store = name.split()[0] + "-" + str(len(rows))
        wall = _cli([*grid, *extra, "--out", store], work)
        rows.append({"what": f"sweep: {name}", "wall_s": round(wall, 1), "store": store})
    reference = _metrics(work / rows[0]["store"])
    for row in rows:
        row["same_metrics"] = bool(_metrics(work / row["store"]).equals(reference))
        row["runs"] = len(reference)

    for batch in args.ddp_batches:
        one = ["run", "--scenario", "balancing", "--methods", "bads", "--steps",
               str(args.ddp_steps), "--set", "eval_every=10", "--set", f"batch_size={batch}",
               "--set", f"meta_batch_size={batch}", "--no-progress"]
        wall_1 = _cli([*one, "--out", f"one-{batch}"], work)
        wall_n = _cli([*one, "--out", f"ddp-{batch}", "--ddp"], work, ranks=args.ranks)
        r1, rn = (pd.read_csv(work / f"{s}-{batch}" / "runs.csv").iloc[0] for s in ("one", "ddp"))
        c1, cn = (pd.read_csv(work / f"{s}-{batch}" / "curves.csv") for s in ("one", "ddp"))
        both = c1.merge(cn, on=["step", "split", "metric_name"], suffixes=("_1", "_n"))
        train = both[both.split == "train"]
        rel = (train.value_1 - train.value_n).abs() / train.value_1.abs().clip(lower=1e-12)
        rows.append({"what": f"bads, global batch {batch}, 1 process", "wall_s": round(wall_1, 1),
                     "time_per_step_ms": round(float(r1.time_per_step_ms), 3)})
        rows.append({"what": f"bads, global batch {batch}, {args.ranks} processes (--ddp, gloo)",
                     "wall_s": round(wall_n, 1),
                     "time_per_step_ms": round(float(rn.time_per_step_ms), 3),
                     f"max_rel_diff_train_logs_to_step_{args.early}":
                         float(rel[train.step <= args.early].max()),
                     "max_rel_diff_train_logs": float(rel.max())})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows).drop(columns="store", errors="ignore")
    frame["runs"] = frame["runs"].astype("Int64")
    frame.to_csv(out / "backends.csv", index=False)
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs visible, torch {torch.__version__}, "
               "1 intra-op thread per run")
    (out / "backends.md").write_text(
        "# Sweep backends and one run across processes\n\n"
        f"`python -m benchmarks.backends_timing --out {args.out}` (methods {args.methods}, "
        f"seeds {args.seeds}, balancing quick; bads {args.ddp_steps} steps at global batch "
        f"{', '.join(map(str, args.ddp_batches))}; "
        f"{machine}).\n\n" + _markdown(frame) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print((out / "backends.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
