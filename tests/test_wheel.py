"""The distribution (slow): the wheel of streamx-rl, installed (not editable) into a fresh virtual
environment, runs `streamx train` and `streamx bench --help` from a directory outside the
repository, and carries its package data (py.typed, the paper's results).

torch is installed into the new environment at the version this one has, from wherever pip is
configured to find it (a local wheel directory keeps that off the network)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**environment, "MUJOCO_GL": "disable", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def _has_build_backend() -> bool:
    """Whether this environment has the setuptools pyproject.toml asks for (then the wheel is
    built without fetching it)."""
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 68


def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path):
    # build from a copy of what the wheel is made of, so no build files land in the checkout
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "streamx", source / "streamx", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path / "wheels"
    isolation = ["--no-build-isolation"] if _has_build_backend() else []
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "--wheel-dir", wheels, source, cwd=tmp_path)
    (wheel,) = wheels.glob("streamx_rl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert {"streamx/py.typed", "streamx/data/paper_results.yaml", "streamx/cli.py"} <= names
    assert "streamx/fast/kernels.py" in names and "streamx/agents/ac.py" in names  # subpackages
    assert not any(name.startswith(("tests/", "experiments/", "runs/")) for name in names)
    assert "Name: streamx-rl" in metadata and "streamx = streamx.cli:main" in entry_points

    venv = tmp_path / "venv"
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    _run(base_python if base_python.exists() else sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    version = torch.__version__.split("+")[0]
    _run(python, "-m", "pip", "install", "--quiet", "--no-compile", f"torch=={version}", cwd=tmp_path)
    _run(python, "-m", "pip", "install", "--quiet", "--no-compile", wheel, cwd=tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = _run(python, "-c", "import streamx; print(streamx.__file__)", cwd=outside).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the installed copy, not the checkout
    streamx = venv / "bin" / "streamx"
    _run(streamx, "train", "stream_q", "--env", "CartPole-v1", "--steps", "300", "--run-dir", "run",
         "progress=false", cwd=outside)
    summary = json.loads((outside / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 300
    assert "usage: streamx bench" in _run(streamx, "bench", "--help", cwd=outside).stdout
    # package data at run time: the paper's results and the plot command without matplotlib
    count = _run(python, "-c", "from streamx import analysis; print(len(analysis.paper_results()['results']))",
                 cwd=outside).stdout.strip()
    assert count == "6"
    _run(streamx, "plot", "run", "--out", "plots", cwd=outside)
    assert (outside / "plots" / "final_runs.csv").is_file()
