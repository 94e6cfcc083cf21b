"""docs/adding-a-baseline.md runs as written: its commands, in order, in a copy of the repository
without the example method, with the guide's code block as the method file and its registry lines
added where the guide says."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "adding-a-baseline.md"
EXAMPLE = "methods/online_batch.py"


def _block_after(text: str, marker: str) -> str:
    """The fenced code block that follows ``<!-- marker -->``."""
    match = re.search(re.escape(f"<!-- {marker} -->") + r"\s*```\w*\n(.*?)```", text, re.S)
    assert match, f"the guide has no code block after <!-- {marker} -->"
    return match.group(1)


def _commands(text: str) -> list[str]:
    """Every ``$ dps-bench ...`` line of the guide's console blocks, in order."""
    blocks = re.findall(r"```console\n(.*?)```", text, re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def test_the_guide_shows_the_method_file_and_registry_lines_of_the_repository():
    text = GUIDE.read_text()
    assert _block_after(text, f"file: {EXAMPLE}") == (REPO / EXAMPLE).read_text()
    registry = (REPO / "methods" / "__init__.py").read_text()
    lines = [line for line in _block_after(text, "registry").splitlines() if line.strip()]
    assert lines and all(line + "\n" in registry for line in lines)
    assert len((REPO / EXAMPLE).read_text().splitlines()) < 100


def test_the_guide_runs_as_written(tmp_path):
    text = GUIDE.read_text()
    commands = _commands(text)
    assert [c.split()[1] for c in commands] == [
        "new-method", "check-method", "check-method", "run", "run", "report"]
    # the repository as it was before the guide: no online_batch, not registered
    repo = tmp_path / "repo"
    for part in ("methods", "benchmarks"):
        shutil.copytree(REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / EXAMPLE).unlink()
    registry_lines = _block_after(text, "registry")
    init = repo / "methods" / "__init__.py"
    init.write_text(init.read_text().replace(registry_lines, ""))
    env = {**os.environ, "PYTHONPATH": str(repo), "DPS_CACHE_DIR": str(tmp_path / "cache")}

    for command in commands:
        args = shlex.split(command)
        assert args[0] == "dps-bench"
        done = subprocess.run([sys.executable, "-m", "benchmarks.cli", *args[1:]], cwd=repo,
                              env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        if args[1] == "new-method":  # the guide's steps 2 and 3: write the method, register it
            assert "class OnlineBatch(Method):" in (repo / EXAMPLE).read_text()
            (repo / EXAMPLE).write_text(_block_after(text, f"file: {EXAMPLE}"))
            init.write_text(init.read_text().replace(
                '    "askllm_o": "methods.askllm_o:AskLLMOnline",\n',
                '    "askllm_o": "methods.askllm_o:AskLLMOnline",\n' + registry_lines))
        if args[1] == "check-method":
            assert "10 of 10 rules kept" in done.stdout

    for scenario in ("balancing", "denoising"):
        runs = pd.read_csv(repo / "results" / "guide" / scenario / "runs.csv")
        assert sorted(set(runs.method)) == ["bads", "online_batch", "online_batch_uniform"]
        assert (runs.status == "ok").all() and len(runs) == 15
    report = (repo / "results" / "guide" / "report" / "REPORT.md").read_text()
    assert "online_batch" in report and "online_batch_uniform" in report
