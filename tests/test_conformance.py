"""The method contract (benchmarks/conformance.py) over every registered method, the suite's own
ability to catch each kind of breach, and methods from outside the repository: a ``module:Class``
name, an entry point of an installed package, and the ``new-method`` template."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import methods
from benchmarks import conformance
from benchmarks.cli import main
from benchmarks.config import parse_sets
from benchmarks.scenarios import get_scenario
from methods import get_method, list_methods

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory):
    """The ift scenario's tiny pretraining goes to a temporary cache, not the user's."""
    old = os.environ.get("DPS_CACHE_DIR")
    os.environ["DPS_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    conformance.trace.cache_clear()
    if old is None:
        os.environ.pop("DPS_CACHE_DIR")
    else:
        os.environ["DPS_CACHE_DIR"] = old


# -- every registered method keeps every rule ---------------------------------------------------

@pytest.mark.parametrize("rule", conformance.RULES, ids=lambda r: r.name)
@pytest.mark.parametrize("method", list_methods())
def test_registered_method_keeps_the_contract(method, rule):
    outcome = conformance.run_rule(rule, method)
    assert outcome.passed, outcome.message()


# -- the suite catches each breach ---------------------------------------------------------------

BROKEN = [
    ("Undocumented", "hparams-documented", "does not explain alpha"),
    ("BadDefault", "defaults-validate", "tau must be positive"),
    ("SearchesNothing", "defaults-validate", "no_such_field"),
    ("VectorLog", "step-logs-finite", "per_example"),
    ("WrongLength", "weights-valid", "shape (47,)"),
    ("OutOfRange", "weights-valid", "outside the declared weight_range"),
    ("SharedWeights", "weights-valid", "shares memory"),
    ("SwallowsNaN", "non-finite-surfaces", "hid the non-finite meta loss"),
    ("Unseeded", "deterministic", "differ"),
    ("Float32Net", "batchnorm-and-dtypes", "vnet holds torch.float32"),
    ("LeakyLookahead", "no-side-effects", "BatchNorm's running statistics moved"),
    ("MovesFrozen", "no-side-effects", "a frozen parameter"),
    ("EditsBatch", "no-side-effects", "mutated the train batch"),
    ("FlatFloatInputs", "scenarios-quick", "on efficient"),
]


@pytest.mark.parametrize(("cls", "rule", "seen"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_breach_is_caught_by_its_rule(cls, rule, seen):
    outcome = conformance.run_rule(conformance.rule(rule), f"broken_methods:{cls}")
    assert not outcome.passed
    assert seen in outcome.detail, outcome.detail
    message = outcome.message()
    assert f"broke rule {rule!r}" in message and "why it exists:" in message


def test_a_comment_counts_only_for_its_own_field(tmp_path, monkeypatch):
    # the end-of-line comment of one field does not document the field below it; a comment on a
    # line of its own right above a field does
    (tmp_path / "hp_comments.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass

        @dataclass
        class Hp:
            """Hyperparameters."""

            gamma: float = 2.0  # the focusing exponent
            eps: float = 1e-6
            # the floor of every weight
            floor: float = 0.0
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    from hp_comments import Hp

    assert conformance.undocumented_fields(Hp) == ["eps"]


def test_a_method_importing_benchmarks_is_caught(tmp_path, monkeypatch):
    pkg = tmp_path / "leaky_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("from benchmarks.scenarios import get_scenario  # noqa\n")
    (pkg / "method.py").write_text("from methods.erm import ERM\nfrom . import helpers  # noqa\n"
                                   "class Leaky(ERM):\n    '''Leaky.'''\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    outcome = conformance.run_rule(conformance.rule("no-benchmarks-import"),
                                   "leaky_pkg.method:Leaky")
    assert not outcome.passed
    assert "helpers.py:1 imports benchmarks.scenarios" in outcome.detail


def test_every_broken_method_keeps_the_rules_it_does_not_target():
    # the rules are specific: the plain method they are all built on keeps every rule
    outcomes = conformance.check_method("broken_methods:Plain")
    assert all(o.passed for o in outcomes), conformance.table(outcomes)


def test_check_method_prints_a_table_and_fails_on_a_broken_rule(capsys):
    assert main(["check-method", "broken_methods:EditsBatch", "--rules",
                 "no-side-effects,step-logs-finite"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"no-side-effects +FAIL", out) and re.search(r"step-logs-finite +PASS", out)
    assert "why it exists:" in out and "1 of 2 rules kept" in out
    assert main(["check-method", "mixing", "--rules", "step-logs-finite"]) == 0


def test_check_method_names_an_unknown_rule_or_method(capsys):
    assert main(["check-method", "mixing", "--rules", "no-such-rule"]) == 2
    assert "no rule 'no-such-rule'; rules: hparams-documented" in capsys.readouterr().err
    assert main(["check-method", "no_such_pkg.mod:Cls"]) == 2
    assert "cannot import module 'no_such_pkg.mod'" in capsys.readouterr().err


# -- methods from outside the repository ----------------------------------------------------------

METHOD_SOURCE = textwrap.dedent('''
    """A method of another package: weighted ERM with w_i ∝ exp(-l_i / tau) over the batch."""
    from dataclasses import dataclass

    import torch

    from methods import Method


    @dataclass
    class SoftminHparams:
        """tau: the temperature of the softmin over the batch's losses."""

        tau: float = 1.0


    class Softmin(Method):
        """Softmin weights over each batch's losses (a toy external method)."""

        Hparams = SoftminHparams
        uses_meta_batch = False

        def __init__(self, ctx, hparams=None):
            super().__init__(ctx, hparams)
            self.opt = ctx.make_optimizer(ctx.model.parameters())

        def step(self, train, meta):
            losses = self.ctx.loss(self.ctx.model(train.x), train.y)
            w = torch.softmax(-losses.detach() / self.hp.tau, 0)
            loss = (w * losses).sum()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            return {"loss": loss.detach()}
''')


def _wheel(tmp_path: Path) -> Path:
    """A wheel of the package ``softmin_dps`` with an entry point in the group
    dps_bench.methods (written by hand: installing it needs no build backend)."""
    wheel = tmp_path / "softmin_dps-0.1-py3-none-any.whl"
    info = "softmin_dps-0.1.dist-info"
    files = {
        "softmin_dps/__init__.py": "",
        "softmin_dps/method.py": METHOD_SOURCE,
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: softmin-dps\nVersion: 0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": "[dps_bench.methods]\nsoftmin = softmin_dps.method:Softmin\n",
    }
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"]))
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """softmin_dps installed with pip into a folder of its own (the site a test puts on the path)."""
    tmp = tmp_path_factory.mktemp("external")
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--disable-pip-version-check", "--target", str(site), str(_wheel(tmp))],
                   check=True)
    return site


def _cli(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "benchmarks.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_an_installed_entry_point_is_listed_and_passes_the_suite(installed, tmp_path):
    listing = _cli(["list"], installed, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "softmin: Softmin weights over each batch's losses" in listing.stdout
    assert "[entry point softmin_dps.method:Softmin]" in listing.stdout
    check = _cli(["check-method", "softmin"], installed, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{len(conformance.RULES)} of {len(conformance.RULES)} rules kept" in check.stdout


def test_an_installed_entry_point_runs_through_the_harness(installed, tmp_path):
    out = tmp_path / "runs"
    run = _cli(["run", "--scenario", "balancing", "--methods", "softmin,mixing", "--steps", "20",
                "--set", "softmin.tau=0.5", "--out", str(out), "--no-progress"], installed,
               tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    import pandas as pd

    runs = pd.read_csv(out / "runs.csv")
    row = runs[runs.method == "softmin"].iloc[0]
    assert row.status == "ok" and '"tau": 0.5' in row.config_json
    # its code version covers the external module, unlike a built-in method's
    assert row.code_sha != runs[runs.method == "mixing"].iloc[0].code_sha


def test_entry_points_are_discovered_in_process(installed, monkeypatch):
    monkeypatch.syspath_prepend(str(installed))
    methods.rediscover()
    try:
        assert "softmin" in list_methods() and list_methods()[: len(methods.REGISTRY)] == list(
            methods.REGISTRY)
        assert get_method("softmin").__name__ == "Softmin"
        monkeypatch.setitem(methods.REGISTRY, "softmin", "methods.mixing:Mixing")
        assert methods.shadowed_entry_points() == {"softmin": "softmin_dps.method:Softmin"}
        assert get_method("softmin").__name__ == "Mixing"  # a built-in name wins
    finally:
        monkeypatch.undo()
        methods.rediscover()
    assert "softmin" not in list_methods()


def test_a_module_class_name_runs_and_takes_its_hyperparameters(tmp_path, monkeypatch):
    (tmp_path / "my_softmin.py").write_text(METHOD_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    name = "my_softmin:Softmin"
    _, hparams = parse_sets([f"{name}.tau=0.25"], get_scenario("balancing"), [name])
    assert hparams == {name: {"tau": 0.25}}
    out = tmp_path / "runs"
    assert main(["run", "--scenario", "balancing", "--methods", name, "--steps", "10",
                 "--set", f"{name}.tau=0.25", "--out", str(out), "--no-progress"]) == 0
    import pandas as pd

    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.method) == [name] and list(runs.status) == ["ok"]


def test_bad_method_names_say_what_is_wrong(tmp_path, monkeypatch):
    (tmp_path / "not_a_method.py").write_text("class Thing:\n    pass\nraise_later = 1\n")
    (tmp_path / "broken_syntax.py").write_text("def (:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, seen in (("not_a_method:Thing", "not a subclass of methods.Method"),
                       ("not_a_method:Missing", "has no 'Missing'"),
                       ("broken_syntax:X", "importing 'broken_syntax' failed: SyntaxError"),
                       ("no_such_method", "or a method class from any importable module"),
                       ("not_a_method.Thing", "did you mean not_a_method:Thing")):
        with pytest.raises(methods.UnknownMethodError, match=seen):
            get_method(name)


def test_new_method_writes_a_template_that_keeps_the_contract(tmp_path, monkeypatch, capsys):
    assert main(["new-method", "loss_rank_v2", "--dir", str(tmp_path)]) == 0
    written = tmp_path / "loss_rank_v2.py"
    assert "class LossRankV2(Method):" in written.read_text()
    assert "loss_rank_v2 = \"your_package.loss_rank_v2:LossRankV2\"" in capsys.readouterr().out
    monkeypatch.syspath_prepend(str(tmp_path))
    outcomes = conformance.check_method("loss_rank_v2:LossRankV2")
    assert all(o.passed for o in outcomes), conformance.table(outcomes)
    # it refuses to overwrite, and names bad names
    assert main(["new-method", "loss_rank_v2", "--dir", str(tmp_path)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["new-method", "Bad-Name", "--dir", str(tmp_path)]) == 2
    assert "not a lowercase Python identifier" in capsys.readouterr().err
    assert main(["new-method", "bads"]) == 2  # a built-in name, into methods/
    assert "exists already" in capsys.readouterr().err
    assert main(["new-method", "class", "--dir", str(tmp_path)]) == 2
    assert "'class' is a Python keyword" in capsys.readouterr().err
    assert main(["new-method", "torch", "--dir", str(tmp_path)]) == 2  # would shadow torch
    assert "a module called 'torch' is importable already" in capsys.readouterr().err
    assert not (tmp_path / "torch.py").exists()

