"""``streamx plot``: learning curves, the stream-barrier figure and rliable aggregates of runs.

    streamx plot runs/sweeps/ablations/smoke                # a sweep root (sweep.json): its labels and window
    streamx plot experiments/ablations.yaml --budget smoke  # the sweep's default root runs/sweeps/<name>/<budget>
    streamx plot runs/hopper/seed0 runs/hopper/seed1        # run directories, or any folder holding them

Writes, into ``--out`` (default ``<sweep root>/plots``, else ``./plots``), each figure as PNG and
PDF with the aggregated numbers beside it as CSV:

    curves_<env>.png/.pdf   curves.csv       mean return per window (PAPER §6), mean ± s.e., 95 % CI
                            curves_runs.csv  each run's own window means (--each-run draws them)
    barrier.png/.pdf        final.csv        final return per method and env (the stream-barrier
                            final_runs.csv   figure), and the per-run numbers behind it
    aggregates.png/.pdf     aggregates.csv   IQM / mean of normalized scores, performance profiles,
                                             probability of improvement P(X > Y)
                            paper.csv        the paper's final returns drawn as reference marks

The paper's final returns (streamx/data/paper_results.yaml) are drawn on the curves and the
stream-barrier figure of the environments they were measured on (same id and version; --no-paper
leaves them out). Every definition is in ``streamx.analysis`` and docs/plotting.md. Without
matplotlib the CSVs are still written.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streamx import analysis
from streamx.analysis import Run
from streamx.errors import ConfigError
from streamx.outputs import atomic_write_bytes, atomic_write_text

__all__ = ["main", "resolve_runs"]

_FORMATS = ("png", "pdf", "svg")
_CURVE_FIELDS = ("method", "env", "window_end", "n_runs", "mean", "stderr", "ci_low", "ci_high")
_RUN_CURVE_FIELDS = ("method", "env", "seed", "window_end", "episodes", "mean", "path")
_FINAL_FIELDS = ("method", "env", "n_runs", "n_unfinished", "n_diverged", "mean", "stderr", "ci_low", "ci_high")
_RUN_FIELDS = ("method", "env", "seed", "final_return", "normalized_score", "normalization", "window",
               "total_steps", "episodes", "finished", "status", "path")
_AGGREGATE_FIELDS = ("method", "statistic", "tau", "value", "ci_low", "ci_high", "n_tasks", "n_runs",
                     "normalization", "versus")
_PAPER_FIELDS = ("env", "method", "paper_method", "paper_return", "source")
_MOST_IMPROVEMENT_PAIRS = 20
"""At most this many P(X > Y) pairs in aggregates.png (aggregates.csv has every pair)."""

NewFigure = Callable[..., Any]
"""Makes a matplotlib Figure with the Agg canvas (see ``_figure_class``)."""


def _parser() -> argparse.ArgumentParser:
    from streamx.cli import _Parser

    parser = _Parser(prog="streamx plot", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="run directories, folders holding runs, sweep roots "
                        "(with sweep.json) or experiment files (experiments/<name>.yaml)")
    parser.add_argument("--out", default=None, help="output folder (default <sweep root>/plots, else ./plots)")
    parser.add_argument("--window", type=int, default=None, help="aggregation window in agent steps "
                        "(default: sweep.json's, else min(50000, total_steps/10) per environment)")
    parser.add_argument("--budget", default="smoke", help="budget of an experiment file's sweep (default smoke)")
    parser.add_argument("--format", default="png,pdf", help="figure formats, comma-separated (png, pdf, svg)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples per CI (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    parser.add_argument("--each-run", action="store_true",
                        help="also draw each run's own curve as a thin line behind its method's mean")
    parser.add_argument("--paper", action=argparse.BooleanOptionalAction, default=True,
                        help="draw the paper's final returns as dashed reference marks on the figures of the "
                        "environments the paper used, same id and version (default on; --no-paper: off)")
    return parser


# --- inputs ---------------------------------------------------------------------------------------


def _experiment_file(path: Path) -> Path | None:
    """The experiment file ``path`` names, as ``streamx sweep`` finds it (the path, the path with
    .yaml, or experiments/<name>.yaml), or None when ``path`` is an existing folder."""
    if path.is_dir():
        return None
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"experiment file {path} does not exist")
        return path
    if path.exists():
        return None
    for candidate in (path.with_suffix(".yaml"), Path("experiments") / path.with_suffix(".yaml").name):
        if candidate.is_file():
            return candidate
    return None


def _experiment_root(path: Path, budget: str) -> Path:
    """The sweep's default output root of an experiment file: runs/sweeps/<name>/<budget>."""
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read experiment file {path}: {exc}") from None
    name = spec["name"] if isinstance(spec, dict) and isinstance(spec.get("name"), str) else path.stem
    root = Path("runs") / "sweeps" / str(name) / budget
    if not root.is_dir():
        raise ConfigError(f"no results of experiment {name!r} at budget {budget!r} in {root}; "
                          f"run `streamx sweep {path} --budget {budget}` first (or pass --budget)")
    return root


def resolve_runs(paths: list[str], budget: str = "smoke") -> tuple[list[Run], dict[str, Any]]:
    """Load every run named by ``paths`` (see the module docstring). Returns the runs and
    ``info``: sweep_roots, budget (or None), window (sweep.json's, or None), missing."""
    runs: dict[Path, Run] = {}
    info: dict[str, Any] = {"sweep_roots": [], "budget": None, "window": None, "missing": 0}
    for raw in paths:
        path = Path(raw)
        experiment = _experiment_file(path)
        if experiment is not None:
            path = _experiment_root(experiment, budget)
            info["budget"] = budget
        if not path.exists():
            raise ConfigError(f"{path} does not exist; give run directories, a folder of runs, a sweep root "
                              "or an experiment file")
        if not path.is_dir():
            raise ConfigError(f"{path} is a file, not a run directory, sweep root or experiment file (.yaml)")
        sweep_roots = sorted(p.parent for p in path.rglob("sweep.json"))
        if (path / "sweep.json").is_file():
            sweep_roots = [path, *[r for r in sweep_roots if r != path]]
        for root in sweep_roots:
            sweep_runs, meta = analysis.load_sweep(root)
            info["sweep_roots"].append(root)
            info["missing"] += meta["missing"]
            info["budget"] = info["budget"] or meta["budget"]
            info["window"] = info["window"] or meta["window"]
            for run in sweep_runs:
                runs.setdefault(run.path.resolve(), run)
        for run_dir in analysis.find_run_dirs(path):
            key = run_dir.resolve()
            if key not in runs:
                runs[key] = analysis.load_run(run_dir)
    if not runs:
        raise ConfigError(f"no runs found in {', '.join(paths)} (a run directory holds config.json and "
                          "episodes.csv; run `streamx sweep` or `streamx train` first)")
    return list(runs.values()), info


# --- output files -----------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(value) else repr(float(value))
    return value


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in fields})
    atomic_write_text(path, buffer.getvalue())


def _figure_class() -> NewFigure | None:
    """matplotlib's Figure with the Agg canvas, or None when matplotlib is not installed. pyplot is
    never imported: no global state, no display needed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None

    def new_figure(**kwargs: Any) -> Any:
        figure = Figure(**kwargs)
        FigureCanvasAgg(figure)
        return figure

    return new_figure


def _save(figure: Any, out: Path, stem: str, formats: list[str]) -> list[Path]:
    written = []
    for fmt in formats:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt, bbox_inches="tight", dpi=150)
        atomic_write_bytes(out / f"{stem}.{fmt}", buffer.getvalue())
        written.append(out / f"{stem}.{fmt}")
    return written


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _safe_name(env: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", env).strip("_")


# Each method a colour of its own, by name (never by a pattern of names): the same in every figure.
# tab20 pairs a dark and a light shade; a method family keeps the paper figure's hue (classic blue,
# PPO1/DQN1 orange, SAC1 green, stream-x red/pink, PPO/DQN purple, SAC brown).
_METHOD_COLORS = {
    "classic_ac": 0, "classic_q": 1, "classic_sarsa": 18, "classic_td": 19,
    "ppo1": 2, "dqn1": 3, "sac1": 4,
    "stream_ac": 6, "stream_td": 7, "stream_q": 12, "stream_sarsa": 13,
    "ppo": 8, "dqn": 9, "sac": 10,
    "avg": 16,
}


def _colors(methods: list[str]) -> dict[str, Any]:
    """A distinct colour for each method of a figure, stable across figures: the methods streamx
    knows keep theirs (:data:`_METHOD_COLORS`, from tab20); any other name (an ablation, a custom
    label, a plugin's algorithm) takes the colour its name hashes to in tab20b — or, if another
    method of the figure already has it, the next free one."""
    from matplotlib import colormaps

    known, others = colormaps["tab20"], colormaps["tab20b"]
    colors: dict[str, Any] = {m: known(_METHOD_COLORS[m]) for m in methods if m in _METHOD_COLORS}
    taken: set[int] = set()
    for method in sorted(m for m in methods if m not in _METHOD_COLORS):
        slot = zlib.crc32(method.encode()) % others.N
        for _ in range(others.N):  # past 20 other methods in one figure the shades repeat
            if slot not in taken:
                break
            slot = (slot + 1) % others.N
        taken.add(slot)
        colors[method] = others(slot)
    return colors


def _unfinished(run: Run) -> bool:
    """Stopped before its budget without an outcome (a diverged run has one: it diverged)."""
    return run.status not in ("finished", "diverged")


def _seed_label(runs: list[Run]) -> str:
    """"3 seeds", "3–5 seeds"; with ", 1 unfinished" when runs stopped before their budget."""
    counts: dict[tuple[str, str], set[int]] = {}
    for run in runs:
        counts.setdefault((run.method, run.env), set()).add(run.seed)
    sizes = sorted({len(seeds) for seeds in counts.values()})
    label = _count(sizes[0], "seed") if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]} seeds"
    unfinished = sum(_unfinished(run) for run in runs)
    return f"{label}, {unfinished} unfinished" if unfinished else label


def _steps_text(steps: float) -> str:
    """Agent steps as the axes write them: 900k, 4.24M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if steps >= scale:
            return f"{steps / scale:.3g}{suffix}"
    return f"{steps:.0f}"


def _method_label(method: str, runs: list[Run]) -> str:
    """The legend entry: ``method (n=seeds)``, and how far each run that stopped early got (the
    step at which a diverged run's summary says it stopped, else its last episode's end), e.g.
    ``stream_q (n=3; diverged: seed 0 at 460k; unfinished: seed 1 to 4.24M)``; three or more
    of a kind as one entry, ``unfinished: seeds 2, 3, 4 to 50k – 1.55M``."""
    label = f"{method} (n={len({run.seed for run in runs})}"
    for kind, word, chosen in (("diverged", "at", lambda run: run.status == "diverged"),
                               ("unfinished", "to", _unfinished)):
        stopped = sorted((run for run in runs if chosen(run)), key=lambda run: run.seed)
        reached = [float(run.stopped_at) if kind == "diverged" and run.stopped_at is not None
                   else float(run.steps[-1]) if len(run.steps) else 0.0 for run in stopped]
        if len(stopped) > 2:  # one entry for them all, so that the legend stays narrow
            span = " – ".join(dict.fromkeys(_steps_text(at) for at in (min(reached), max(reached))))
            label += f"; {kind}: seeds {', '.join(str(run.seed) for run in stopped)} {word} {span}"
        elif stopped:
            label += f"; {kind}: " + ", ".join(f"seed {run.seed} {word} {_steps_text(at)}"
                                               for run, at in zip(stopped, reached))
    return label + ")"


def _curve_figures(new_figure: NewFigure, rows: list[dict[str, Any]], runs: list[Run], windows: dict[str, int],
                   colors: dict[str, Any], subtitle: str, out: Path, formats: list[str],
                   marks: list[dict[str, Any]] | None = None,
                   run_rows: list[dict[str, Any]] | None = None) -> list[Path]:
    """One figure per env; with ``run_rows`` (:func:`streamx.analysis.run_curve_rows`) each run's
    own curve is drawn too, thin, through the windows in which its episodes ended."""
    from matplotlib.ticker import EngFormatter

    written = []
    for env in sorted({r["env"] for r in rows}):
        figure = new_figure(figsize=(7.5, 4.2))
        axes = figure.add_subplot()
        any_partial = False
        for method in sorted({r["method"] for r in rows if r["env"] == env}, key=analysis.method_sort_key):
            cell = [r for r in rows if r["env"] == env and r["method"] == method]
            x = np.array([r["window_end"] for r in cell], dtype=float)
            mean, stderr = (np.array([r[k] for r in cell], dtype=float) for k in ("mean", "stderr"))
            low, high = (np.array([r[k] for r in cell], dtype=float) for k in ("ci_low", "ci_high"))
            cell_runs = [run for run in runs if run.env == env and run.method == method]
            n = len({run.seed for run in cell_runs})
            color = colors[method]
            for path in sorted({r["path"] for r in run_rows or [] if r["env"] == env and r["method"] == method}):
                own = [r for r in run_rows or [] if r["path"] == path and math.isfinite(r["mean"])]
                axes.plot([r["window_end"] for r in own], [r["mean"] for r in own], color=color, linewidth=0.6,
                          alpha=0.45)
            # solid where every seed has an episode in the window; dotted where fewer do (an
            # unfinished run, or one whose episodes are longer than the window)
            whole = np.array([r["n_runs"] >= n for r in cell], dtype=bool)
            marker = "." if len(x) < 30 else None
            axes.plot(x, np.where(whole, mean, np.nan), color=color, label=_method_label(method, cell_runs),
                      marker=marker)
            if not whole.all():
                fewer = ~whole
                partial = fewer.copy()  # with its solid neighbours: one unbroken line
                partial[1:] |= fewer[:-1]
                partial[:-1] |= fewer[1:]
                axes.plot(x, np.where(partial, mean, np.nan), color=color, linestyle=":", marker=marker)
                any_partial = True
            axes.fill_between(x, mean - stderr, mean + stderr, color=color, alpha=0.3, linewidth=0)
            axes.fill_between(x, low, high, color=color, alpha=0.1, linewidth=0)
        for mark in marks or []:  # the paper's final return: a dashed line in the method's colour
            if mark["env"] == env:
                axes.axhline(mark["paper_return"], color=colors[mark["method"]], linestyle="--", linewidth=1.2,
                             label=_paper_label(mark))
        env_runs = [run for run in runs if run.env == env]
        axes.set_title(f"{env} — {', '.join(part for part in (subtitle, _seed_label(env_runs)) if part)}", fontsize=10)
        axes.set_xlabel("agent steps")
        axes.set_ylabel(f"mean return, {windows[env]:,}-step windows")
        axes.xaxis.set_major_formatter(EngFormatter(sep=""))
        legend_title = ("mean ± s.e. (dark),\n95% CI (light)" + ("\ndotted: fewer seeds" if any_partial else "")
                        + ("\nthin: each run" if run_rows else ""))
        axes.legend(fontsize=8, title=legend_title, title_fontsize=7, loc="upper left",
                    bbox_to_anchor=(1.01, 1.0))
        axes.grid(alpha=0.3)
        written += _save(figure, out, f"curves_{_safe_name(env)}", formats)
    return written


def _env_marks(env: str, runs: list[Run]) -> list[dict[str, Any]]:
    """The paper's marks for the methods run on ``env``: one per paper value (methods split by
    task versions share their paper method's mark; it takes the first one's colour)."""
    methods = sorted({run.method for run in runs if run.env == env}, key=analysis.method_sort_key)
    marks, seen = [], set()
    for mark in analysis.paper_marks(env, methods):
        if mark["paper_method"] not in seen:
            seen.add(mark["paper_method"])
            marks.append(mark)
    return marks


def _paper_label(mark: dict[str, Any]) -> str:
    return f"paper: {mark['paper_method']} {mark['paper_return']:g}"


def _barrier_figure(new_figure: NewFigure, rows: list[dict[str, Any]], colors: dict[str, Any], subtitle: str,
                    out: Path, formats: list[str], marks: list[dict[str, Any]] | None = None) -> list[Path]:
    envs = sorted({r["env"] for r in rows})
    columns = min(len(envs), 3)
    lines = math.ceil(len(envs) / columns)
    most = max(sum(r["env"] == env for r in rows) for env in envs)
    figure = new_figure(figsize=(max(4.2, 0.5 * most + 1.5) * columns, 4.0 * lines))
    for index, env in enumerate(envs):
        axes = figure.add_subplot(lines, columns, index + 1)
        cell = sorted((r for r in rows if r["env"] == env), key=lambda r: analysis.method_sort_key(r["method"]))
        x = np.arange(len(cell))
        mean = np.array([r["mean"] for r in cell], dtype=float)
        low = np.array([r["ci_low"] for r in cell], dtype=float)
        high = np.array([r["ci_high"] for r in cell], dtype=float)
        axes.bar(x, np.nan_to_num(mean), color=[colors[r["method"]] for r in cell])
        has_ci = np.isfinite(low) & np.isfinite(high)
        axes.errorbar(x[has_ci], mean[has_ci], yerr=np.vstack([mean - low, high - mean])[:, has_ci], fmt="none",
                      ecolor="black", capsize=4, linewidth=1)
        for i, r in enumerate(cell):  # a learner whose weights blew up has no final return: say so
            note = f"{r['n_diverged']} diverged" if r.get("n_diverged") else (
                "no data" if not np.isfinite(mean[i]) else "")
            if note:
                axes.text(x[i], max(0.0, np.nan_to_num(mean[i])), note, rotation=90, ha="center", va="bottom",
                          fontsize=7)
        axes.set_xticks(x, [f"{r['method']} (n={r['n_runs']})" for r in cell], fontsize=8, rotation=35,
                        ha="right", rotation_mode="anchor")
        position = {r["method"]: i for i, r in enumerate(cell)}
        env_marks = [m for m in marks or [] if m["env"] == env and m["method"] in position]
        for mark in env_marks:  # the paper's final return: a dashed mark across the method's bar
            i = position[mark["method"]]
            axes.plot([x[i] - 0.45, x[i] + 0.45], [mark["paper_return"]] * 2, color=colors[mark["method"]],
                      linestyle="--", linewidth=1.6, label=_paper_label(mark),
                      path_effects=[_outline()])
        if env_marks:
            axes.legend(fontsize=7, loc="upper left", handlelength=2.5)
        axes.set_title(env, fontsize=10)
        axes.axhline(0, color="black", linewidth=0.6)
        axes.grid(axis="y", alpha=0.3)
        if index % columns == 0:
            axes.set_ylabel("final average episodic return")
    figure.suptitle(f"Stream barrier: final return, mean and 95% bootstrap CI — {subtitle}", fontsize=11)
    figure.tight_layout()
    return _save(figure, out, "barrier", formats)


def _outline() -> Any:
    """A thin black outline, so a dashed mark in a bar's own colour shows on the bar."""
    from matplotlib import patheffects

    return patheffects.withStroke(linewidth=2.8, foreground="black")


def _improvement_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The P(X > Y) rows aggregates.png shows: each stream method against every other method
    (or, without one, each method against the methods after it in the paper's order)."""
    pairs = [r for r in rows if r["statistic"] == "prob_improvement"]
    stream = [r for r in pairs if analysis.method_sort_key(r["method"])[0] == 3]
    if stream:
        pairs = stream
    else:
        pairs = [r for r in pairs
                 if analysis.method_sort_key(r["method"]) < analysis.method_sort_key(r["versus"])]
    return pairs[:_MOST_IMPROVEMENT_PAIRS]


def _aggregate_figure(new_figure: NewFigure, rows: list[dict[str, Any]], colors: dict[str, Any], subtitle: str,
                      out: Path, formats: list[str]) -> list[Path]:
    methods = sorted({r["method"] for r in rows if r["statistic"] == "iqm"}, key=analysis.method_sort_key)
    kinds = sorted({k for r in rows for k in r["normalization"].split("+")})
    pairs = _improvement_pairs(rows)
    figure = new_figure(figsize=(16.5 if pairs else 11, max(4.0, 0.3 * len(pairs) + 1.5)))
    columns = 3 if pairs else 2
    left, right = figure.add_subplot(1, columns, 1), figure.add_subplot(1, columns, 2)
    for y, method in enumerate(methods):
        iqm = next(r for r in rows if r["method"] == method and r["statistic"] == "iqm")
        left.errorbar([iqm["value"]], [y], xerr=[[iqm["value"] - iqm["ci_low"]], [iqm["ci_high"] - iqm["value"]]],
                      fmt="o", color=colors[method], capsize=5, linewidth=2)
        profile = [r for r in rows if r["method"] == method and r["statistic"] == "profile"]
        taus = np.array([r["tau"] for r in profile])
        right.plot(taus, [r["value"] for r in profile], color=colors[method], label=method)
        right.fill_between(taus, [r["ci_low"] for r in profile], [r["ci_high"] for r in profile],
                           color=colors[method], alpha=0.2, linewidth=0)
    left.set_yticks(range(len(methods)), methods)
    left.invert_yaxis()
    left.set_xlabel(f"IQM of normalized final score ({', '.join(kinds)}), 95% stratified bootstrap CI")
    left.grid(axis="x", alpha=0.3)
    right.set_xlabel("normalized score τ")
    right.set_ylabel("fraction of runs with score > τ")
    right.set_ylim(-0.02, 1.02)
    right.legend(fontsize=8, loc="lower left")
    right.grid(alpha=0.3)
    if pairs:
        third = figure.add_subplot(1, columns, 3)
        for y, r in enumerate(pairs):
            third.errorbar([r["value"]], [y], xerr=[[r["value"] - r["ci_low"]], [r["ci_high"] - r["value"]]],
                           fmt="o", color=colors[r["method"]], capsize=4, linewidth=2)
        third.set_yticks(range(len(pairs)), [f"P({r['method']} > {r['versus']})" for r in pairs], fontsize=8)
        third.invert_yaxis()
        third.axvline(0.5, color="gray", linestyle=":", linewidth=1)
        third.set_xlim(-0.02, 1.02)
        third.set_xlabel("probability of improvement, 95% stratified bootstrap CI")
        third.grid(axis="x", alpha=0.3)
    figure.suptitle(f"Aggregates over environments — {subtitle}", fontsize=11)
    figure.tight_layout()
    return _save(figure, out, "aggregates", formats)


# --- the command ------------------------------------------------------------------------------------


def _windows(runs: list[Run], window: int | None) -> dict[str, int]:
    if window is not None and window <= 0:
        raise ConfigError(f"--window must be a positive number of steps, got {window}")
    envs = sorted({run.env for run in runs})
    return {env: window or analysis.default_window(min(r.total_steps for r in runs if r.env == env))
            for env in envs}


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(_FORMATS))
    if unknown or not formats:
        raise ConfigError(f"--format takes a comma-separated subset of {', '.join(_FORMATS)}; got {args.format!r}")
    if args.bootstrap < 1:
        raise ConfigError(f"--bootstrap must be at least 1 resample, got {args.bootstrap}")
    runs, info = resolve_runs(args.paths, args.budget)
    runs, split = analysis.split_by_task_versions(runs)
    windows = _windows(runs, args.window if args.window is not None else info["window"])
    if args.out is not None:
        out = Path(args.out)
    elif len(info["sweep_roots"]) == 1:
        out = info["sweep_roots"][0] / "plots"
    else:
        out = Path("plots")
    out.mkdir(parents=True, exist_ok=True)

    curves = analysis.curve_rows(runs, windows, args.bootstrap, args.seed)
    run_curves = analysis.run_curve_rows(runs, windows)
    per_run, final = analysis.final_rows(runs, windows, args.bootstrap, args.seed)
    scores = np.array([r["normalized_score"] for r in per_run], dtype=float)
    scores = scores[np.isfinite(scores)]
    low, high = (min(0.0, scores.min()), max(1.0, scores.max())) if len(scores) else (0.0, 1.0)
    aggregates = analysis.rliable_rows(per_run, np.linspace(low, high, 101), args.bootstrap, args.seed)
    aggregates += analysis.improvement_rows(per_run, args.bootstrap, args.seed)
    envs_sorted = sorted({run.env for run in runs})
    marks = [mark for env in envs_sorted for mark in _env_marks(env, runs)] if args.paper else []

    written = [out / name for name in ("curves.csv", "final.csv", "final_runs.csv", "aggregates.csv",
                                       "curves_runs.csv")]
    _write_csv(written[0], curves, _CURVE_FIELDS)
    _write_csv(written[4], run_curves, _RUN_CURVE_FIELDS)
    _write_csv(written[1], final, _FINAL_FIELDS)
    _write_csv(written[2], per_run, _RUN_FIELDS)
    _write_csv(written[3], aggregates, _AGGREGATE_FIELDS)
    if marks:
        written.append(out / "paper.csv")
        _write_csv(written[-1], marks, _PAPER_FIELDS)

    budget = f"budget {info['budget']}" if info["budget"] else ""
    subtitle = ", ".join(part for part in (budget, _seed_label(runs)) if part)
    new_figure = _figure_class()
    if new_figure is None:
        print("streamx plot: matplotlib is not installed, so only the CSV files were written; "
              "pip install 'streamx-rl[plot]' for figures")
    else:
        colors = _colors(sorted({run.method for run in runs}, key=analysis.method_sort_key))
        written += _curve_figures(new_figure, curves, runs, windows, colors, budget, out, formats,  # seeds per env
                                  marks, run_curves if args.each_run else None)
        written += _barrier_figure(new_figure, final, colors, subtitle, out, formats, marks)
        if any(r["statistic"] == "iqm" for r in aggregates):
            written += _aggregate_figure(new_figure, aggregates, colors, subtitle, out, formats)

    methods, envs = {r.method for r in runs}, {r.env for r in runs}
    incomplete = [run.status for run in runs if not run.finished]
    no_final = sum(not math.isfinite(r["final_return"]) for r in per_run)
    window_text = ", ".join(f"{env} {w:,}" for env, w in windows.items())
    print(f"streamx plot: {_count(len(runs), 'run')} ({_count(len(methods), 'method')} × "
          f"{_count(len(envs), 'environment')}, "
          f"{_seed_label(runs)}); windows (steps): {window_text}")
    if incomplete:
        statuses = ", ".join(f"{status}: {incomplete.count(status)}" for status in sorted(set(incomplete)))
        print(f"  {len(incomplete)} run(s) incomplete ({statuses}): included, flagged finished=False "
              "in final_runs.csv")
    if no_final:
        print(f"  {no_final} run(s) have no episode ending in their last window: left out of final.csv "
              "and the aggregates")
    if info["missing"]:
        print(f"  {info['missing']} run(s) listed in sweep.json have no results yet")
    for line in split:
        print(f"  {line}")
    if marks:
        print(f"  paper reference marks: {', '.join(sorted({m['env'] for m in marks}))} "
              f"({analysis.paper_results().get('source', 'the paper')})")
    if args.paper:
        for env in envs_sorted:
            others = analysis.paper_other_versions(env)
            if others and not any(m["env"] == env for m in marks):
                print(f"  the paper's numbers are for {', '.join(others)}, not {env}: not drawn")
    print(f"  wrote {len(written)} files to {out}/")
    return 0
