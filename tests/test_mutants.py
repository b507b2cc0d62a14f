"""Mutation check: deliberate bugs in the core math must make the test suite fail.

Each mutant copies the working tree's ``streamx/`` and ``tests/`` into a temporary directory,
applies one small patch there (the repository itself is never touched), and runs the fast tests
that own that piece of math in a subprocess whose ``streamx`` is the patched copy. The check
passes only if those tests FAIL on every mutant, and first pass on the unpatched copy, so a
mutant counts as caught because of the patch and nothing else.

    pytest -m slow tests/test_mutants.py          # part of make test-slow
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MATH_TESTS = ("tests/test_optim.py", "tests/test_nn.py", "tests/test_wrappers.py", "tests/test_agents.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...] = MATH_TESTS


MUTANTS = (
    Mutant("trace decays by γ instead of γλ", "streamx/optim.py",
           'torch._foreach_mul_(traces, group["gamma"] * group["lamda"])',
           'torch._foreach_mul_(traces, group["gamma"])'),
    Mutant("ObGD bound without max(|δ|, 1)", "streamx/optim.py",
           "torch.clamp(td_error.abs(), min=1.0)", "td_error.abs()"),
    Mutant("LayerNorm with a learnable gain and bias", "streamx/nn.py",
           "        block.append(FeatureLayerNorm(norm_dims))",
           "        block.append(nn.LayerNorm(layer.out_features) if isinstance(layer, nn.Linear)\n"
           "                     else FeatureLayerNorm(norm_dims))"),
    Mutant("sparse init zeroes one weight too few", "streamx/nn.py",
           "num_zeros = math.ceil(sparsity * fan_in)", "num_zeros = max(0, math.ceil(sparsity * fan_in) - 1)"),
    Mutant("Welford mean update divides by n + 1", "streamx/wrappers.py",
           "np.divide(deviation, self.count, out=scratch)", "np.divide(deviation, self.count + 1, out=scratch)"),
    Mutant("reward-scale trace not reset at episode ends", "streamx/wrappers.py",
           "self.return_trace = self.gamma * (1.0 - float(done)) * self.return_trace + float(reward)",
           "self.return_trace = self.gamma * self.return_trace + float(reward)"),
)


def _copy_tree(destination: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    for name in ("streamx", "tests"):
        shutil.copytree(ROOT / name, destination / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", destination / "pyproject.toml")


def _run_tests(tree: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "NUMBA_CACHE_DIR": str(tree / ".numba_cache")}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow",
               *tests]
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("pristine")
    _copy_tree(tree)
    probe = subprocess.run([sys.executable, "-c", "import streamx; print(streamx.__file__)"], cwd=tree,
                           env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    assert probe.stdout.strip().startswith(str(tree)), f"the copy must shadow the installed streamx: {probe.stdout}"
    result = _run_tests(tree, MATH_TESTS)
    assert result.returncode == 0, f"the unpatched tests must pass first:\n{result.stdout[-3000:]}"
    return tree


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_the_suite_catches_the_mutant(mutant: Mutant, pristine: Path, tmp_path: Path) -> None:
    tree = tmp_path / "mutant"
    _copy_tree(tree)
    source = tree / mutant.path
    text = source.read_text()
    assert text.count(mutant.old) == 1, f"{mutant.path} no longer holds the line this mutant patches: {mutant.old!r}"
    source.write_text(text.replace(mutant.old, mutant.new))
    result = _run_tests(tree, mutant.tests)
    assert result.returncode == 1, (f"mutant '{mutant.name}' survived (pytest exit {result.returncode}):\n"
                                    f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
