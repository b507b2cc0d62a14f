"""The paper-comparison tables of docs/reproduce.md, from archived runs.

    python experiments/paper_tables.py experiments/results/stream_barrier_mujoco/full \
        experiments/results/stream_barrier_dmc/full experiments/results/minatar/full

For every (env, method) of the given sweep directories (each with its sweep.json) prints one
Markdown row: the paper's final return where the paper reports one for that exact env id and
version (streamx/data/paper_results.yaml), streamx's final return — the mean over seeds of each
run's mean return of the episodes ending in the last ``window`` steps of its budget (PAPER §6),
with a 95 % percentile bootstrap CI over seeds — the seeds finished out of those run, the steps,
the env version, and the median agent steps/s of those runs; under the table, the versions of
the packages that define the task as the runs recorded them (versions.json). A run that has not reached its
budget is never averaged into the final column: the row then gives its interim value (the last
full window it reached) and says so, with the step it reached. "seeds finished" counts against
the seeds the budget plans (sweep.json), and the seeds not started yet are named. With
``--per-seed`` each row is followed by one line per seed: its final return, or how far it got
(the step it stopped at, from summary.json, and its last full window) and why (diverged,
interrupted). Nothing is read from anywhere else.

    python experiments/paper_tables.py --per-seed experiments/results/stream_barrier_dmc/full
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from streamx.analysis import Run, bootstrap_ci, load_sweep, method_sort_key, paper_results, window_means
from streamx.plot import _steps_text as steps_text  # the figures' rounding: 1.78M, 460k

__all__ = ["main", "table_rows"]


def _stopped_at(run: Run) -> int | None:
    """The step a run stopped at, from its summary.json (None without one)."""
    reached = _summary(run).get("steps")
    return reached if isinstance(reached, int) else None


def _interim(run: Run, window: int, reached: int | None) -> tuple[float, int]:
    """(mean return of the last full window the run reached, that window's end step). The step
    reached is where the run stopped (:func:`_stopped_at`), else its last episode's end."""
    if reached is None:
        reached = int(run.steps.max()) if len(run.steps) else 0
    end = (reached // window) * window
    if end == 0:
        return math.nan, 0
    means = window_means(run.steps, run.returns, window, end)
    return float(means[-1]), end


def _summary(run: Run) -> dict:
    try:
        summary = json.loads((run.path / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _steps_per_second(run: Run) -> float:
    try:
        return float(_summary(run).get("steps_per_second", math.nan))
    except (TypeError, ValueError):
        return math.nan


def _planned_seeds(root: Path) -> dict[tuple[str, str], list[int]]:
    """The seeds sweep.json plans for each (env, method)."""
    planned: dict[tuple[str, str], list[int]] = defaultdict(list)
    for entry in json.loads((root / "sweep.json").read_text())["runs"]:
        planned[(str(entry["env"]), str(entry["method"]))].append(int(entry["seed"]))
    return planned


def _seed_list(seeds: list[int]) -> str:
    return (f"seeds {seeds[0]}–{seeds[-1]}" if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1))
            else ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds)))


def seed_lines(run: Run, window: int) -> str:
    """One seed of a row: its final return, or where and why it stopped with its last full window."""
    if run.status == "finished":
        final = window_means(run.steps, run.returns, window, run.total_steps)[-1]
        return f"seed {run.seed}: {final:.1f}"
    reached = _stopped_at(run)
    value, end = _interim(run, window, reached)
    where = f" at {steps_text(reached)}" if reached is not None else ""
    last = f"last full window {value:.1f} (to {_steps(end)})" if end else "no full window"
    return f"seed {run.seed}: {run.status}{where}; {last}"


def _steps(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else (f"{n / 1e3:g}k" if n >= 1000 else str(n))


def _format(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return "–"
    if math.isnan(low):
        return f"{mean:.0f}"
    return f"{mean:.0f} [{low:.0f}, {high:.0f}]"


def table_rows(roots: list[Path]) -> list[dict[str, str]]:
    paper = paper_results()["results"]
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    windows: dict[tuple[str, str], int] = {}
    planned: dict[tuple[str, str], list[int]] = {}
    for root in roots:
        runs, info = load_sweep(root)
        planned.update(_planned_seeds(root))
        for run in runs:
            groups[(run.env, run.method)].append(run)
            windows[(run.env, run.method)] = int(info.get("window") or 50_000)
    rows = []
    for (env, method), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], method_sort_key(kv[0][1]))):
        window = windows[(env, method)]
        finished = [r for r in runs if r.status == "finished"]
        diverged = [r for r in runs if r.status == "diverged"]
        finals = [float(np.nanmean(window_means(r.steps, r.returns, window, r.total_steps)[-1:])) for r in finished]
        mean = float(np.mean(finals)) if finals else math.nan
        low, high = bootstrap_ci(finals) if len(finals) > 1 else (math.nan, math.nan)
        unfinished = [r for r in runs if r.status not in ("finished", "diverged")]
        interim = [_interim(r, window, _stopped_at(r)) for r in unfinished]
        notes = []
        if diverged:
            notes.append(f"{len(diverged)} diverged")
        if interim:
            values = ", ".join(f"{v:.0f} at {_steps(s)}" for v, s in interim if s)
            notes.append(f"{len(interim)} unfinished ({values or 'no full window yet'})")
        runs = sorted(runs, key=lambda r: r.seed)
        seeds = sorted(set(planned.get((env, method), [])) | {r.seed for r in runs})
        not_started = [seed for seed in seeds if seed not in {r.seed for r in runs}]
        if not_started:
            notes.append(f"{_seed_list(not_started)} not started")
        rates = [_steps_per_second(r) for r in finished]
        rates = [x for x in rates if not math.isnan(x)]
        version = env.rsplit("-", 1)[-1] if "-v" in env else "–"
        tasks = sorted({_task_text(r) for r in runs})
        if len(tasks) > 1:
            notes.append("runs of different task versions: " + " / ".join(tasks))
        rows.append({
            "env": env, "method": method,
            "paper": str(paper.get(env, {}).get(method, "–")),
            "streamx": _format(mean, low, high),
            "seeds": f"{len(finished)}/{len(seeds)}",
            "steps": _steps(runs[0].total_steps),
            "version": version,
            "steps_per_second": f"{np.median(rates):,.0f}" if rates else "–",
            "notes": "; ".join(notes),
            "task": " / ".join(tasks),
            "per_seed": "; ".join(seed_lines(r, window) for r in runs),
        })
    return rows


def _task_text(run: Run) -> str:
    """The package versions of a run's task (its versions.json), e.g. ``gymnasium 1.4.0, mujoco 3.17.0``."""
    if run.task_versions is None:
        return "not recorded"
    return ", ".join(f"{name} {version}" for name, version in sorted(run.task_versions.items())) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", type=Path, nargs="+", help="sweep directories holding sweep.json")
    parser.add_argument("--per-seed", action="store_true", help="after each row, each seed's final return or "
                        "where and why it stopped")
    args = parser.parse_args(argv)
    rows = table_rows(args.roots)
    print("| env | method | paper | streamx final, 95 % CI | seeds finished | steps | version | steps/s | notes |")
    print("|---|---|---:|---:|---:|---:|---|---:|---|")
    for r in rows:
        print(f"| {r['env']} | {r['method']} | {r['paper']} | {r['streamx']} | {r['seeds']} | {r['steps']} | "
              f"{r['version']} | {r['steps_per_second']} | {r['notes']} |")
    if args.per_seed:
        print()
        for r in rows:
            print(f"- {r['env']} {r['method']}: {r['per_seed']}")
    tasks = sorted({r["task"] for r in rows})
    print()
    if len(tasks) == 1:
        print(f"Task versions (versions.json) of every run: {tasks[0]}.")
    else:
        for r in rows:
            print(f"Task versions (versions.json), {r['env']} {r['method']}: {r['task']}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
