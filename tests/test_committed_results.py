"""The numbers committed in results/ come out again at this code.

A change that alters what a run computes (even in the last bits: these short trainings are
chaotic enough that a rounding change flips an outcome) must regenerate the committed results;
this test reruns a small seeded sample of the quick reference results and fails otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.verify import verify

QUICK = Path(__file__).resolve().parent.parent / "results" / "balancing" / "mnist1d-quick"


def test_a_sample_of_the_committed_quick_results_reproduces_exactly():
    if not (QUICK / "runs.csv").exists():
        pytest.fail(f"{QUICK} is missing: the committed quick results are part of the suite")
    # a seeded draw of one run of each family: SGLD (bads), bi-level (l2rw, mwn), selection (cds)
    verdicts = [v for method in ("bads", "l2rw", "mwn", "cds")
                for v in verify(str(QUICK), sample=1, seed=0, methods=[method])]
    assert len(verdicts) == 4
    assert all(v.verdict == "exact" for v in verdicts), (
        "committed quick results no longer reproduce at this code; regenerate them with "
        "`dps-bench reproduce --profile quick --out results --force` (results/README.md): "
        + "; ".join(f"{v.method} seed {v.seed}: {v.verdict} {v.max_abs_diff:.3g} {v.note}"
                    for v in verdicts))
