"""Does a task step the same under two installs (e.g. mujoco 2.3.7 and 3.17)?

Record the observations of fixed, seeded action sequences in each install, then compare:

    python experiments/physics_versions.py record mujoco-3.17.npz      # in one environment
    other-venv/bin/python experiments/physics_versions.py record mujoco-2.3.7.npz
    python experiments/physics_versions.py compare mujoco-2.3.7.npz mujoco-3.17.npz

``record`` needs only numpy and gymnasium[mujoco] (and dm-control for the DM Control tasks; a
suite that is not installed is left out), so it runs in a bare virtual environment. For each
task it plays 20 episodes, each from ``reset(seed=k)`` with uniform random actions (half the
action range, from a generator seeded with k), up to 200 steps or the episode's end, and keeps
each step's observation, reward and (gymnasium) termination flag.

``compare`` reports, per task, the first step at which the two recordings differ by more than
1e-9 (largest absolute difference over the observation, reward and termination flag) and how
large the difference is there; an episode that ends at another step counts as a jump there.
Rounding differences between two builds start near 1e-12 and grow step by step (chaotically,
over hundreds of steps); a change in the physics appears as a jump, typically at the first
contact. A task is reported as stepping differently where the first difference above 1e-9 is
above 1e-4 in any episode.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

import numpy as np

GYMNASIUM_TASKS = ("Hopper-v4", "Walker2d-v4", "HalfCheetah-v4", "Ant-v4", "Humanoid-v4")
DMC_TASKS = (("cheetah", "run"), ("dog", "stand"), ("walker", "walk"))
EPISODES, STEPS = 20, 200
ROUNDING, JUMP = 1e-9, 1e-4


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _gymnasium_episodes(env_id: str) -> list[np.ndarray]:
    import gymnasium as gym

    env = gym.make(env_id)
    episodes = []
    for k in range(EPISODES):
        rng = np.random.default_rng(k)
        obs, _ = env.reset(seed=k)
        trace = [np.append(np.asarray(obs, dtype=np.float64), [0.0, 0.0])]
        for _ in range(STEPS):
            obs, reward, terminated, truncated, _ = env.step(rng.uniform(-0.5, 0.5, env.action_space.shape))
            trace.append(np.append(np.asarray(obs, dtype=np.float64), [float(reward), float(terminated)]))
            if terminated or truncated:
                break
        episodes.append(np.array(trace))
    env.close()
    return episodes


def _dmc_episodes(domain: str, task: str) -> list[np.ndarray]:
    from dm_control import suite

    episodes = []
    for k in range(EPISODES):
        env = suite.load(domain, task, task_kwargs={"random": k})
        spec = env.action_spec()
        rng = np.random.default_rng(k)
        low, high = spec.minimum, spec.maximum
        middle, half = (high + low) / 2, (high - low) / 4
        step = env.reset()
        trace = [np.concatenate([*(np.ravel(v) for v in step.observation.values()), [0.0]])]
        for _ in range(STEPS):
            step = env.step(middle + half * rng.uniform(-1, 1, spec.shape))
            trace.append(np.concatenate([*(np.ravel(v) for v in step.observation.values()), [step.reward]]))
        episodes.append(np.array(trace))
    return episodes


def record(out: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    tasks: dict[str, list[np.ndarray]] = {}
    try:
        import gymnasium  # noqa: F401
        import mujoco  # noqa: F401

        for env_id in GYMNASIUM_TASKS:
            tasks[env_id] = _gymnasium_episodes(env_id)
    except ImportError as exc:
        print(f"gymnasium MuJoCo tasks left out: {exc}", file=sys.stderr)
    try:
        import dm_control  # noqa: F401

        for domain, task in DMC_TASKS:
            tasks[f"dm_control/{domain}-{task}"] = _dmc_episodes(domain, task)
    except ImportError as exc:
        print(f"DM Control tasks left out: {exc}", file=sys.stderr)
    for name, episodes in tasks.items():
        for k, trace in enumerate(episodes):
            arrays[f"{name}|{k}"] = trace
    versions = {name: _version(name) for name in ("gymnasium", "mujoco", "dm-control")}
    arrays["versions"] = np.array([f"{name} {version}" for name, version in versions.items()])
    np.savez_compressed(out, **arrays)
    print(f"{out}: {len(tasks)} tasks × {EPISODES} episodes with {', '.join(arrays['versions'])}")


def compare(first: Path, second: Path) -> list[str]:
    a, b = np.load(first), np.load(second)
    lines = [f"{first.name} ({', '.join(a['versions'])}) against {second.name} ({', '.join(b['versions'])}):"]
    tasks = sorted({key.split("|")[0] for key in a.files if "|" in key} & {key.split("|")[0] for key in b.files})
    for task in tasks:
        jumps: list[float] = []
        first_steps: list[int] = []
        for k in range(EPISODES):
            x, y = a[f"{task}|{k}"], b[f"{task}|{k}"]
            n = min(len(x), len(y))
            gap = np.abs(x[:n] - y[:n]).max(axis=1)
            if len(x) != len(y):  # one episode ended earlier: a difference at its last step
                gap[n - 1] = max(gap[n - 1], 1.0)
            above = np.flatnonzero(gap > ROUNDING)
            if len(above) == 0:
                continue
            first_steps.append(int(above[0]))
            jumps.append(float(gap[above[0]]))
        if jumps and max(jumps) > JUMP:
            lines.append(f"  {task}: steps differently — first difference above {ROUNDING:g} at step "
                         f"{min(first_steps)}–{max(first_steps)}, {min(jumps):.2g}–{max(jumps):.2g} there "
                         f"({len(jumps)} of {EPISODES} episodes)")
        elif jumps:
            lines.append(f"  {task}: the same up to rounding (in {len(jumps)} of {EPISODES} episodes a difference "
                         f"above {ROUNDING:g} appears, at most {max(jumps):.2g} where it first does)")
        else:
            lines.append(f"  {task}: the same up to rounding (no difference above {ROUNDING:g} in any episode)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("record").add_argument("out", type=Path)
    both = commands.add_parser("compare")
    both.add_argument("first", type=Path)
    both.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.out)
    else:
        print("\n".join(compare(args.first, args.second)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
