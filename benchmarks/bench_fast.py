"""Speed of the numba fast path (streamx.fast) against the autograd agents, in one run.

Measures, with one torch thread:

* start-up: the first act+update of fresh fast agents in a new process, with an empty numba
  cache (cold: compiles the kernels) and again with that cache filled (warm);
* update-only: microseconds per ``act`` and per ``update`` on a pre-generated stream
  (no environment), at the paper's sizes: CartPole Stream Q (MLP 32-32), HalfCheetah
  Stream AC (MLP 128-128, 18-d observations with the time feature, 6-d actions) and MinAtar
  Breakout Stream Q (Conv 16 3×3 → FC 128 on 4×10×10 frames);
* whole loop: agent steps per second of the training loop (act → env.step → update, with the
  paper's wrappers) on CartPole-v1 (Stream Q), HalfCheetah-v5 (Stream AC) and
  MinAtar/Breakout-v1 (Stream Q) where installed, and the rate of the environment alone
  (random actions), for fast and autograd agents.

Each rate is the median of ``--repeats`` interleaved measurements (fast, autograd, fast, …)
so that a busy machine slows both alike; the load average is recorded next to the numbers.

    python benchmarks/bench_fast.py --out bench_fast.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from streamx import resolve_config
from streamx.agents import AGENTS
from streamx.envs import make_env
from streamx.fast import make_fast_agent, numba_available
from streamx.fast.agents import FAST_AGENTS
from streamx.run import seed_everything

ORIGINAL_AC_HALFCHEETAH_STEPS_PER_SECOND = 600.0  # PAPER §8, the authors' code on a 2-core machine

CASES = {
    "cartpole_q": {"algo": "stream_q", "env": "CartPole-v1", "obs_shape": (5,), "hidden": [32, 32],
                   "action_space": gym.spaces.Discrete(2)},
    "halfcheetah_ac": {"algo": "stream_ac", "env": "HalfCheetah-v5", "obs_shape": (18,), "hidden": [128, 128],
                       "action_space": gym.spaces.Box(-1.0, 1.0, (6,), np.float32)},
    # the MinAtar conv net (Conv 16 3x3 → FC 128); hidden sizes do not apply
    "minatar_breakout_q": {"algo": "stream_q", "env": "MinAtar/Breakout-v1", "obs_shape": (4, 10, 10),
                           "hidden": [128], "action_space": gym.spaces.Discrete(3)},
}

_STARTUP_SCRIPT = """
import time
start = time.perf_counter()
import gymnasium as gym, numpy as np, torch
from streamx.fast import make_fast_agent
imported = time.perf_counter()
spaces = [("stream_q", (5,), gym.spaces.Discrete(2), [32, 32]),
          ("stream_ac", (18,), gym.spaces.Box(-1.0, 1.0, (6,), np.float32), [128, 128]),
          ("stream_q", (4, 10, 10), gym.spaces.Discrete(3), [128])]
for algo, shape, action_space, hidden in spaces:
    obs_space = gym.spaces.Box(-np.inf, np.inf, shape, np.float32)
    agent = make_fast_agent(algo, obs_space, action_space, hidden_sizes=hidden)
    obs = np.zeros(shape, np.float32)
    agent.update(obs, agent.act(obs), 1.0, obs, False, False)
print(imported - start, time.perf_counter() - imported)
"""


def measure_startup() -> dict[str, float]:
    """Seconds to import streamx.fast, and to build + first act/update of an MLP Q, an MLP AC
    and a MinAtar Q agent (which compiles or loads every kernel they use), with a cold and
    then a warm numba cache."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        for label in ("cold", "warm"):
            result = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], env=env, check=True,
                                    capture_output=True, text=True)
            import_seconds, first_update_seconds = map(float, result.stdout.split())
            out[f"{label}_import_s"] = round(import_seconds, 3)
            out[f"{label}_first_act_update_s"] = round(first_update_seconds, 3)
    return out


def _transitions(obs_shape: tuple[int, ...], steps: int) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(0)
    if len(obs_shape) == 3:  # sparse binary frames, as MinAtar's
        observations = (rng.random((steps + 1, *obs_shape)) < 0.1).astype(np.float32)
    else:
        observations = rng.normal(size=(steps + 1, *obs_shape)).astype(np.float32)
    return [(observations[i], float(rng.normal()), observations[i + 1], (i + 1) % 1000 == 0) for i in range(steps)]


def measure_update_only(case: dict[str, Any], fast: bool, steps: int) -> dict[str, float]:
    """Microseconds per act and per update on a stream of random transitions, after warm-up."""
    maker: Callable[..., Any] = make_fast_agent if fast else _make_autograd_agent
    obs_space = gym.spaces.Box(-np.inf, np.inf, case["obs_shape"], np.float32)
    torch.manual_seed(0)
    agent = maker(case["algo"], obs_space, case["action_space"], hidden_sizes=case["hidden"])
    stream = _transitions(case["obs_shape"], steps + 200)
    act_seconds = update_seconds = 0.0
    for i, (obs, reward, next_obs, done) in enumerate(stream):
        if i == 200:  # warm-up: kernels loaded, caches filled
            act_seconds = update_seconds = 0.0
        start = time.perf_counter()
        action = agent.act(obs)
        middle = time.perf_counter()
        agent.update(obs, action, reward, next_obs, done, False)
        end = time.perf_counter()
        act_seconds += middle - start
        update_seconds += end - middle
    return {"act_us": act_seconds / steps * 1e6, "update_us": update_seconds / steps * 1e6,
            "act_update_us": (act_seconds + update_seconds) / steps * 1e6}


def _make_autograd_agent(algo: str, observation_space: gym.spaces.Space, action_space: gym.spaces.Space,
                         **overrides: Any) -> Any:
    from streamx import make_agent

    return make_agent(algo, observation_space, action_space, fast_path="off", **overrides)


def measure_loop(case: dict[str, Any], kind: str, steps: int) -> float:
    """Agent steps per second of act → env.step → update (kind fast | autograd), or of the
    environment alone (kind env) with pre-drawn random actions; after 200 warm-up steps."""
    config = resolve_config(case["algo"], case["env"], overrides={"progress": False})
    seed_everything(0, 1)
    env = make_env(config)
    agent = None
    if kind != "env":
        agent = (FAST_AGENTS if kind == "fast" else AGENTS)[case["algo"]](env.observation_space, env.action_space,
                                                                          config)
    env.action_space.seed(0)
    random_actions = [env.action_space.sample() for _ in range(1000)]
    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    for i in range(steps + 200):
        if i == 200:
            start = time.perf_counter()
        action = random_actions[i % 1000] if agent is None else agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        if agent is not None:
            agent.update(obs, action, float(reward), next_obs, terminated, truncated)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def _env_available(env_id: str, algo: str) -> bool:
    try:
        make_env(resolve_config(algo, env_id, overrides={"progress": False})).close()
    except Exception:
        return False
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast-steps", type=int, default=20_000, help="steps per fast measurement")
    parser.add_argument("--autograd-steps", type=int, default=2_000, help="steps per autograd measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--skip-startup", action="store_true", help="skip the cold/warm start-up measurement")
    parser.add_argument("--out", default="bench_fast.json", help="where to write the JSON results")
    args = parser.parse_args(argv)
    if not numba_available():
        raise SystemExit("numba is not installed: pip install numba")
    torch.set_num_threads(1)

    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine(),
                    "load_average_before": os.getloadavg()},
        "settings": vars(args),
        "cases": {},
    }
    if not args.skip_startup:
        results["startup"] = measure_startup()
        print("start-up (s):", results["startup"])

    for name in args.cases:
        case = CASES[name]
        row: dict[str, Any] = {"algo": case["algo"], "env": case["env"], "hidden_sizes": case["hidden"]}
        for kind, steps in (("fast", args.fast_steps), ("autograd", args.autograd_steps)):
            runs = [measure_update_only(case, kind == "fast", steps) for _ in range(args.repeats)]
            row[f"update_only_{kind}"] = {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
        row["update_only_speedup"] = round(row["update_only_autograd"]["act_update_us"]
                                           / row["update_only_fast"]["act_update_us"], 2)
        if _env_available(case["env"], case["algo"]):
            rates: dict[str, list[float]] = {"fast": [], "autograd": [], "env": []}
            for _ in range(args.repeats):
                for kind, steps in (("fast", args.fast_steps), ("autograd", args.autograd_steps),
                                    ("env", args.fast_steps)):
                    rates[kind].append(measure_loop(case, kind, steps))
            for kind, values in rates.items():
                row[f"loop_steps_per_second_{kind}"] = round(statistics.median(values))
            row["loop_speedup"] = round(row["loop_steps_per_second_fast"] / row["loop_steps_per_second_autograd"], 2)
            if name == "halfcheetah_ac":
                row["loop_speedup_vs_original_paper_s8"] = round(
                    row["loop_steps_per_second_fast"] / ORIGINAL_AC_HALFCHEETAH_STEPS_PER_SECOND, 2)
        else:
            row["loop_skipped"] = f"{case['env']} is not available (install its extra)"
        results["cases"][name] = row
        print(name, json.dumps(row, indent=1))

    results["machine"]["load_average_after"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}; load average before/after: {results['machine']['load_average_before']} / "
          f"{results['machine']['load_average_after']} (a busy machine slows every number)")
    return results


if __name__ == "__main__":
    main()
