"""The numbers behind ``streamx plot``: learning curves, final returns and rliable-style aggregates.

Every definition here is written out so a figure can be checked by hand (docs/plotting.md):

* **window mean** (PAPER §6): for each run, the mean return of the episodes ending in each window
  ``(end - window, end]``, ``end = window, 2·window, … ≤ total_steps``; NaN when no episode ends in
  it. Curves average these across seeds: mean, standard error (``std(ddof=1)/√n``) and a 95 %
  percentile bootstrap CI of the mean.
* **final return** of a run (the paper's "final average episodic return"): the mean return of the
  episodes ending in the run's last window ``(total_steps - window, total_steps]``; NaN if none.
* **IQM** (Agarwal et al., 2021, "Deep RL at the edge of the statistical precipice"): the mean of
  the middle 50 % of the pooled normalized run scores, with stratified bootstrap CIs (runs are
  resampled with replacement within each task, i.e. environment).
* **performance profile**: for each τ, the fraction of runs whose normalized score is > τ, averaged
  over tasks (each task weighs the same, as in rliable's ``create_performance_profile``).
* **probability of improvement** P(X > Y) (rliable's ``probability_of_improvement``): per task, the
  Mann–Whitney U statistic of X's scores against Y's divided by ``n_X · n_Y``, i.e. the fraction of
  (X run, Y run) pairs in which X scores higher, a tie counting one half; averaged over the tasks
  both methods ran. Its CI resamples X's and Y's runs independently within each task.
* **normalization**: Atari scores are human-normalized, ``(score - random) / (human - random)``
  with the reference scores in :data:`ATARI_REFERENCE_SCORES`; every other environment is min–max
  normalized over all run scores of that environment (all methods and seeds): 0 = the worst run,
  1 = the best.

* **paper marks**: the paper's final returns (``streamx/data/paper_results.yaml``), matched to runs
  by exact environment id (a ``-v4`` value is never matched to a ``-v5`` environment) and method
  name.

No matplotlib here: the figures live in ``streamx.plot``; this module only needs numpy (and PyYAML
for the paper's numbers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from streamx.errors import ConfigError
from streamx.outputs import read_csv
from streamx.provenance import VERSIONS_FILE

__all__ = [
    "ATARI_REFERENCE_SCORES", "DEFAULT_WINDOW", "Run", "atari_game", "bootstrap_ci", "curve_rows", "default_window",
    "final_return", "final_rows", "find_run_dirs", "human_normalized", "improvement_bootstrap", "improvement_rows",
    "interquartile_mean", "is_run_dir", "load_run", "load_sweep", "mean_stderr", "method_sort_key",
    "normalize_scores", "paper_marks", "paper_method", "paper_other_versions", "paper_results", "performance_profile",
    "probability_of_improvement", "rliable_rows", "run_curve_rows", "stratified_bootstrap", "window_ends",
    "window_means",
]

DEFAULT_WINDOW = 50_000
"""The paper's aggregation window in agent steps (PAPER §6)."""

# Random and human reference scores (random, human) of the 57 Atari games, as distributed with
# DeepMind's DQN Zoo (dqn_zoo/atari_data.py) and used by rliable and most work since Bellemare et al.
# (2017): human scores measured with episodes capped at 30 minutes (108,000 frames). The Nature DQN
# paper (Mnih et al., 2015, Extended Data Table 2) reports human scores from 5-minute episodes
# instead, which differ for several games. Keys are the game names lower-cased without
# separators, as in gymnasium ids.
ATARI_REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "alien": (227.8, 7127.7), "amidar": (5.8, 1719.5), "assault": (222.4, 742.0),
    "asterix": (210.0, 8503.3), "asteroids": (719.1, 47388.7), "atlantis": (12850.0, 29028.1),
    "bankheist": (14.2, 753.1), "battlezone": (2360.0, 37187.5), "beamrider": (363.9, 16926.5),
    "berzerk": (123.7, 2630.4), "bowling": (23.1, 160.7), "boxing": (0.1, 12.1),
    "breakout": (1.7, 30.5), "centipede": (2090.9, 12017.0), "choppercommand": (811.0, 7387.8),
    "crazyclimber": (10780.5, 35829.4), "defender": (2874.5, 18688.9), "demonattack": (152.1, 1971.0),
    "doubledunk": (-18.6, -16.4), "enduro": (0.0, 860.5), "fishingderby": (-91.7, -38.7),
    "freeway": (0.0, 29.6), "frostbite": (65.2, 4334.7), "gopher": (257.6, 2412.5),
    "gravitar": (173.0, 3351.4), "hero": (1027.0, 30826.4), "icehockey": (-11.2, 0.9),
    "jamesbond": (29.0, 302.8), "kangaroo": (52.0, 3035.0), "krull": (1598.0, 2665.5),
    "kungfumaster": (258.5, 22736.3), "montezumarevenge": (0.0, 4753.3), "mspacman": (307.3, 6951.6),
    "namethisgame": (2292.3, 8049.0), "phoenix": (761.4, 7242.6), "pitfall": (-229.4, 6463.7),
    "pong": (-20.7, 14.6), "privateeye": (24.9, 69571.3), "qbert": (163.9, 13455.0),
    "riverraid": (1338.5, 17118.0), "roadrunner": (11.5, 7845.0), "robotank": (2.2, 11.9),
    "seaquest": (68.4, 42054.7), "skiing": (-17098.1, -4336.9), "solaris": (1236.3, 12326.7),
    "spaceinvaders": (148.0, 1668.7), "stargunner": (664.0, 10250.0), "surround": (-10.0, 6.5),
    "tennis": (-23.8, -8.3), "timepilot": (3568.0, 5229.2), "tutankham": (11.4, 167.6),
    "upndown": (533.4, 11693.2), "venture": (0.0, 1187.5), "videopinball": (16256.9, 17667.9),
    "wizardofwor": (563.5, 4756.5), "yarsrevenge": (3092.9, 54576.9), "zaxxon": (32.5, 9173.3),
}

# Column order of the stream-barrier figure (PAPER §6): classic, batch-1 baselines, stream-x,
# then the full batch baselines.
_METHOD_ORDER = (
    (re.compile(r"^classic"), 0), (re.compile(r"^(ppo|dqn)_?1$"), 1), (re.compile(r"^sac_?1$"), 2),
    (re.compile(r"^stream"), 3), (re.compile(r"^(ppo|dqn)$"), 4), (re.compile(r"^sac$"), 5),
)


# --- loading runs -------------------------------------------------------------------------------


@dataclass
class Run:
    """One run directory's episodes and identity."""

    path: Path
    method: str
    env: str
    seed: int
    total_steps: int
    steps: np.ndarray
    """agent step at which each episode ended"""
    returns: np.ndarray
    status: str
    """summary.json's status ("finished", "interrupted", …) or "running/killed" without one"""
    task_versions: dict[str, str | None] | None = None
    """versions.json's ``task``: the versions of the packages that define the task; None when
    the run recorded none (streamx.provenance)"""
    stopped_at: int | None = None
    """summary.json's ``steps``: the agent step at which the run stopped (for a diverged run, the
    step whose update went non-finite); None without one"""

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "episodes.csv").is_file()


def find_run_dirs(root: Path) -> list[Path]:
    """Every directory at or below ``root`` holding config.json and episodes.csv, sorted."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    return sorted(p.parent for p in root.rglob("config.json") if is_run_dir(p.parent))


def load_run(path: Path, method: str | None = None) -> Run:
    """Read one run directory; ``method`` overrides the config's label (e.g. from sweep.json)."""
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text())
        rows = read_csv(path / "episodes.csv")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read run directory {path}: {exc}") from None
    missing = [key for key in ("algo", "env", "total_steps") if key not in config]
    if missing:
        raise ConfigError(f"{path / 'config.json'} lacks {', '.join(missing)}; is it a streamx run directory?")
    try:
        steps = np.array([int(r["step"]) for r in rows], dtype=np.int64)
        returns = np.array([float(r["return"]) for r in rows], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path / 'episodes.csv'} is malformed ({exc}); expected columns step,return") from None
    status, stopped_at = "running/killed", None
    summary = path / "summary.json"
    if summary.is_file():
        try:
            record = json.loads(summary.read_text())
            status = str(record.get("status", status))
            if isinstance(record.get("steps"), int):
                stopped_at = record["steps"]
        except (OSError, ValueError, AttributeError):
            status = "unreadable summary"
    task_versions = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # none recorded, or unreadable
        task_versions = dict(json.loads((path / VERSIONS_FILE).read_text())["task"])
    return Run(path=path, method=method or config.get("label") or config["algo"], env=str(config["env"]),
               seed=int(config.get("seed", 0)), total_steps=int(config["total_steps"]), steps=steps,
               returns=returns, status=status, task_versions=task_versions, stopped_at=stopped_at)


def split_by_task_versions(runs: Sequence[Run]) -> tuple[list[Run], list[str]]:
    """The runs, where those of one (method, env) recorded different task versions (another
    simulator is another task, streamx.provenance) relabelled ``method [mujoco 2.3.7]`` by
    the versions that differ, so that they are never averaged as one (a run without a record,
    made before streamx wrote one, joins them as ``[versions not recorded]``); and one line per
    group so split."""
    relabelled: dict[int, str] = {}
    lines = []
    for (method, env), group in _groups(runs).items():
        kinds = {tuple(sorted(run.task_versions.items())) for run in group if run.task_versions is not None}
        if len(kinds) < 2:  # a run that recorded nothing (an older one) is taken as the others' kind
            continue
        recorded = [dict(kind) for kind in kinds]
        names = sorted({name for versions in recorded for name in versions})
        differing = [name for name in names if len({versions.get(name) for versions in recorded}) > 1]

        def label(run: Run, differing: list[str] = differing, method: str = method) -> str:
            if run.task_versions is None:
                return f"{method} [versions not recorded]"
            return f"{method} [{', '.join(f'{n} {run.task_versions.get(n)}' for n in differing)}]"

        for run in group:
            relabelled[id(run)] = label(run)
        lines.append(f"{method} on {env}: runs made with different task versions, drawn apart: "
                     f"{', '.join(sorted({relabelled[id(run)] for run in group}))}")
    split = [dataclasses.replace(run, method=relabelled[id(run)]) if id(run) in relabelled else run for run in runs]
    return split, lines


def load_sweep(root: Path) -> tuple[list[Run], dict[str, Any]]:
    """The runs of a sweep root (``<root>/sweep.json``) with the sweep's method labels, and its
    metadata: experiment, budget, window (or None), and ``missing``, the number of listed runs
    with no results yet."""
    root = Path(root)
    try:
        meta = json.loads((root / "sweep.json").read_text())
        entries = meta["runs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{root / 'sweep.json'} is not a readable sweep description ({exc})") from None
    runs, missing = [], 0
    for entry in entries:
        run_dir = root / str(entry["dir"])
        if is_run_dir(run_dir):
            runs.append(load_run(run_dir, method=entry.get("method")))
        else:
            missing += 1
    info = {"experiment": meta.get("experiment"), "budget": meta.get("budget"), "window": meta.get("window"),
            "missing": missing}
    return runs, info


def paper_method_ranks() -> tuple[int, ...]:
    """The ranks ``method_sort_key`` gives the paper's methods (anything else ranks after)."""
    return tuple(rank for _, rank in _METHOD_ORDER)


def method_sort_key(method: str) -> tuple[int, str]:
    """PAPER §6 order: classic, PPO1/DQN1, SAC1, stream-x, PPO/DQN, SAC, then anything else."""
    name = method.lower()
    for pattern, rank in _METHOD_ORDER:
        if pattern.search(name):
            return rank, name
    return len(_METHOD_ORDER), name


# --- the paper's numbers ------------------------------------------------------------------------


@functools.cache
def paper_results() -> dict[str, Any]:
    """The paper's final returns shipped with streamx (``streamx/data/paper_results.yaml``):
    ``source`` (a citation), ``methods`` (streamx method → the paper's label) and ``results``
    (env id → {streamx method → final return})."""
    import yaml

    text = resources.files("streamx").joinpath("data", "paper_results.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ConfigError("streamx/data/paper_results.yaml is damaged (no results table); reinstall streamx-rl")
    return data


def paper_method(method: str) -> str | None:
    """The paper table's key of a streamx method name (``stream_ac``, ``PPO_1`` → ``ppo1``, …),
    or None for a method the paper did not run (ablations, custom labels)."""
    name = re.sub(r" \[[^]]*\]$", "", method.strip().lower())  # a label split by task versions
    name = re.sub(r"_(\d+)$", r"\1", name)
    return name if name in paper_results()["methods"] else None


def paper_marks(env: str, methods: Iterable[str]) -> list[dict[str, Any]]:
    """The paper's final return of each of ``methods`` on exactly ``env`` (same id and version),
    in the methods' order; a method the paper has no number for on ``env`` is left out."""
    data = paper_results()
    table = data["results"].get(env, {})
    marks = []
    for method in methods:
        key = paper_method(method)
        if key is not None and key in table:
            marks.append({"method": method, "env": env, "paper_method": data["methods"][key],
                          "paper_return": float(table[key]), "source": data.get("source", "")})
    return marks


def paper_other_versions(env: str) -> list[str]:
    """The paper's environment ids that are another version of ``env`` (``Hopper-v5`` →
    ``["Hopper-v4"]``): numbers not comparable with ``env``'s, so never drawn on its figures."""
    base = re.sub(r"-v\d+$", "", env)
    return sorted(other for other in paper_results()["results"]
                  if other != env and re.sub(r"-v\d+$", "", other) == base)


# --- per-run aggregation ------------------------------------------------------------------------


def default_window(total_steps: int) -> int:
    """50k steps (the paper), shrunk to a tenth of the budget for short (smoke) runs."""
    return max(1, min(DEFAULT_WINDOW, int(total_steps) // 10))


def window_ends(total_steps: int, window: int) -> np.ndarray:
    """``window, 2·window, … ≤ total_steps`` (a trailing partial window is not plotted)."""
    if window <= 0:
        raise ConfigError(f"window must be a positive number of steps, got {window}")
    return np.arange(window, int(total_steps) + 1, window, dtype=np.int64)


def window_means(steps: Sequence[int] | np.ndarray, returns: Sequence[float] | np.ndarray, window: int,
                 total_steps: int) -> np.ndarray:
    """Mean return of the episodes ending in each window ``(end - window, end]`` (PAPER §6); NaN
    for a window in which no episode ends."""
    steps = np.asarray(steps, dtype=np.int64)
    returns = np.asarray(returns, dtype=np.float64)
    ends = window_ends(total_steps, window)
    means = np.full(len(ends), math.nan)
    for i, end in enumerate(ends):
        mask = (steps > end - window) & (steps <= end)
        if mask.any():
            means[i] = returns[mask].mean()
    return means


def final_return(run: Run, window: int) -> float:
    """Mean return of the episodes ending in ``(total_steps - window, total_steps]``; NaN if none
    (an unfinished run usually has none: it is then left out of the final aggregates)."""
    mask = (run.steps > run.total_steps - window) & (run.steps <= run.total_steps)
    return float(run.returns[mask].mean()) if mask.any() else math.nan


# --- statistics -----------------------------------------------------------------------------------


def mean_stderr(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error ``std(ddof=1)/√n`` of the finite values (stderr NaN for n < 2)."""
    x = _finite(values)
    if len(x) == 0:
        return math.nan, math.nan
    stderr = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return float(x.mean()), stderr


def bootstrap_ci(values: Iterable[float], n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                 statistic: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` (default: the mean) over the finite values.

    ``statistic`` maps an array of shape (n_resamples, n) to (n_resamples,). NaNs for n < 2, where
    resampling can only return the single value itself."""
    x = _finite(values)
    if len(x) < 2 or n_resamples < 1:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, len(x), size=(n_resamples, len(x)))]
    stats = samples.mean(axis=1) if statistic is None else statistic(samples)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def interquartile_mean(scores: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean of the middle 50 %: sort, drop ``floor(0.25·n)`` values at each end, average the rest
    (``scipy.stats.trim_mean(x, 0.25)``, as rliable's IQM). ``axis=None`` pools every value."""
    x = np.asarray(scores, dtype=np.float64)
    if axis is None:
        x, axis = x.ravel(), 0
    x = np.sort(x, axis=axis)
    n = x.shape[axis]
    cut = int(0.25 * n)
    middle = np.take(x, np.arange(cut, n - cut), axis=axis)
    result = middle.mean(axis=axis)
    return float(result) if np.ndim(result) == 0 else result


def stratified_bootstrap(scores_by_task: Sequence[np.ndarray], statistic: Callable[[np.ndarray], np.ndarray],
                         n_resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """``statistic`` of ``n_resamples`` stratified resamples: each task's runs are drawn with
    replacement (same count) independently, then the tasks' runs are concatenated along the last
    axis. ``statistic`` maps (n_resamples, n_runs_total) to (n_resamples, …)."""
    rng = np.random.default_rng(seed)
    parts = []
    for scores in scores_by_task:
        scores = np.asarray(scores, dtype=np.float64)
        parts.append(scores[rng.integers(0, len(scores), size=(n_resamples, len(scores)))])
    return statistic(np.concatenate(parts, axis=1))


def performance_profile(scores_by_task: Sequence[np.ndarray], taus: np.ndarray) -> np.ndarray:
    """For each τ, the fraction of runs with score > τ, averaged over tasks."""
    taus = np.asarray(taus, dtype=np.float64)
    fractions = [(np.asarray(s, dtype=np.float64)[:, None] > taus[None, :]).mean(axis=0) for s in scores_by_task]
    return np.mean(fractions, axis=0)


def probability_of_improvement(x_by_task: Sequence[np.ndarray], y_by_task: Sequence[np.ndarray]) -> float:
    """P(X > Y) averaged over tasks (parallel lists, one array of run scores per task): per task,
    the fraction of (x, y) pairs with x > y, ties counting one half (the Mann–Whitney U statistic
    of x over ``n_x · n_y``), as rliable's ``probability_of_improvement``."""
    if len(x_by_task) != len(y_by_task) or not x_by_task:
        raise ValueError("probability_of_improvement needs the same, non-empty list of tasks for X and Y")
    per_task = [_pairwise_wins(np.asarray(x, dtype=np.float64)[None, :], np.asarray(y, dtype=np.float64)[None, :])[0]
                for x, y in zip(x_by_task, y_by_task)]
    return float(np.mean(per_task))


def improvement_bootstrap(x_by_task: Sequence[np.ndarray], y_by_task: Sequence[np.ndarray], n_resamples: int = 2000,
                          seed: int = 0) -> np.ndarray:
    """P(X > Y) of ``n_resamples`` resamples that draw, within each task, X's runs and Y's runs
    independently with replacement (rliable's ``StratifiedIndependentBootstrap``)."""
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples)
    for x, y in zip(x_by_task, y_by_task):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        x_samples = x[rng.integers(0, len(x), size=(n_resamples, len(x)))]
        y_samples = y[rng.integers(0, len(y), size=(n_resamples, len(y)))]
        total += _pairwise_wins(x_samples, y_samples)
    return total / len(x_by_task)


def _pairwise_wins(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows of x (k, n) against rows of y (k, m): the fraction of pairs with x > y, ties ½."""
    wins = (x[:, :, None] > y[:, None, :]).mean(axis=(1, 2))
    ties = (x[:, :, None] == y[:, None, :]).mean(axis=(1, 2))
    return np.asarray(wins + 0.5 * ties, dtype=np.float64)


def _finite(values: Iterable[float]) -> np.ndarray:
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


# --- normalization ----------------------------------------------------------------------------------


def atari_game(env_id: str) -> str | None:
    """The reference-table key of an Atari env id (``ALE/Breakout-v5``, ``BreakoutNoFrameskip-v4``,
    ``Pong``), or None for anything else (MinAtar included)."""
    name = env_id
    if name.startswith("ALE/"):
        name = name[4:]
    elif "/" in name:
        return None
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"(NoFrameskip|Deterministic)$", "", name)
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return key if key in ATARI_REFERENCE_SCORES else None


def human_normalized(env_id: str, score: float) -> float:
    """``(score - random) / (human - random)`` for an Atari game; raises ConfigError otherwise."""
    game = atari_game(env_id)
    if game is None:
        raise ConfigError(f"no human reference score for {env_id!r} (only the Atari-57 games have one)")
    random, human = ATARI_REFERENCE_SCORES[game]
    return (score - random) / (human - random)


def normalize_scores(envs: Sequence[str], scores: Sequence[float]) -> tuple[np.ndarray, list[str]]:
    """Normalize run scores (parallel lists): human-normalized for Atari games, min–max over all
    runs of the same environment otherwise (a constant environment maps to 0). Returns the scores
    and, per run, the normalization used ("human", "min-max")."""
    scores_arr = np.asarray(scores, dtype=np.float64)
    out = np.full(len(scores_arr), math.nan)
    kinds: list[str] = []
    for i, (env, score) in enumerate(zip(envs, scores_arr)):
        if atari_game(env) is not None:
            out[i] = human_normalized(env, score)
            kinds.append("human")
            continue
        same = np.array([s for e, s in zip(envs, scores_arr) if e == env])
        same = same[np.isfinite(same)]
        kinds.append("min-max")
        if math.isfinite(score) and len(same):
            low, high = same.min(), same.max()
            out[i] = (score - low) / (high - low) if high > low else 0.0
    return out, kinds


# --- tables -------------------------------------------------------------------------------------------


def _groups(runs: Sequence[Run]) -> dict[tuple[str, str], list[Run]]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in sorted(runs, key=lambda r: (method_sort_key(r.method), r.env, r.seed)):
        groups.setdefault((run.method, run.env), []).append(run)
    return groups


def curve_rows(runs: Sequence[Run], windows: dict[str, int], n_resamples: int = 2000,
               seed: int = 0) -> list[dict[str, Any]]:
    """One row per (method, env, window end): n_runs (runs with an episode in the window), mean,
    stderr, ci_low, ci_high (95 % percentile bootstrap of the mean across runs)."""
    rows = []
    for (method, env), group in _groups(runs).items():
        window = windows[env]
        ends = window_ends(max(r.total_steps for r in group), window)
        per_run = np.full((len(group), len(ends)), math.nan)
        for i, run in enumerate(group):
            means = window_means(run.steps, run.returns, window, run.total_steps)
            per_run[i, :len(means)] = means
        for j, end in enumerate(ends):
            values = _finite(per_run[:, j])
            mean, stderr = mean_stderr(values)
            low, high = bootstrap_ci(values, n_resamples, seed=seed)
            rows.append({"method": method, "env": env, "window_end": int(end), "n_runs": len(values),
                         "mean": mean, "stderr": stderr, "ci_low": low, "ci_high": high})
    return rows


def run_curve_rows(runs: Sequence[Run], windows: dict[str, int]) -> list[dict[str, Any]]:
    """One row per (run, window end): how many episodes ended in the window and their mean return
    (NaN when none did) — each seed's own curve, the rows :func:`curve_rows` averages."""
    rows = []
    for (method, env), group in _groups(runs).items():
        window = windows[env]
        for run in group:
            ends = window_ends(run.total_steps, window)
            means = window_means(run.steps, run.returns, window, run.total_steps)
            counts = [int(((run.steps > end - window) & (run.steps <= end)).sum()) for end in ends]
            rows += [{"method": method, "env": env, "seed": run.seed, "window_end": int(end), "episodes": int(count),
                      "mean": float(mean), "path": str(run.path)}
                     for end, mean, count in zip(ends, means, counts, strict=True)]
    return rows


def final_rows(runs: Sequence[Run], windows: dict[str, int], n_resamples: int = 2000,
               seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-run final returns (with normalized scores) and their per (method, env) aggregate:
    mean, stderr and 95 % bootstrap CI over the runs that have a final return."""
    per_run: list[dict[str, Any]] = []
    for (method, env), group in _groups(runs).items():
        for run in group:
            per_run.append({"method": method, "env": env, "seed": run.seed, "final_return": final_return(
                run, windows[env]), "window": windows[env], "total_steps": run.total_steps,
                "episodes": len(run.steps), "finished": run.finished, "status": run.status, "path": str(run.path)})
    normalized, kinds = normalize_scores([r["env"] for r in per_run], [r["final_return"] for r in per_run])
    for row, score, kind in zip(per_run, normalized, kinds):
        row["normalized_score"], row["normalization"] = float(score), kind
    aggregate = []
    for method, env in _groups(runs):
        rows = [r for r in per_run if r["method"] == method and r["env"] == env]
        values = _finite([r["final_return"] for r in rows])
        mean, stderr = mean_stderr(values)
        low, high = bootstrap_ci(values, n_resamples, seed=seed)
        aggregate.append({"method": method, "env": env, "n_runs": len(values), "n_unfinished": sum(
            not r["finished"] for r in rows), "n_diverged": sum(r["status"] == "diverged" for r in rows),
            "mean": mean, "stderr": stderr, "ci_low": low, "ci_high": high})
    return per_run, aggregate


def rliable_rows(per_run: Sequence[dict[str, Any]], taus: np.ndarray, n_resamples: int = 2000,
                 seed: int = 0) -> list[dict[str, Any]]:
    """Per method: IQM and mean of the normalized final scores with 95 % stratified bootstrap CIs
    (statistic "iqm", "mean"), and the performance profile at each τ with its CI ("profile")."""
    taus = np.asarray(taus, dtype=np.float64)
    rows: list[dict[str, Any]] = []
    methods = sorted({r["method"] for r in per_run}, key=method_sort_key)
    tail = 2.5
    for method in methods:
        tasks: dict[str, list[float]] = {}
        for r in per_run:
            if r["method"] == method and math.isfinite(r["normalized_score"]):
                tasks.setdefault(r["env"], []).append(r["normalized_score"])
        if not tasks:
            continue
        by_task = [np.array(tasks[env]) for env in sorted(tasks)]
        pooled = np.concatenate(by_task)
        kinds = sorted({r["normalization"] for r in per_run if r["method"] == method})
        common = {"method": method, "n_tasks": len(by_task), "n_runs": len(pooled), "normalization": "+".join(kinds)}
        stats = {
            "iqm": (interquartile_mean(pooled), lambda s: interquartile_mean(s, axis=1)),
            "mean": (float(pooled.mean()), lambda s: s.mean(axis=1)),
        }
        for name, (point, statistic) in stats.items():
            boot = stratified_bootstrap(by_task, statistic, n_resamples, seed)
            low, high = np.percentile(boot, [tail, 100 - tail])
            rows.append({**common, "statistic": name, "tau": math.nan, "value": point, "ci_low": float(low),
                         "ci_high": float(high)})
        profile = performance_profile(by_task, taus)
        sizes = np.cumsum([0] + [len(t) for t in by_task])

        def profile_statistic(samples: np.ndarray, sizes: np.ndarray = sizes) -> np.ndarray:
            above = samples[:, :, None] > taus[None, None, :]
            return np.mean([above[:, a:b].mean(axis=1) for a, b in itertools.pairwise(sizes)], axis=0)

        boot = stratified_bootstrap(by_task, profile_statistic, n_resamples, seed)
        lows, highs = np.percentile(boot, [tail, 100 - tail], axis=0)
        for tau, value, low, high in zip(taus, profile, lows, highs):
            rows.append({**common, "statistic": "profile", "tau": float(tau), "value": float(value),
                         "ci_low": float(low), "ci_high": float(high)})
    return rows


def improvement_rows(per_run: Sequence[dict[str, Any]], n_resamples: int = 2000, seed: int = 0,
                     key: str = "normalized_score") -> list[dict[str, Any]]:
    """For every ordered pair of methods (X, Y) that share at least one environment: P(X > Y) over
    the environments both ran (statistic "prob_improvement", ``versus`` = Y) with its 95 %
    stratified bootstrap CI. Scores are each run's ``key`` (a per-task monotone normalization
    does not change it)."""
    scores: dict[str, dict[str, list[float]]] = {}
    for r in per_run:
        value = float(r[key])
        if math.isfinite(value):
            scores.setdefault(r["method"], {}).setdefault(r["env"], []).append(value)
    methods = sorted(scores, key=method_sort_key)
    rows: list[dict[str, Any]] = []
    tail = 2.5
    for x_method, y_method in itertools.permutations(methods, 2):
        tasks = sorted(set(scores[x_method]) & set(scores[y_method]))
        if not tasks:
            continue
        x_by_task = [np.array(scores[x_method][env]) for env in tasks]
        y_by_task = [np.array(scores[y_method][env]) for env in tasks]
        boot = improvement_bootstrap(x_by_task, y_by_task, n_resamples, seed)
        low, high = np.percentile(boot, [tail, 100 - tail])
        rows.append({"method": x_method, "versus": y_method, "statistic": "prob_improvement", "tau": math.nan,
                     "value": probability_of_improvement(x_by_task, y_by_task), "ci_low": float(low),
                     "ci_high": float(high), "n_tasks": len(tasks),
                     "n_runs": sum(len(t) for t in x_by_task) + sum(len(t) for t in y_by_task),
                     "normalization": "+".join(sorted({r["normalization"] for r in per_run
                                                       if r["method"] in (x_method, y_method)}))})
    return rows
