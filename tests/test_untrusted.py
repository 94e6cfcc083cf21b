"""Files the user did not write in this process are data, never code: no pickle, checkpoints only
with ``weights_only=True``, no remote code, and config paths stay inside the results folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.errors import ConfigError
from benchmarks.reproduce import load_reference

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for pkg in ("methods", "benchmarks") for p in (ROOT / pkg).rglob("*.py"))


def code_lines():
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            yield path.relative_to(ROOT), number, code


def test_the_suite_has_code_to_scan():
    assert len(SOURCES) > 20


@pytest.mark.parametrize(("pattern", "why"), [
    (r"\bpickle\.loads?\(|\bcloudpickle\b|\bdill\b|\bjoblib\.load\(", "unpickling runs code"),
    (r"\bnp\.load\([^)]*allow_pickle\s*=\s*True", "numpy's pickled arrays run code"),
    (r"\byaml\.(load|unsafe_load|full_load)\(", "YAML loaders other than safe_load build objects"),
    (r"(?<![.\w])(eval|exec)\(", "config text must never be executed"),
    (r"trust_remote_code\s*=\s*True", "remote model code only behind an explicit flag"),
])
def test_no_loader_that_runs_code(pattern, why):
    found = [f"{p}:{n}" for p, n, code in code_lines() if re.search(pattern, code)]
    assert not found, f"{why}: {found}"


def test_checkpoints_load_weights_only():
    calls = [(p, n, code) for p, n, code in code_lines() if re.search(r"\btorch\.load\(", code)]
    bad = [f"{p}:{n}" for p, n, code in calls if "weights_only=True" not in code]
    assert not bad, f"torch.load without weights_only=True: {bad}"


@pytest.mark.parametrize("out", ["../outside", "/etc/dps", "balancing/../../x", "a\\..\\b"])
def test_a_reference_config_cannot_write_outside_the_results_folder(tmp_path, out):
    path = tmp_path / "ref.yaml"
    path.write_text("scenario: balancing\nsource: mnist1d\nprofile: quick\nmethods: [bads]\n"
                    f"seeds: [0]\nout: '{out}'\n")
    with pytest.raises(ConfigError, match="relative path inside the results folder"):
        load_reference(path)
