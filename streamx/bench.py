"""``streamx bench``: agent steps per second of the whole training loop, side by side.

For each case (algorithm × environment, with the paper's wrappers and network, one torch
thread) it measures, in ONE run with the measurements interleaved so that a busy machine slows
them alike:

* ``env``      — the environment and wrappers alone with random actions (the ceiling);
* ``naive``    — ``benchmarks/naive.py``: the paper's per-step procedure written the plain way
  (per-tensor ObGD loops with a host read per tensor, separate forward passes for s and s',
  distribution objects), standing in for the original code;
* ``autograd`` — streamx's generic agents (``fast_path=off``);
* ``fast``     — streamx's fast path (what ``fast_path=auto`` picks);
* ``api``      — the fast agent driven through its public ``act`` / ``update``, which check every
  argument (:mod:`streamx.validation`), as a loop of one's own would;
* ``unchecked`` — the fast agent with no check at all: the environment without its
  :class:`~streamx.wrappers.CheckFinite` wrapper, the agent's unchecked ``_act`` / ``_update``.

``autograd`` and ``fast`` step as the training loop does (:mod:`streamx.loop`): the environment's
outputs are checked once, by ``CheckFinite``, and handed to the agent's ``_act`` / ``_update``
through :class:`~streamx.loop.TrustedInput`. So ``1 − fast / unchecked`` is what the checks cost
in training and ``1 − api / unchecked`` what they cost per ``act`` / ``update`` call.

and, for Atari cases, the reference set-up that the fast Atari pipeline is measured against:

* ``before``     — the fast path on the reference chain of Atari wrappers (``pipeline=reference``)
  with the env reset after every lost life (``life_loss=reset``);
* ``env_before`` — that environment alone, as ``env``.

It prints ``fast / naive`` against the target speed-up, plus ``fast / autograd``, the input
checks' share ``fast / unchecked`` and ``api / unchecked`` (and, for Atari, ``fast / before`` against its own target).
Results go to a JSON file (``--out``). The start-up cost of the fast path (numba compilation,
cold and from the on-disk cache) is measured in fresh processes unless ``--quick`` or
``--no-startup``.

    streamx bench                                  # every case whose extras are installed
    streamx bench --cases q-cartpole,q-atari-breakout --seconds 20 --out bench.json
    streamx bench --quick                          # ~1 s per measurement, no start-up test
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from streamx.errors import ConfigError
from streamx.loop import TrustedInput
from streamx.outputs import atomic_write_text

__all__ = ["CASES", "Case", "main", "measure_startup", "read_results"]

KINDS = ("env", "naive", "autograd", "fast", "api", "unchecked", "before", "env_before")
_BEFORE = {"before": "fast", "env_before": "env"}  # kind → what it measures, on the previous Atari set-up


@dataclass(frozen=True)
class Case:
    algo: str
    env: str
    target: float
    """The target speed-up: the fast path's required rate over the naive baseline's."""
    original_steps_per_second: float
    """The original code's rate on the same kind of 2-core machine (for context only)."""
    requires: str
    """The module the environment needs (its extra)."""
    before_target: float | None = None
    """Atari: the target speed-up of ``fast`` over ``before`` (the reference Atari set-up)."""


CASES: dict[str, Case] = {
    "ac-halfcheetah": Case("stream_ac", "HalfCheetah-v5", 8.0, 640.0, "mujoco"),
    "q-cartpole": Case("stream_q", "CartPole-v1", 8.0, 1470.0, "gymnasium"),
    "q-minatar-breakout": Case("stream_q", "MinAtar/Breakout-v1", 8.0, 965.0, "minatar"),
    "q-atari-breakout": Case("stream_q", "BreakoutNoFrameskip-v4", 2.5, 263.0, "ale_py", before_target=1.6),
}

_NAIVE_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "naive.py"


def load_naive() -> ModuleType | None:
    """``benchmarks/naive.py`` from the repository checkout next to the package, or None when
    streamx was installed without the repository."""
    if not _NAIVE_PATH.is_file():
        return None
    spec = importlib.util.spec_from_file_location("streamx_bench_naive", _NAIVE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- one measured loop ---------------------------------------------------------------------------

class _Loop:
    """One kind's environment and agent, stepped in chunks; only post-warm-up time counts."""

    def __init__(self, kind: str, case: Case, naive: ModuleType | None):
        from streamx.envs import make_env, resets_only_at_game_over
        from streamx.fast import make_fast_agent
        from streamx.registry import algorithm_class
        from streamx.run import resolve_config

        self.kind = kind
        overrides: dict[str, Any] = {"progress": False, "seed": 0}
        if kind in _BEFORE:
            overrides["life_loss"] = "reset"
        config = resolve_config(case.algo, case.env, overrides=overrides)
        self.env = _previous_atari_env(config) if kind in _BEFORE else make_env(config)
        # the training loop's rule (streamx.run): with life_loss=continue an Atari env is reset only
        # when the game is over, and the learner does not see truncation
        self.whole_games = resets_only_at_game_over(config)
        kind = _BEFORE.get(kind, kind)
        torch.manual_seed(0)
        space, actions = self.env.observation_space, self.env.action_space
        self.agent: Any = None
        if kind == "naive":
            assert naive is not None
            self.agent = naive.make_naive_agent(config, space, actions)
        elif kind == "autograd":
            self.agent = algorithm_class(case.algo)(space, actions, config)
        elif kind in ("fast", "api", "unchecked"):
            self.agent = make_fast_agent(case.algo, space, actions, config)
        # how the agent is driven: as the training loop does, through the public act/update, or unchecked
        self.mode = {"autograd": "loop", "fast": "loop", "api": "api", "unchecked": "bare"}.get(kind, "api")
        if self.mode == "bare":
            _remove_check_finite(self.env)
        self.trusted = TrustedInput(space, case.algo)
        self.env.action_space.seed(0)
        self.random_actions = [self.env.action_space.sample() for _ in range(1000)]
        self.obs, _ = self.env.reset(seed=0)
        self.steps = 0
        self.seconds = 0.0
        self._index = 0

    def run(self, steps: int | None = None, seconds: float | None = None, measure: bool = True) -> None:
        """Step until ``steps`` steps or ``seconds`` seconds have passed."""
        step = self._step_function()
        obs = self.obs if self.agent is None or self.mode == "api" else self._as_input(self.obs)
        done_steps = 0
        start = time.perf_counter()
        while True:
            obs = step(obs)
            done_steps += 1
            if steps is not None and done_steps >= steps:
                break
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
        self.obs = obs
        if measure:
            self.seconds += time.perf_counter() - start
            self.steps += done_steps

    def _as_input(self, obs: Any) -> np.ndarray:
        return self.trusted(obs) if self.mode == "loop" else np.asarray(obs, dtype=np.float32)

    def _step_function(self) -> Any:
        """One step of this kind: act, env.step, update, reset at an episode's end; returns the
        next observation. ``api``, the env and the naive baseline go through ``act`` / ``update``;
        ``loop`` and ``bare`` through the unchecked ``_act`` / ``_update``, the observations made
        float32 by :class:`~streamx.loop.TrustedInput` (``loop``) or only converted (``bare``)."""
        env, agent, whole_games = self.env, self.agent, self.whole_games

        def ended(terminated: bool, truncated: bool, info: dict[str, Any]) -> bool:
            return ("episode" in info) if whole_games else bool(terminated or truncated)

        if agent is None:
            def random_step(obs: Any) -> Any:
                action = self.random_actions[self._index % 1000]
                self._index += 1
                next_obs, _, terminated, truncated, info = env.step(action)
                return env.reset()[0] if ended(terminated, truncated, info) else next_obs
            return random_step
        if self.mode == "api":
            def checked_step(obs: Any) -> Any:
                action = agent.act(obs)
                next_obs, reward, terminated, truncated, info = env.step(action)
                agent.update(obs, action, float(reward), next_obs, terminated, False if whole_games else truncated)
                return env.reset()[0] if ended(terminated, truncated, info) else next_obs
            return checked_step
        as_input, act, learn = self._as_input, agent._act, agent._update

        def unchecked_step(obs: Any) -> Any:
            action = act(obs, False)
            next_obs, reward, terminated, truncated, info = env.step(action)
            next_obs = as_input(next_obs)
            learn(obs, action, float(reward), next_obs, bool(terminated), False if whole_games else bool(truncated))
            return as_input(env.reset()[0]) if ended(terminated, truncated, info) else next_obs
        return unchecked_step

    def close(self) -> None:
        self.env.close()


def _remove_check_finite(env: Any) -> None:
    """Take the CheckFinite wrapper out of ``env``'s chain of wrappers (for the ``unchecked`` kind)."""
    from streamx.wrappers import CheckFinite

    outer = env
    while hasattr(outer, "env"):
        if isinstance(outer.env, CheckFinite):
            outer.env = outer.env.env
            return
        outer = outer.env


def _previous_atari_env(config: Any) -> Any:
    """The Atari env on the reference chain of wrappers (``pipeline=reference``)."""
    from streamx.atari import make_atari

    return make_atari(config.env, gamma=config.gamma, obs_normalization=config.obs_normalization,
                      reward_scaling=config.reward_scaling, max_episode_steps=config.max_episode_steps,
                      pipeline="reference", **config.env_kwargs)


def measure_case(case: Case, kinds: list[str], seconds: float, warmup_steps: int, chunk_seconds: float,
                 naive: ModuleType | None, steps: int | None = None) -> dict[str, dict[str, float]]:
    """Steps/s per kind, measured round-robin in chunks until each kind has run ``seconds``
    (or, when given, ``steps`` steps)."""
    loops = {kind: _Loop(kind, case, naive) for kind in kinds}

    def remaining(loop: _Loop) -> bool:
        return loop.seconds < seconds if steps is None else loop.steps < steps

    try:
        for loop in loops.values():
            loop.run(steps=warmup_steps, measure=False)  # kernels compiled or loaded, caches warm
        while any(remaining(loop) for loop in loops.values()):
            for loop in loops.values():
                if remaining(loop):
                    loop.run(seconds=chunk_seconds if steps is not None else
                             min(chunk_seconds, seconds - loop.seconds + 1e-3),
                             steps=None if steps is None else steps - loop.steps)
    finally:
        for loop in loops.values():
            loop.close()
    return {kind: {"steps": loop.steps, "seconds": round(loop.seconds, 3),
                   "steps_per_second": round(loop.steps / loop.seconds, 1)} for kind, loop in loops.items()}


# -- start-up cost ------------------------------------------------------------------------------

_STARTUP_SCRIPT = """
import time
start = time.perf_counter()
import gymnasium as gym, numpy as np, torch
from streamx.fast import make_fast_agent
imported = time.perf_counter()
torch.set_num_threads(1)
cases = {"mlp_q": ("stream_q", (5,), gym.spaces.Discrete(2), [32, 32]),
         "mlp_ac": ("stream_ac", (18,), gym.spaces.Box(-1.0, 1.0, (6,), np.float32), [128, 128]),
         "minatar_q": ("stream_q", (4, 10, 10), gym.spaces.Discrete(3), [128]),
         "atari_q": ("stream_q", (4, 84, 84), gym.spaces.Discrete(4), [256])}
algo, shape, action_space, hidden = cases[CASE]
space = gym.spaces.Box(-np.inf, np.inf, shape, np.float32)
agent = make_fast_agent(algo, space, action_space, hidden_sizes=hidden)
obs = np.zeros(shape, np.float32)
agent.update(obs, agent.act(obs), 1.0, obs, False, False)
print(imported - start, time.perf_counter() - imported)
"""


def measure_startup(cases: tuple[str, ...] = ("mlp_q", "mlp_ac", "minatar_q", "atari_q")) -> dict[str, Any]:
    """Seconds from a fresh process to the first act+update of a fast agent (the import of
    ``streamx.fast`` counted apart), with an empty numba cache (cold: compiles what the agent
    needs) and then with that cache filled (cached), per network kind."""
    out: dict[str, Any] = {}
    for name in cases:
        with tempfile.TemporaryDirectory() as cache_dir:
            environ = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
            row = {}
            for label in ("cold", "cached"):
                result = subprocess.run([sys.executable, "-c", f"CASE = {name!r}\n" + _STARTUP_SCRIPT], env=environ,
                                        check=True, capture_output=True, text=True)
                import_seconds, first_update_seconds = map(float, result.stdout.split()[-2:])
                row[f"{label}_import_s"] = round(import_seconds, 2)
                row[f"{label}_first_update_s"] = round(first_update_seconds, 2)
            out[name] = row
    return out


# -- the command --------------------------------------------------------------------------------

def read_results(path: str | Path) -> dict[str, Any]:
    """A JSON file ``streamx bench`` wrote, in the current key names (files from earlier
    versions named the original code's rate ``original_steps_per_second_in_issue``)."""
    results = json.loads(Path(path).read_text())
    for row in results.get("cases", {}).values():
        if "original_steps_per_second_in_issue" in row:
            row["original_steps_per_second"] = row.pop("original_steps_per_second_in_issue")
    return results


def _installed(case: Case) -> bool:
    return importlib.util.find_spec(case.requires) is not None


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamx bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=None, help=f"comma-separated cases among {', '.join(CASES)} "
                        "(default: all whose extras are installed)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"what to measure, among {', '.join(KINDS)}")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per kind and case")
    parser.add_argument("--steps", type=int, default=None,
                        help="measure this many steps per kind and case instead of --seconds")
    parser.add_argument("--warmup-steps", type=int, default=200, help="steps run first and not measured")
    parser.add_argument("--chunk-seconds", type=float, default=1.0,
                        help="the kinds take turns in chunks this long (interleaving evens out load)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 s per measurement, 20 warm-up steps, no start-up measurement")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up (compile) measurement")
    parser.add_argument("--out", default="bench.json", help="JSON results file (default: bench.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup_steps, args.chunk_seconds, args.no_startup = 1.0, 20, 0.5, True
    if args.seconds <= 0 or args.warmup_steps < 0 or args.chunk_seconds <= 0 or (
            args.steps is not None and args.steps <= 0):
        raise ConfigError("--seconds, --steps and --chunk-seconds must be positive and --warmup-steps non-negative")
    return args


def _selected_cases(spec: str | None) -> tuple[list[str], list[str]]:
    """(cases to run, notes on cases skipped)."""
    if spec is None:
        chosen = list(CASES)
    else:
        chosen = [name.strip() for name in spec.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in CASES]
        if unknown or not chosen:
            raise ConfigError(f"unknown bench case(s) {', '.join(unknown) or '(none given)'}; "
                              f"choose among {', '.join(CASES)}")
    run, skipped = [], []
    for name in chosen:
        if _installed(CASES[name]):
            run.append(name)
        else:
            skipped.append(f"{name}: skipped, {CASES[name].requires} is not installed (install its streamx extra)")
    return run, skipped


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 2)


def _ratio3(numerator: float | None, denominator: float | None) -> float | None:
    """A ratio to three decimals (the checks' share is a few percent)."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def _format_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _print_table(rows: dict[str, dict[str, Any]]) -> None:
    header = (f"{'case':<20} {'env only':>9} {'naive':>8} {'autograd':>9} {'fast':>8} "
              f"{'fast/naive':>10} {'target':>7} {'pass':>5} {'fast/autograd':>13}")
    print(header)
    print("-" * len(header))
    for name, row in rows.items():
        rates = row["steps_per_second"]
        ratios = row["ratios"]
        passed = {True: "yes", False: "NO", None: "—"}[row["passed"]]
        fast_vs_naive = ratios["fast_vs_naive"]
        fast_vs_autograd = ratios["fast_vs_autograd"]
        print(f"{name:<20} {_format_rate(rates.get('env')):>9} {_format_rate(rates.get('naive')):>8} "
              f"{_format_rate(rates.get('autograd')):>9} {_format_rate(rates.get('fast')):>8} "
              f"{'—' if fast_vs_naive is None else f'{fast_vs_naive:.2f}x':>10} {row['target']:>6.1f}x "
              f"{passed:>5} {'—' if fast_vs_autograd is None else f'{fast_vs_autograd:.2f}x':>13}")
    for name, row in rows.items():
        rates = row["steps_per_second"]
        for kind, what in (("fast", "in training"), ("api", "through act/update")):
            ratio = row["ratios"].get(f"{kind}_vs_unchecked")
            if ratio is not None:
                print(f"{name:<20} input checks {what}: {kind} {_format_rate(rates.get(kind))} vs unchecked "
                      f"{_format_rate(rates.get('unchecked'))} steps/s, {kind}/unchecked {ratio:.3f} "
                      f"(the checks cost {100 * (1 - ratio):.1f} %)")
    for name, row in rows.items():
        rates, ratios = row["steps_per_second"], row["ratios"]
        if ratios.get("fast_vs_before") is None and ratios.get("env_vs_env_before") is None:
            continue
        passed = {True: "yes", False: "NO", None: "—"}[row.get("passed_vs_before")]
        fast_vs_before, env_vs_before = ratios.get("fast_vs_before"), ratios.get("env_vs_env_before")
        print(f"{name:<20} reference set-up (before): env only {_format_rate(rates.get('env_before'))}, "
              f"fast {_format_rate(rates.get('before'))}; "
              f"fast/before {'—' if fast_vs_before is None else f'{fast_vs_before:.2f}x'} "
              f"(target {row['before_target']:.1f}x, pass {passed}), "
              f"env/env_before {'—' if env_vs_before is None else f'{env_vs_before:.2f}x'}")


def main(argv: list[str]) -> int:
    """``streamx bench``; returns 0 (a missed target is reported, not an error)."""
    args = _parse(argv)
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if not kinds or any(kind not in KINDS for kind in kinds):
        raise ConfigError(f"--kinds takes a comma-separated subset of {', '.join(KINDS)}, got {args.kinds!r}")
    names, notes = _selected_cases(args.cases)
    if not names:
        raise ConfigError("no bench case can run here: " + "; ".join(notes))
    out_path = Path(args.out)
    if not out_path.parent.exists():
        raise ConfigError(f"the output directory {out_path.parent} does not exist; create it or pass another --out")

    from streamx.fast import fast_path_supported, numba_available

    torch.set_num_threads(1)  # batch-1 work: one thread per run (docs/performance.md)
    naive = load_naive() if "naive" in kinds else None
    if "naive" in kinds and naive is None:
        notes.append(f"naive baseline unavailable: {_NAIVE_PATH} is missing (streamx was installed without its "
                     "repository); fast/naive ratios are not measured")
        kinds = [kind for kind in kinds if kind != "naive"]
    for note in notes:
        print(note)

    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                    "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch_threads": torch.get_num_threads(), "load_average_before": list(os.getloadavg())},
        "settings": {"cases": names, "kinds": kinds, "seconds": args.seconds, "steps": args.steps,
                     "warmup_steps": args.warmup_steps, "chunk_seconds": args.chunk_seconds},
        "notes": notes,
        "cases": {},
    }
    if numba_available():
        import numba

        results["machine"]["numba"] = numba.__version__

    for name in names:
        case = CASES[name]
        case_kinds = list(kinds)
        row: dict[str, Any] = {"algo": case.algo, "env": case.env, "target": case.target,
                               "original_steps_per_second": case.original_steps_per_second, "notes": []}
        if case.before_target is None:  # the reference set-up differs from the current one only for Atari
            case_kinds = [kind for kind in case_kinds if kind not in _BEFORE]
        else:
            row["before_target"] = case.before_target
        if "fast" in case_kinds or "before" in case_kinds:
            from streamx.envs import make_env
            from streamx.run import resolve_config

            config = resolve_config(case.algo, case.env, overrides={"progress": False})
            env = make_env(config)
            supported, reason = fast_path_supported(config, env.observation_space, env.action_space)
            env.close()
            row["fast_path"] = reason
            if not supported:
                row["notes"].append(f"fast path not measured: {reason}")
                case_kinds = [kind for kind in case_kinds if kind not in ("fast", "api", "unchecked", "before")]
        print(f"measuring {name} ({case.algo} on {case.env}): {', '.join(case_kinds)} ...", flush=True)
        measured = measure_case(case, case_kinds, args.seconds, args.warmup_steps, args.chunk_seconds, naive,
                                args.steps)
        rates = {kind: measured[kind]["steps_per_second"] for kind in measured}
        row["steps_per_second"] = rates
        row["measured"] = measured
        row["ratios"] = {"fast_vs_naive": _ratio(rates.get("fast"), rates.get("naive")),
                         "fast_vs_autograd": _ratio(rates.get("fast"), rates.get("autograd")),
                         "fast_vs_unchecked": _ratio3(rates.get("fast"), rates.get("unchecked")),
                         "api_vs_unchecked": _ratio3(rates.get("api"), rates.get("unchecked")),
                         "autograd_vs_naive": _ratio(rates.get("autograd"), rates.get("naive")),
                         "fast_share_of_env_only": _ratio(rates.get("fast"), rates.get("env"))}
        fast_vs_naive = row["ratios"]["fast_vs_naive"]
        row["passed"] = None if fast_vs_naive is None else bool(fast_vs_naive >= case.target)
        if case.before_target is not None:
            row["ratios"]["fast_vs_before"] = fast_vs_before = _ratio(rates.get("fast"), rates.get("before"))
            row["ratios"]["env_vs_env_before"] = _ratio(rates.get("env"), rates.get("env_before"))
            row["passed_vs_before"] = None if fast_vs_before is None else bool(fast_vs_before >= case.before_target)
        results["cases"][name] = row

    if not args.no_startup and "fast" in kinds and numba_available():
        print("measuring start-up (fresh processes, empty then filled numba cache) ...", flush=True)
        results["startup_seconds"] = measure_startup()

    results["machine"]["load_average_after"] = list(os.getloadavg())
    atomic_write_text(out_path, json.dumps(results, indent=2) + "\n")

    print()
    print("agent steps per second (whole loop: act → env.step with the paper's wrappers → update; 1 thread)")
    _print_table(results["cases"])
    if "startup_seconds" in results:
        print("\nstart-up of the fast path, seconds to the first act+update (cold = empty numba cache):")
        for network, row in results["startup_seconds"].items():
            print(f"  {network:<10} cold {row['cold_first_update_s']:.1f} s, "
                  f"cached {row['cached_first_update_s']:.1f} s (import {row['cached_import_s']:.1f} s)")
    load = results["machine"]
    print(f"\nload average before/after: {', '.join(f'{x:.2f}' for x in load['load_average_before'])} / "
          f"{', '.join(f'{x:.2f}' for x in load['load_average_after'])} on {load['cpus']} CPUs "
          "(a busy machine slows every kind alike; compare ratios)")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
