"""The package versions a run was made with: ``versions.json`` in its run directory.

An environment id does not pin its dynamics. ``Hopper-v4`` under mujoco 2.3.7 and under mujoco
3.17 agree to the last bit until the foot first touches the floor, then part (0.06 in the
observation at that step, with the same actions). So a run records, when it starts:

* ``task``: the versions of the packages that define its task — gymnasium (which registers the
  id and holds the model files of its MuJoCo tasks) and the simulator of its suite (mujoco;
  dm-control and shimmy; ale-py; MinAtar). For other gymnasium ids only gymnasium is known
  (the package that registers a third-party id is not); an ETT run's task is its data file;
* ``other``: Python, streamx and the learner's packages (torch, numpy, numba,
  Stable-Baselines3), for the record only: they change a run's arithmetic at most in its
  rounding, not the task.

A run is continued (``streamx train --resume``, a sweep) or counted as done by a sweep only
where the installed ``task`` versions are those it recorded (:func:`task_mismatch`); a run
directory without ``versions.json`` (made before streamx recorded versions) is not checked.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

__all__ = ["OTHER_PACKAGES", "TASK_PACKAGES", "VERSIONS_FILE", "installed_version", "task_mismatch",
           "versions_record"]

VERSIONS_FILE = "versions.json"

# The packages that define a suite's tasks (distribution names). "gym": any other gymnasium id.
TASK_PACKAGES: dict[str, tuple[str, ...]] = {
    "classic": ("gymnasium",),
    "gym": ("gymnasium",),
    "mujoco": ("gymnasium", "mujoco"),
    "dmc": ("gymnasium", "mujoco", "dm-control", "shimmy"),
    "atari": ("gymnasium", "ale-py"),
    "minatar": ("gymnasium", "minatar"),
    "ett": (),  # the task is the data file the run reads
}
OTHER_PACKAGES = ("streamx-rl", "torch", "numpy", "numba", "stable-baselines3")


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution (e.g. ``"mujoco"``), or None where it is absent."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions_record(suite: str | None) -> dict[str, Any]:
    """What ``versions.json`` holds for a run started now on a task of ``suite``
    (:func:`streamx.envs.suite_of` of its env id; None: a gymnasium id of no known suite)."""
    task = TASK_PACKAGES.get(suite or "gym", ("gymnasium",))
    other = {"python": platform.python_version(), **{name: installed_version(name) for name in OTHER_PACKAGES}}
    return {"suite": suite, "task": {name: installed_version(name) for name in task}, "other": other}


def task_mismatch(run_dir: str | Path) -> str | None:
    """Why the run in ``run_dir`` cannot be continued or counted as done with the packages
    installed here (None when it can, or when it recorded no versions)."""
    path = Path(run_dir) / VERSIONS_FILE
    if not path.is_file():
        return None
    try:
        task = json.loads(path.read_text())["task"]
        recorded = {str(name): (None if version is None else str(version)) for name, version in task.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return (f"{path} is unreadable, so the package versions this run was made with are unknown; restore the "
                f"file (or delete it to continue without the check)")
    differing = [(name, version, now) for name, version in sorted(recorded.items())
                 if (now := installed_version(name)) != version]
    if not differing:
        return None
    what = ", ".join(f"{name} {version or '(not installed)'} (installed here: {now or 'none'})"
                     for name, version, now in differing)
    install = " ".join(f"{name}=={version}" for name, version, _ in differing if version is not None)
    fix = f"install the run's versions (pip install {install})" if install else "install the run's versions"
    return (f"{run_dir} holds a run made with {what}: its task differs from this install's, so the run is neither "
            f"continued nor counted as done here; {fix}, or start it afresh in another directory")
