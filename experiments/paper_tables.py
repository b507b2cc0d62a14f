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
full window it reached) and says so, with the step it reached. Nothing is read from anywhere else.
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

__all__ = ["main", "table_rows"]


def _interim(run: Run, window: int) -> tuple[float, int]:
    """(mean return of the last full window the run reached, that window's end step)."""
    reached = int(run.steps.max()) if len(run.steps) else 0
    end = (reached // window) * window
    if end == 0:
        return math.nan, 0
    means = window_means(run.steps, run.returns, window, end)
    return float(means[-1]), end


def _steps_per_second(run: Run) -> float:
    try:
        summary = json.loads((run.path / "summary.json").read_text())
        return float(summary.get("steps_per_second", math.nan))
    except (OSError, ValueError):
        return math.nan


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
    for root in roots:
        runs, info = load_sweep(root)
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
        interim = [_interim(r, window) for r in unfinished]
        notes = []
        if diverged:
            notes.append(f"{len(diverged)} diverged")
        if interim:
            values = ", ".join(f"{v:.0f} at {_steps(s)}" for v, s in interim if s)
            notes.append(f"{len(interim)} unfinished ({values or 'no full window yet'})")
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
            "seeds": f"{len(finished)}/{len(runs)}",
            "steps": _steps(runs[0].total_steps),
            "version": version,
            "steps_per_second": f"{np.median(rates):,.0f}" if rates else "–",
            "notes": "; ".join(notes),
            "task": " / ".join(tasks),
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
    args = parser.parse_args(argv)
    rows = table_rows(args.roots)
    print("| env | method | paper | streamx final, 95 % CI | seeds finished | steps | version | steps/s | notes |")
    print("|---|---|---:|---:|---:|---:|---|---:|---|")
    for r in rows:
        print(f"| {r['env']} | {r['method']} | {r['paper']} | {r['streamx']} | {r['seeds']} | {r['steps']} | "
              f"{r['version']} | {r['steps_per_second']} | {r['notes']} |")
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
