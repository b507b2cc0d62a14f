"""Compare streamx with the independent reference of PAPER.md (``reference.py``).

    python experiments/independent_check/check.py env --env Walker2d-v4 --steps 4000
    python experiments/independent_check/check.py env --env BreakoutNoFrameskip-v4 --steps 3000
    python experiments/independent_check/check.py agent --algo stream_ac --env Walker2d-v4 --steps 5000 \
        [--fast-path off]
    python experiments/independent_check/check.py agent --algo stream_q --env BreakoutNoFrameskip-v4 --steps 1000

``env``: streamx's wrapped environment (``streamx.envs.make_env`` on the config that
``streamx.run.resolve_config`` gives) and the reference's preprocessing of a raw gymnasium /
ale-py environment are reset with the same seed and fed the same seeded random actions (for
continuous actions, unclipped: the wrappers must clip them); every observation (reset ones
included), reward, termination flag and finished episode's return and length are compared.
For Atari both of streamx's pipelines (``fast`` and ``reference``) are checked, in the loop of
PAPER §9: the environment is reset only when a whole game is over.

``agent``: streamx's own training loop (``streamx.loop.StreamTraining``) runs; hooks on the
agent's act and update pass every transition to the reference as well.

* ``stream_ac``: the reference starts from a copy of streamx's initial weights and then runs on
  its own, never re-synchronised. After every update δ, both α̂, both Σ‖z‖₁ and all weights are
  compared; every sampled action is compared with ``mean + std·ξ`` of the reference's policy,
  ξ drawn from a copy of streamx's generator (so actions come from the current weights).
* ``stream_q`` (Atari): before every update the reference is loaded with streamx's current
  weights and traces, applies the same transition, and Q(s, a), δ, α̂, Σ‖z‖₁, the Watkins cut,
  the new traces and the new weights are compared; every ε-greedy action is predicted from a
  copy of streamx's generator. Re-synchronised, because on the conv net a free-running
  comparison is chaotic: a unit whose normalized pre-activation rounds to the other side of
  LeakyReLU's kink in float32 changes that update's gradient by up to 10 %, and the two runs
  then drift apart whichever implementation is right.

Each command prints a table and writes ``experiments/results/independent_check/<name>.json``
(the maxima, tolerances, counts, versions and the command line); the exit status is 1 when a
difference exceeds its tolerance.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from streamx.envs import make_env, suite_of
from streamx.loop import StreamTraining
from streamx.run import resolve_config

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this folder is not a package
import reference

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "experiments" / "results" / "independent_check"

# -- tolerances, from what was measured --------------------------------------------------------------
VECTOR_ENV_TOL = 1e-5
"""MuJoCo / DM Control observations and rewards, relative (absolute below 1). Measured: bit-identical
(0.0) on Walker2d-v4, Hopper-v4 and dm_control cheetah-run over 3000-3500 steps. Both sides compute
the statistics in float64 and round once to float32, so an honest difference is a last-bit rounding
(≈1e-7); 1e-5 leaves room for another platform's libm, while a wrong formula (biased variance, a
prior count, the wrong ``done`` in the return trace) shows at 1e-4 to 1 in the first episodes."""
ATARI_ENV_TOL = 0.0
"""Atari observations and rewards must be bit-identical. Measured: identical for both pipelines over
3000 steps of Breakout (14 games, 58 lives lost) and 4000 of Enduro. The same emulator frames go
through the same resize and float64 normalization: there is no rounding freedom to allow for."""
EPISODE_RETURN_TOL = 1e-6
"""A finished episode's raw return, relative (a float sum of the same rewards)."""
AC_TOL = 1e-4
"""Stream AC, free-running float32 (relative to each tensor's largest entry; δ and actions relative
above 1, absolute below). Measured on Walker2d-v4: ≤ 6e-6 for weights, 3e-6 for actions, 2.6e-6 for
δ over 10k steps; dm_control cheetah-run: ≤ 2.6e-6 over 3k. Float32 rounding differences grow with
the updates and eventually turn chaotic (Hopper-v4's actor: 1e-5 at 6k steps, 3e-2 at 10k — where a
float32 and a float64 reference diverge from each other just as much), so this tolerance is meant
for runs of ≈5k steps; a wrong term (entropy sign, a trace not reset, κ swapped) moves the weights
by 1e-3 or more within the first episodes."""
Q_TOL = 1e-5
"""Stream Q on Atari, ONE update from identical weights and traces, streamx (float32) against the
reference in float64. Measured on Breakout over 1000 updates, both paths: traces ≤ 2.3e-6, weights
≤ 4.5e-7, α̂ and Σ‖z‖₁ ≤ 7e-7, Q(s, a) and δ ≤ 5e-7 — the rounding of one float32 update."""
KINK_MARGIN = 1e-4
"""An update whose differentiated pass has a unit with |normalized pre-activation| below this may
see that unit on the other side of LeakyReLU's kink in float32 (one at 1.1e-7, at update 1168 of a
seeded Breakout run): its slope is then 1 instead of 0.01 and that update's trace legitimately differs by up
to 10 %. Such an update, when it exceeds Q_TOL, is counted and left out of the maxima."""
MAX_KINK_FRACTION = 0.01
"""More than this fraction of updates left out as kink crossings fails the check."""
TIE_MARGIN = 1e-5
"""Greedy actions whose two best Q-values (float64 reference) differ by less than this may break the
tie differently in float32; a mismatched action prediction there is counted, not failed."""
ACTION_SEED = 123
ACTION_SPREAD = 1.5
"""Random continuous actions: center + half-range × 1.5 × N(0, 1), so that clipping is exercised."""
AC_REFERENCE_DTYPE = torch.float32
"""Free-running: the same precision as streamx, so that both accumulate comparable rounding."""
Q_REFERENCE_DTYPE = torch.float64
"""Re-synchronised: one update against exact arithmetic."""


# -- the report -------------------------------------------------------------------------------------
@dataclass
class Check:
    """The largest difference seen for one quantity, and its tolerance."""

    tolerance: float
    what: str
    value: float = 0.0

    def see(self, value: float) -> None:
        value = float(value)
        self.value = max(self.value, value if np.isfinite(value) else np.inf)  # a NaN must not pass

    @property
    def passed(self) -> bool:
        return self.value <= self.tolerance


@dataclass
class Report:
    """The checks and counts of one command, printed as a table and written as JSON."""

    kind: str
    env: str
    checks: dict[str, Check] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def expect(self, name: str, tolerance: float, what: str) -> None:
        self.checks[name] = Check(tolerance, what)

    def see(self, name: str, value: float) -> None:
        self.checks[name].see(value)

    def count(self, name: str, increment: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + increment

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks.values())

    def print_table(self) -> None:
        width = max(len(name) for name in self.checks)
        print(f"{self.kind} check of {self.env}: " + ", ".join(f"{k}={v}" for k, v in self.info.items()))
        print(f"  {'quantity':<{width}}  {'max difference':>14}  {'tolerance':>9}")
        for name, check in self.checks.items():
            mark = "ok" if check.passed else "FAIL"
            print(f"  {name:<{width}}  {check.value:>14.3e}  {check.tolerance:>9.1e}  {mark}")
        print("  " + ", ".join(f"{k}={v}" for k, v in self.counts.items()))
        print("PASSED" if self.passed else "FAILED")

    def write(self, path: Path, started: float) -> None:
        payload = {
            "kind": self.kind,
            "env": self.env,
            **self.info,
            "passed": self.passed,
            "checks": {name: {"max": check.value, "tolerance": check.tolerance, "passed": check.passed,
                              "what": check.what} for name, check in self.checks.items()},
            "counts": self.counts,
            "versions": versions(),
            "command": shlex.join(["python", os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp", delete=False) as tmp:
            json.dump(payload, tmp, indent=2, ensure_ascii=False)
            tmp.write("\n")
        os.chmod(tmp.name, 0o644)  # a temporary file is private; the result is not
        os.replace(tmp.name, path)
        print(f"wrote {os.path.relpath(path, REPO)}")


def versions() -> dict[str, str | list[str] | None]:
    """Installed versions of what the results depend on, and the streamx source revision."""
    out: dict[str, str | list[str] | None] = {"python": platform.python_version()}
    for dist in ("streamx-rl", "gymnasium", "mujoco", "ale-py", "shimmy", "dm-control", "torch", "numpy",
                 "opencv-python", "opencv-python-headless", "numba"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed
    out["streamx_commit"] = _git("rev-parse", "HEAD").strip() or None
    # read-only: GIT_OPTIONAL_LOCKS=0 keeps `git status` from refreshing the index
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "streamx")
    out["streamx_uncommitted_changes"] = [line[3:] for line in status.splitlines()]
    return out


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False,
                          env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    return done.stdout


# -- helpers ----------------------------------------------------------------------------------------
def unit_diff(actual: Any, expected: Any) -> float:
    """Largest ``|a − e| / max(1, |e|)``: relative above 1, absolute below."""
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(a - e) / np.maximum(1.0, np.abs(e)), initial=0.0))


def scaled_diff(actual: Sequence[Tensor], expected: Sequence[Tensor]) -> float:
    """Largest ``max|a − e| / max|e|`` over pairs of tensors (relative to each tensor's scale)."""
    worst = 0.0
    for a, e in zip(actual, expected, strict=True):
        a64, e64 = a.detach().double(), e.detach().double()
        scale = float(e64.abs().max())
        worst = max(worst, float((a64 - e64).abs().max()) / (scale if scale > 0 else 1.0))
    return worst


def ratio_diff(actual: float, expected: float) -> float:
    return abs(actual / expected - 1.0) if expected else abs(actual)


def layers_of(module: nn.Module) -> list[reference.Layer]:
    """The (weight, bias) of each Linear / Conv2d of a streamx network, in forward order."""
    layers = []
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            if m.bias is None:
                raise SystemExit(f"the reference expects every layer to have a bias, not {m}")
            layers.append((m.weight, m.bias))
    return layers


def flat(layers: Sequence[reference.Layer]) -> list[Tensor]:
    return [t for layer in layers for t in layer]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def slug(env_id: str) -> str:
    return env_id.replace("/", "_")


def atari_game(env_id: str) -> str:
    """``BreakoutNoFrameskip-v4`` or ``ALE/Breakout-v5`` → ``Breakout``."""
    if env_id.endswith("NoFrameskip-v4"):
        return env_id.removesuffix("NoFrameskip-v4")
    if env_id.startswith("ALE/") and env_id.endswith("-v5"):
        return env_id.removeprefix("ALE/").removesuffix("-v5")
    raise SystemExit(f"give an Atari game as <Game>NoFrameskip-v4 or ALE/<Game>-v5, not {env_id}")


def require_paper_preprocessing(config: Any) -> None:
    """The reference implements the paper's defaults only."""
    wrong = {k: getattr(config, k) for k, want in (("obs_normalization", True), ("reward_scaling", True),
                                                   ("bootstrap_on_truncation", False))
             if getattr(config, k) != want}
    if wrong:
        raise SystemExit(f"the reference implements the paper's preprocessing only; this config has {wrong}")


# -- env ----------------------------------------------------------------------------------------------
def compare_step(report: Report, obs: Any, reward: float, terminated: bool, truncated: bool,
                 info: dict[str, Any], ref: reference.Step, prefix: str = "") -> None:
    """One step of streamx's env against the reference's."""
    report.see(f"{prefix}obs", unit_diff(obs, ref.obs))
    report.see(f"{prefix}reward", unit_diff(reward, ref.reward))
    if (bool(terminated), bool(truncated)) != (ref.terminated, ref.truncated):
        report.count(f"{prefix}flag_mismatches")
    if ("episode" in info) != (ref.episode is not None):
        report.count(f"{prefix}episode_mismatches")
    elif ref.episode is not None:
        report.count(f"{prefix}episodes")
        report.see(f"{prefix}episode_return", unit_diff(float(info["episode"]["r"]), ref.episode[0]))
        if int(info["episode"]["l"]) != ref.episode[1]:
            report.count(f"{prefix}episode_mismatches")


def expect_env_checks(report: Report, tolerance: float, return_tolerance: float, prefix: str = "") -> None:
    report.expect(f"{prefix}obs", tolerance, "observation, |Δ| / max(1, |ref|), reset observations included")
    report.expect(f"{prefix}reward", tolerance, "scaled reward, |Δ| / max(1, |ref|)")
    report.expect(f"{prefix}episode_return", return_tolerance,
                  "raw return of each finished episode (for Atari: whole game)")
    report.expect(f"{prefix}flag_mismatches", 0, "steps whose (terminated, truncated) differ")
    report.expect(f"{prefix}episode_mismatches", 0, "episode ends reported by one side only, or of another length")
    report.counts.setdefault(f"{prefix}flag_mismatches", 0)
    report.counts.setdefault(f"{prefix}episode_mismatches", 0)
    report.counts.setdefault(f"{prefix}episodes", 0)


def finish_env_checks(report: Report, prefix: str = "") -> None:
    for name in ("flag_mismatches", "episode_mismatches"):
        report.see(prefix + name, report.counts[prefix + name])


def check_vector_env(args: argparse.Namespace, report: Report) -> None:
    overrides: dict[str, Any] = {"seed": args.seed}
    if args.max_episode_steps is not None:
        overrides["max_episode_steps"] = args.max_episode_steps
    config = resolve_config("stream_ac", args.env, None, overrides)
    require_paper_preprocessing(config)
    if not config.time_feature:
        raise SystemExit("the reference implements the time feature of PAPER §1.7; this config has none")
    streamx_env = make_env(config)
    time_limit = {} if config.max_episode_steps is None else {"max_episode_steps": config.max_episode_steps}
    ref = reference.VectorPreprocessing(gym.make(args.env, **time_limit), config.gamma)
    report.info.update(steps=args.steps, seed=args.seed, time_limit=ref.time_limit)
    expect_env_checks(report, VECTOR_ENV_TOL, EPISODE_RETURN_TOL)

    space = ref.env.action_space
    assert isinstance(space, gym.spaces.Box)  # the Stream AC tasks have continuous actions
    center, half_range = (space.high + space.low) / 2, (space.high - space.low) / 2
    rng = np.random.default_rng(ACTION_SEED)
    obs, _ = streamx_env.reset(seed=args.seed)
    report.see("obs", unit_diff(obs, ref.reset(seed=args.seed)))
    for _ in range(args.steps):
        action = (center + half_range * ACTION_SPREAD * rng.standard_normal(space.shape)).astype(np.float32)
        obs, reward, terminated, truncated, info = streamx_env.step(action.copy())
        step = ref.step(action)
        compare_step(report, obs, float(reward), terminated, truncated, info, step)
        report.count("terminations", int(step.terminated))
        report.count("truncations", int(step.truncated))
        if terminated or truncated or step.terminated or step.truncated:
            obs, _ = streamx_env.reset()
            report.see("obs", unit_diff(obs, ref.reset()))
    finish_env_checks(report)
    streamx_env.close()


def check_atari_env(args: argparse.Namespace, report: Report) -> None:
    report.info.update(steps=args.steps, seed=args.seed, loop="reset only at game over (PAPER §9)")
    for pipeline in ("fast", "reference"):
        prefix = f"{pipeline}/"
        config = resolve_config("stream_q", args.env, None, {"seed": args.seed, "env_kwargs": {"pipeline": pipeline}})
        require_paper_preprocessing(config)
        streamx_env = make_env(config)
        ref = reference.AtariPreprocessing(atari_game(args.env), config.gamma)
        expect_env_checks(report, ATARI_ENV_TOL, ATARI_ENV_TOL, prefix)
        rng = np.random.default_rng(ACTION_SEED)
        obs, _ = streamx_env.reset(seed=args.seed)
        report.see(prefix + "obs", unit_diff(obs, ref.reset(seed=args.seed)))
        for _ in range(args.steps):
            action = int(rng.integers(streamx_env.action_space.n))
            obs, reward, terminated, truncated, info = streamx_env.step(action)
            step = ref.step(action)
            compare_step(report, obs, float(reward), terminated, truncated, info, step, prefix)
            report.count(prefix + "lives_lost", int(step.lost_life))
            if "episode" in info or step.episode is not None:
                obs, _ = streamx_env.reset()
                report.see(prefix + "obs", unit_diff(obs, ref.reset()))
        finish_env_checks(report, prefix)
        streamx_env.close()


def run_env(args: argparse.Namespace) -> Report:
    report = Report("env", args.env)
    if suite_of(args.env) == "atari":
        check_atari_env(args, report)
    else:
        check_vector_env(args, report)
    report.info["episodes"] = max(v for k, v in report.counts.items() if k.endswith("episodes"))
    return report


# -- agent ----------------------------------------------------------------------------------------------
def start_training(args: argparse.Namespace, run_dir: str, **overrides: Any) -> StreamTraining:
    config = resolve_config(args.algo, args.env, None, {
        "seed": args.seed, "total_steps": args.steps, "fast_path": args.fast_path, "run_dir": run_dir,
        "checkpoint_interval": 0, "progress": False, "log_interval": args.steps, "threads": 1, **overrides})
    require_paper_preprocessing(config)
    return StreamTraining(config, None)


def check_stream_ac(args: argparse.Namespace, report: Report, training: StreamTraining) -> None:
    agent, config = training.agent, training.config
    critic = layers_of(agent.critic)
    actor_trunk = layers_of(agent.actor.trunk)
    heads = [(agent.actor.mean_head.weight, agent.actor.mean_head.bias),
             (agent.actor.std_head.weight, agent.actor.std_head.bias)]
    ref = reference.StreamAC(critic, actor_trunk, *heads, lr=config.lr, gamma=config.gamma, lamda=config.lamda,
                             kappa_value=config.kappa_value, kappa_policy=config.kappa_policy,
                             entropy_coef=config.entropy_coef, dtype=AC_REFERENCE_DTYPE)
    streamx_critic, streamx_actor = flat(critic), flat([*actor_trunk, *heads])
    report.expect("action", AC_TOL, "sampled action vs ref mean + std·ξ (same ξ), |Δ| / max(1, |ref|)")
    report.expect("td_error", AC_TOL, "δ, |Δ| / max(1, |ref|)")
    report.expect("critic_step_size", AC_TOL, "critic α̂, relative")
    report.expect("actor_step_size", AC_TOL, "actor α̂, relative")
    report.expect("critic_trace_norm", AC_TOL, "critic Σ‖z‖₁, relative")
    report.expect("actor_trace_norm", AC_TOL, "actor Σ‖z‖₁, relative")
    report.expect("critic_weights", AC_TOL, "critic weights after each update, relative to each tensor's max")
    report.expect("actor_weights", AC_TOL, "actor weights after each update, relative to each tensor's max")
    report.expect("transition_mismatches", 0, "updates whose (s, a) is not what act saw and returned")
    report.counts.update(updates=0, transition_mismatches=0)
    act, update = agent._act, agent._update
    last: dict[str, np.ndarray] = {}

    def checked_act(obs: np.ndarray, deterministic: bool) -> np.ndarray:
        generator = torch.Generator()
        generator.set_state(agent.torch_generator.get_state())
        action = act(obs, deterministic)
        noise = torch.randn((1, action.shape[0]), generator=generator)[0].to(AC_REFERENCE_DTYPE)
        with torch.no_grad():
            mean, std = ref.policy(obs)
        report.see("action", unit_diff(action, (mean + std * noise).numpy()))
        last["obs"], last["action"] = obs.copy(), np.array(action, copy=True)
        return action

    def checked_update(obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray,
                       terminated: bool, truncated: bool) -> dict[str, float]:
        if not (np.array_equal(obs, last["obs"]) and np.array_equal(action, last["action"])):
            report.count("transition_mismatches")
        metrics = update(obs, action, reward, next_obs, terminated, truncated)
        expected = ref.update(obs, action, reward, next_obs, terminated, truncated)
        report.count("updates")
        report.count("episode_ends", int(terminated or truncated))
        report.see("td_error", unit_diff(metrics["td_error"], expected.delta))
        report.see("critic_step_size", ratio_diff(metrics["effective_step_size"], expected.critic_step_size))
        report.see("actor_step_size", ratio_diff(metrics["policy_effective_step_size"], expected.actor_step_size))
        report.see("critic_trace_norm", ratio_diff(metrics["trace_norm"], expected.critic_trace_norm))
        report.see("actor_trace_norm", ratio_diff(metrics["policy_trace_norm"], expected.actor_trace_norm))
        report.see("critic_weights", scaled_diff(streamx_critic, ref.critic_params))
        report.see("actor_weights", scaled_diff(streamx_actor, ref.actor_params))
        return metrics

    agent._act, agent._update = checked_act, checked_update  # what StreamTraining.run calls
    result = training.run()
    report.see("transition_mismatches", report.counts["transition_mismatches"])
    report.info.update(episodes=len(result.episode_returns), reference_dtype=dtype_name(AC_REFERENCE_DTYPE))


def check_stream_q(args: argparse.Namespace, report: Report, training: StreamTraining) -> None:
    agent, config = training.agent, training.config
    layers = layers_of(agent.q_network)
    params = flat(layers)
    ref = reference.StreamQ(layers, lr=config.lr, gamma=config.gamma, lamda=config.lamda, kappa=config.kappa_value,
                            dtype=Q_REFERENCE_DTYPE)
    horizon = (config.exploration_steps if config.exploration_steps is not None
               else config.exploration_fraction * config.total_steps)

    def traces() -> list[Tensor]:
        state = agent.optimizer.state
        return [state[p]["eligibility_trace"].detach().clone() if "eligibility_trace" in state[p]
                else torch.zeros_like(p) for p in params]

    for name, what in (("q_value", "Q(s, a) before the update, |Δ| / max(1, |ref|)"),
                       ("td_error", "δ, |Δ| / max(1, |ref|)"),
                       ("step_size", "α̂, relative"),
                       ("trace_norm", "Σ‖z‖₁, relative"),
                       ("traces", "traces after each uncut update, relative to each tensor's max"),
                       ("weights", "weights after the update, relative to each tensor's max")):
        report.expect(name, Q_TOL, what)
    report.expect("epsilon", 1e-12, "ε reported by streamx vs the linear schedule, absolute")
    report.expect("cut_mismatches", 0, "updates where streamx's traces are zero after the update ≠ ref's cut")
    report.expect("action_mismatches", 0, "ε-greedy actions ≠ the prediction (not counting near-ties)")
    report.expect("kink_fraction", MAX_KINK_FRACTION, "fraction of updates left out as LeakyReLU kink crossings")
    report.counts.update(updates=0, cuts=0, cut_mismatches=0, action_mismatches=0, near_ties=0, kink_updates=0,
                         kink_updates_max_difference=0.0)
    act, update = agent._act, agent._update

    def checked_act(obs: np.ndarray, deterministic: bool) -> int:
        rng = copy.deepcopy(agent.np_random)
        action = act(obs, deterministic)
        ref.load(params, traces())
        q = ref.q_values(obs)
        eps = reference.epsilon(report.counts["updates"], horizon, config.epsilon_start, config.epsilon_end)
        predicted = int(rng.integers(len(q))) if rng.random() < eps else int(q.argmax())
        if predicted != action:
            top = torch.topk(q, 2).values
            report.count("near_ties" if float(top[0] - top[1]) < TIE_MARGIN else "action_mismatches")
        return action

    def checked_update(obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool,
                       truncated: bool) -> dict[str, float]:
        before_weights, before_traces = [p.detach().clone() for p in params], traces()
        q_value = float(agent.q_values(obs)[action])
        metrics = update(obs, action, reward, next_obs, terminated, truncated)
        ref.load(before_weights, before_traces)
        expected = ref.update(obs, action, reward, next_obs, terminated, truncated)
        report.count("updates")
        report.count("cuts", int(expected.cut))
        after_traces = traces()
        if all(not z.any() for z in after_traces) != expected.cut:
            report.count("cut_mismatches")
        diffs = {"q_value": unit_diff(q_value, expected.q_value),
                 "td_error": unit_diff(metrics["td_error"], expected.delta),
                 "step_size": ratio_diff(metrics["effective_step_size"], expected.step_size),
                 "trace_norm": ratio_diff(metrics["trace_norm"], expected.trace_norm),
                 "traces": 0.0 if expected.cut else scaled_diff(after_traces, ref.traces),
                 "weights": scaled_diff(params, ref.params)}
        if expected.kink_distance < KINK_MARGIN and max(diffs.values()) > Q_TOL:
            report.count("kink_updates")
            report.counts["kink_updates_max_difference"] = max(report.counts["kink_updates_max_difference"],
                                                                max(diffs.values()))
        else:
            for name, value in diffs.items():
                report.see(name, value)
        eps = reference.epsilon(report.counts["updates"], horizon, config.epsilon_start, config.epsilon_end)
        report.see("epsilon", abs(metrics["epsilon"] - eps))
        return metrics

    agent._act, agent._update = checked_act, checked_update  # what StreamTraining.run calls
    result = training.run()
    for name in ("cut_mismatches", "action_mismatches"):
        report.see(name, report.counts[name])
    report.see("kink_fraction", report.counts["kink_updates"] / max(1, report.counts["updates"]))
    report.info.update(episodes=len(result.episode_returns), exploration_steps=horizon,
                       reference_dtype=dtype_name(Q_REFERENCE_DTYPE))


def run_agent(args: argparse.Namespace) -> Report:
    report = Report("agent", args.env)
    is_atari = suite_of(args.env) == "atari"
    if (args.algo == "stream_q") != is_atari:
        raise SystemExit("the reference covers stream_ac on MuJoCo / DM Control and stream_q on Atari")
    with tempfile.TemporaryDirectory(prefix="streamx-independent-check-") as run_dir:
        if args.algo == "stream_q":
            # ε decays over this run's own length by default, so that both exploratory (cut) and
            # greedy (uncut) updates are compared
            training = start_training(args, run_dir, exploration_steps=args.exploration_steps or args.steps)
        else:
            training = start_training(args, run_dir)
        report.info.update(algo=args.algo, fast_path=args.fast_path, agent_class=type(training.agent).__name__,
                           steps=args.steps, seed=args.seed)
        (check_stream_q if args.algo == "stream_q" else check_stream_ac)(args, report, training)
    return report


def result_path(args: argparse.Namespace) -> Path:
    if args.command == "env":
        suffix = f"_T{args.max_episode_steps}" if getattr(args, "max_episode_steps", None) else ""
        return args.out / f"env_{slug(args.env)}{suffix}.json"
    return args.out / f"agent_{args.algo}_{slug(args.env)}_{args.fast_path}.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    env = commands.add_parser("env", help="streamx's wrapped env vs the reference preprocessing")
    env.add_argument("--env", required=True, help="e.g. Walker2d-v4, dm_control/cheetah-run-v0, BreakoutNoFrameskip-v4")
    env.add_argument("--steps", type=int, default=3000)
    env.add_argument("--seed", type=int, default=7)
    env.add_argument("--max-episode-steps", type=int, default=None,
                     help="a shorter time limit (MuJoCo / DM Control), to exercise truncation")
    agent = commands.add_parser("agent", help="streamx's training loop vs the reference agent")
    agent.add_argument("--algo", required=True, choices=("stream_ac", "stream_q"))
    agent.add_argument("--env", required=True)
    agent.add_argument("--steps", type=int, default=5000)
    agent.add_argument("--seed", type=int, default=0)
    agent.add_argument("--fast-path", default="auto", choices=("auto", "off"))
    agent.add_argument("--exploration-steps", type=int, default=None,
                       help="stream_q: ε horizon (default: --steps, so ε reaches its final value in the run)")
    for sub in (env, agent):
        sub.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    # the paper's MuJoCo numbers are on the -v4 tasks (PAPER §9): gymnasium's "out of date" notice is expected
    warnings.filterwarnings("ignore", message=r".*is out of date", category=DeprecationWarning)
    started = time.perf_counter()
    report = run_env(args) if args.command == "env" else run_agent(args)
    report.print_table()
    report.write(result_path(args), started)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
