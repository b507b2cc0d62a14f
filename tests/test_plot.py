"""streamx.analysis (hand-computed aggregates) and `streamx plot` on fake run directories."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from streamx import analysis, cli, plot
from streamx.errors import ConfigError

# --- the definitions, by hand ------------------------------------------------------------------------


def test_window_means_end_inclusive_and_empty_window_is_nan():
    steps, returns = [50, 100, 150, 160, 350], [1.0, 3.0, 2.0, 4.0, 8.0]
    means = analysis.window_means(steps, returns, window=100, total_steps=400)
    assert means[:2].tolist() == [2.0, 3.0]  # step 100 ends in (0, 100]
    assert math.isnan(means[2])  # nothing ends in (200, 300]
    assert means[3] == 8.0
    assert analysis.window_ends(450, 100).tolist() == [100, 200, 300, 400]  # the partial window is dropped


def test_default_window_shrinks_for_smoke_budgets():
    assert analysis.default_window(2_000_000) == 50_000
    assert analysis.default_window(1000) == 100
    assert analysis.default_window(5) == 1


def test_mean_stderr_ignores_nan():
    mean, stderr = analysis.mean_stderr([1.0, 2.0, 3.0, 4.0, math.nan])
    assert mean == 2.5
    assert stderr == pytest.approx(math.sqrt(5 / 3) / 2)  # std(ddof=1) = √(5/3), n = 4
    assert math.isnan(analysis.mean_stderr([7.0])[1])


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = [1.0, 2.0, 4.0, 8.0, 16.0]
    low, high = analysis.bootstrap_ci(values, 500, seed=3)
    assert (low, high) == analysis.bootstrap_ci(values, 500, seed=3)
    assert 1.0 <= low < np.mean(values) < high <= 16.0
    assert analysis.bootstrap_ci([5.0, 5.0, 5.0], 100) == (5.0, 5.0)
    assert all(math.isnan(v) for v in analysis.bootstrap_ci([5.0], 100))


def test_interquartile_mean():
    assert analysis.interquartile_mean(np.array([10, 1, 2, 3, 100, 4, 5, 6])) == 4.5  # mean of 3, 4, 5, 6
    assert analysis.interquartile_mean(np.array([0, 1, 2, 100])) == 1.5
    assert analysis.interquartile_mean(np.array([1, 2, 9])) == 4.0  # floor(0.75) = 0 trimmed
    rows = analysis.interquartile_mean(np.array([[0, 1, 2, 100], [4, 3, 2, 1]]), axis=1)
    assert rows.tolist() == [1.5, 2.5]


def test_stratified_bootstrap_keeps_tasks_apart_and_is_deterministic():
    by_task = [np.array([0.0, 0.0]), np.array([1.0, 1.0, 1.0])]
    means = analysis.stratified_bootstrap(by_task, lambda s: s.mean(axis=1), 50, seed=1)
    assert means.shape == (50,)
    assert np.allclose(means, 3 / 5)  # every resample keeps 2 runs of task A, 3 of task B
    by_task = [np.array([0.0, 1.0, 5.0]), np.array([2.0, 3.0])]
    first = analysis.stratified_bootstrap(by_task, lambda s: s.mean(axis=1), 200, seed=7)
    assert np.array_equal(first, analysis.stratified_bootstrap(by_task, lambda s: s.mean(axis=1), 200, seed=7))
    assert not np.array_equal(first, analysis.stratified_bootstrap(by_task, lambda s: s.mean(axis=1), 200, seed=8))


def test_performance_profile():
    by_task = [np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.8])]
    profile = analysis.performance_profile(by_task, np.array([0.0, 0.5, 1.0]))
    assert profile == pytest.approx([1.0, (1 / 3 + 1 / 2) / 2, 0.0])  # strictly greater than τ


def test_human_normalization():
    assert analysis.human_normalized("ALE/Breakout-v5", 30.5) == pytest.approx(1.0)
    assert analysis.human_normalized("BreakoutNoFrameskip-v4", 1.7) == pytest.approx(0.0)
    assert analysis.human_normalized("ALE/Enduro-v5", 860.5 / 2) == pytest.approx(0.5)
    assert analysis.human_normalized("PongNoFrameskip-v4", 14.6) == pytest.approx(1.0)
    assert analysis.human_normalized("ALE/MontezumaRevenge-v5", 4753.3) == pytest.approx(1.0)
    assert analysis.atari_game("MinAtar/Breakout-v1") is None
    assert analysis.atari_game("Hopper-v5") is None
    with pytest.raises(ConfigError, match="no human reference"):
        analysis.human_normalized("Hopper-v5", 1.0)
    scores, kinds = analysis.normalize_scores(["Hopper-v5", "Hopper-v5", "Hopper-v5", "ALE/Pong-v5"],
                                              [10.0, 30.0, 20.0, -20.7])
    assert scores.tolist() == pytest.approx([0.0, 1.0, 0.5, 0.0])
    assert kinds == ["min-max", "min-max", "min-max", "human"]


def test_probability_of_improvement_by_hand():
    # task A: x = 1, 2, 3 against y = 2, 2: pairs won 0 + 0 + 1·2, tied 0 + 2 + 0 → (2 + ½·2) / 6 = ½
    # task B: x = 3, 4 against y = 1, 2, 3: won 2 + 3, tied 1 → (5 + ½) / 6 = 11/12
    x = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0])]
    y = [np.array([2.0, 2.0]), np.array([1.0, 2.0, 3.0])]
    assert analysis.probability_of_improvement(x, y) == pytest.approx((1 / 2 + 11 / 12) / 2)
    assert analysis.probability_of_improvement(y, x) == pytest.approx(1 - (1 / 2 + 11 / 12) / 2)
    assert analysis.probability_of_improvement([np.array([5.0, 5.0])], [np.array([5.0])]) == 0.5
    boot = analysis.improvement_bootstrap([np.array([5.0, 6.0])], [np.array([1.0, 2.0])], 100, seed=2)
    assert boot.shape == (100,) and np.all(boot == 1.0)  # every resample: x wins every pair
    boot = analysis.improvement_bootstrap(x, y, 300, seed=4)
    assert np.array_equal(boot, analysis.improvement_bootstrap(x, y, 300, seed=4))
    assert boot.min() >= 0.25 and boot.max() <= 1.0  # task A in [0, 1], task B in [½, 1]
    with pytest.raises(ValueError, match="same, non-empty list of tasks"):
        analysis.probability_of_improvement(x, y[:1])


def test_improvement_rows_use_the_shared_environments_only():
    per_run = [{"method": m, "env": e, "normalized_score": v, "normalization": "min-max"} for m, e, v in [
        ("stream_ac", "A", 3.0), ("stream_ac", "A", 4.0), ("stream_ac", "B", 9.0),
        ("ppo", "A", 1.0), ("ppo", "A", 2.0), ("ppo", "A", 3.0), ("ppo", "C", 0.0), ("ppo", "A", math.nan)]]
    rows = {(r["method"], r["versus"]): r for r in analysis.improvement_rows(per_run, 200, seed=0)}
    assert list(rows) == [("stream_ac", "ppo"), ("ppo", "stream_ac")]  # the paper's order: stream-x, then PPO
    assert rows["stream_ac", "ppo"]["value"] == pytest.approx(11 / 12)  # task A only (B, C not shared)
    assert rows["ppo", "stream_ac"]["value"] == pytest.approx(1 / 12)
    assert rows["stream_ac", "ppo"]["n_tasks"] == 1 and rows["stream_ac", "ppo"]["n_runs"] == 5
    assert rows["stream_ac", "ppo"]["ci_low"] <= 11 / 12 <= rows["stream_ac", "ppo"]["ci_high"] == 1.0


def test_the_shipped_paper_results_are_the_papers_table():
    data = analysis.paper_results()
    table = data["results"]
    assert sorted(table) == sorted(["Hopper-v4", "Walker2d-v4", "dm_control/dog-stand-v0",
                                    "dm_control/cheetah-run-v0", "BreakoutNoFrameskip-v4", "EnduroNoFrameskip-v4"])
    assert table["Hopper-v4"] == {"classic_ac": 0, "ppo1": 449, "sac1": 276, "stream_ac": 2173, "ppo": 2041,
                                  "sac": 2304}
    assert table["Walker2d-v4"]["sac"] == 5098 and table["dm_control/dog-stand-v0"]["stream_ac"] == 757
    assert table["dm_control/cheetah-run-v0"]["ppo1"] == 180
    assert table["BreakoutNoFrameskip-v4"] == {"classic_q": 43, "dqn1": 2, "stream_q": 225, "dqn": 385}
    assert table["EnduroNoFrameskip-v4"]["stream_q"] == 1156  # no SAC / SAC1 on Atari: absent, not 0
    assert analysis.paper_method("PPO_1") == "ppo1" and analysis.paper_method("no_obgd") is None
    marks = analysis.paper_marks("Hopper-v4", ["classic_ac", "no_obgd", "stream_ac"])
    assert [(m["method"], m["paper_method"], m["paper_return"]) for m in marks] == [
        ("classic_ac", "classic", 0.0), ("stream_ac", "stream-x", 2173.0)]
    assert analysis.paper_marks("Hopper-v5", ["stream_ac"]) == []  # never a -v4 number on -v5
    assert analysis.paper_marks("ALE/Breakout-v5", ["stream_q"]) == []
    assert analysis.paper_other_versions("Hopper-v5") == ["Hopper-v4"]
    assert analysis.paper_other_versions("Hopper-v4") == [] and analysis.paper_other_versions("CartPole-v1") == []


def test_method_order_follows_the_paper():
    methods = ["sac", "stream_ac", "dqn", "ppo1", "classic_ac", "sac1", "zzz", "dqn1"]
    assert sorted(methods, key=analysis.method_sort_key) == [
        "classic_ac", "dqn1", "ppo1", "sac1", "stream_ac", "dqn", "sac", "zzz"]


# --- streamx plot on fake runs ---------------------------------------------------------------------------

METHODS = {"classic_ac": 0.0, "stream_ac": 100.0}
ENVS = {"ALE/Breakout-v5": 0.0, "Hopper-v5": 1000.0}
SEEDS = (0, 1, 2)
TOTAL = 1000  # default window: 1000 // 10 = 100 steps


def _returns(method: str, env: str, seed: int) -> list[tuple[int, float]]:
    """One episode ending at every 100 steps plus one at 950, return c + 2·seed, except 10 more at
    step 1000; classic_ac on Hopper seed 2 has no episode in (300, 400]."""
    base = METHODS[method] + ENVS[env] + 2 * seed
    ends = [*range(100, TOTAL + 1, 100), 950]
    if (method, env, seed) == ("classic_ac", "Hopper-v5", 2):
        ends.remove(400)
    return [(step, base + (10.0 if step == TOTAL else 0.0)) for step in sorted(ends)]


def _write_run(run_dir: Path, method: str, env: str, seed: int, label: str | None, finished: bool = True) -> None:
    run_dir.mkdir(parents=True)
    config = {"algo": "stream_ac", "env": env, "seed": seed, "total_steps": TOTAL, "label": label}
    (run_dir / "config.json").write_text(json.dumps(config))
    lines = ["step,return,length,wall_time", *(f"{s},{r},{50},0.1" for s, r in _returns(method, env, seed))]
    (run_dir / "episodes.csv").write_text("\n".join(lines) + "\n")
    if finished:
        (run_dir / "summary.json").write_text(json.dumps({"status": "finished", "steps": TOTAL}))


def _fake_runs(root: Path) -> None:
    for method in METHODS:
        for env in ENVS:
            for seed in SEEDS:
                killed = (method, env, seed) == ("stream_ac", "Hopper-v5", 2)
                _write_run(root / method / env.replace("/", "_") / f"seed{seed}", method, env, seed, method,
                           finished=not killed)


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_plot_writes_every_file_with_hand_computed_numbers(tmp_path, capsys):
    _fake_runs(tmp_path / "runs")
    out = tmp_path / "out"
    assert cli.main(["plot", str(tmp_path / "runs"), "--out", str(out), "--bootstrap", "200"]) == 0
    for name in ("curves.csv", "curves_runs.csv", "final.csv", "final_runs.csv", "aggregates.csv"):
        assert (out / name).stat().st_size > 0
    for stem in ("curves_ALE_Breakout-v5", "curves_Hopper-v5", "barrier", "aggregates"):
        assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
    printed = capsys.readouterr().out
    assert "12 runs" in printed and "1 run(s) incomplete" in printed

    curves = _read(out / "curves.csv")
    assert len(curves) == 2 * 2 * 10
    assert [r["method"] for r in curves[::10]] == ["classic_ac", "classic_ac", "stream_ac", "stream_ac"]
    for row in curves:
        c = METHODS[row["method"]] + ENVS[row["env"]]
        end = int(row["window_end"])
        if (row["method"], row["env"], end) == ("classic_ac", "Hopper-v5", 400):
            # seeds 0 and 1 only: values c, c + 2
            assert row["n_runs"] == "2"
            assert float(row["mean"]) == pytest.approx(c + 1)
            assert float(row["stderr"]) == pytest.approx(1.0)
            continue
        # per seed c + 2·seed (+5: the last window averages c + 2·seed and c + 2·seed + 10)
        expected = c + 2 + (5 if end == TOTAL else 0)
        assert row["n_runs"] == "3"
        assert float(row["mean"]) == pytest.approx(expected)
        assert float(row["stderr"]) == pytest.approx(2 / math.sqrt(3))
        assert expected - 2 <= float(row["ci_low"]) <= expected <= float(row["ci_high"]) <= expected + 2

    own = _read(out / "curves_runs.csv")  # each run's window means: 12 runs × 10 windows
    assert len(own) == 12 * 10
    for row in own:
        c = METHODS[row["method"]] + ENVS[row["env"]] + 2 * int(row["seed"])
        end = int(row["window_end"])
        if (row["method"], row["env"], row["seed"], end) == ("classic_ac", "Hopper-v5", "2", 400):
            assert (row["episodes"], row["mean"]) == ("0", "")  # no episode ended in (300, 400]
        elif end == TOTAL:  # the episodes ending at 950 (c) and at 1000 (c + 10)
            assert row["episodes"] == "2" and float(row["mean"]) == pytest.approx(c + 5)
        else:
            assert row["episodes"] == "1" and float(row["mean"]) == pytest.approx(c)
    assert {Path(row["path"]).name for row in own} == {"seed0", "seed1", "seed2"}

    final = {(r["method"], r["env"]): r for r in _read(out / "final.csv")}
    assert list(final) == [("classic_ac", "ALE/Breakout-v5"), ("classic_ac", "Hopper-v5"),
                           ("stream_ac", "ALE/Breakout-v5"), ("stream_ac", "Hopper-v5")]
    for (method, env), row in final.items():
        assert float(row["mean"]) == pytest.approx(METHODS[method] + ENVS[env] + 7)
        assert float(row["stderr"]) == pytest.approx(2 / math.sqrt(3))
        assert row["n_runs"] == "3"
    assert final[("stream_ac", "Hopper-v5")]["n_unfinished"] == "1"

    runs = _read(out / "final_runs.csv")
    assert len(runs) == 12
    flagged = [(r["method"], r["env"], r["seed"]) for r in runs if r["finished"] == "False"]
    assert flagged == [("stream_ac", "Hopper-v5", "2")]
    by_key = {(r["method"], r["env"], int(r["seed"])): r for r in runs}
    breakout = by_key[("stream_ac", "ALE/Breakout-v5", 1)]
    assert breakout["normalization"] == "human"
    assert float(breakout["normalized_score"]) == pytest.approx((107 - 1.7) / (30.5 - 1.7))
    hopper = by_key[("stream_ac", "Hopper-v5", 0)]  # Hopper finals: 1005 … 1109
    assert hopper["normalization"] == "min-max"
    assert float(hopper["normalized_score"]) == pytest.approx((1105 - 1005) / (1109 - 1005))

    aggregates = _read(out / "aggregates.csv")
    iqm = {r["method"]: r for r in aggregates if r["statistic"] == "iqm"}
    classic = sorted([(5 + 2 * s - 1.7) / 28.8 for s in SEEDS] + [2 * s / 104 for s in SEEDS])
    assert float(iqm["classic_ac"]["value"]) == pytest.approx(np.mean(classic[1:5]))
    assert float(iqm["classic_ac"]["ci_low"]) <= float(iqm["classic_ac"]["value"]) <= float(
        iqm["classic_ac"]["ci_high"])
    at_zero = {r["method"]: r for r in aggregates if r["statistic"] == "profile" and float(r["tau"]) == 0.0}
    assert len([r for r in aggregates if r["method"] == "stream_ac" and r["statistic"] == "profile"]) == 101
    assert float(at_zero["stream_ac"]["value"]) == 1.0
    # min-max puts classic_ac's Hopper seed 0 at exactly 0, not > 0: (3/3 + 2/3) / 2 over the two tasks
    assert float(at_zero["classic_ac"]["value"]) == pytest.approx(5 / 6)
    # every stream_ac run beats every classic_ac run of the same environment by 100
    improvement = {(r["method"], r["versus"]): r for r in aggregates if r["statistic"] == "prob_improvement"}
    assert list(improvement) == [("classic_ac", "stream_ac"), ("stream_ac", "classic_ac")]
    assert [float(improvement["stream_ac", "classic_ac"][k]) for k in ("value", "ci_low", "ci_high")] == [1, 1, 1]
    assert float(improvement["classic_ac", "stream_ac"]["value"]) == 0.0
    assert improvement["stream_ac", "classic_ac"]["n_tasks"] == "2"
    assert improvement["stream_ac", "classic_ac"]["n_runs"] == "12"


def test_plot_of_a_sweep_root_uses_its_labels_and_window(tmp_path, capsys):
    root = tmp_path / "sweeps" / "barrier" / "smoke"
    entries = []
    for method in METHODS:
        for seed in (0, 1):
            run_hash = f"{method[:2]}{seed:04d}"
            _write_run(root / run_hash, method, "Hopper-v5", seed, label=None)  # config label missing
            entries.append({"dir": run_hash, "method": method, "env": "Hopper-v5", "seed": seed, "total_steps": TOTAL})
    entries.append({"dir": "notyet", "method": "stream_ac", "env": "Hopper-v5", "seed": 9, "total_steps": TOTAL})
    (root / "sweep.json").write_text(json.dumps({"experiment": "barrier", "budget": "smoke", "window": 250,
                                                 "runs": entries}))
    assert plot.main([str(root), "--format", "png", "--bootstrap", "100"]) == 0
    out = root / "plots"
    curves = _read(out / "curves.csv")
    assert sorted({r["method"] for r in curves}) == ["classic_ac", "stream_ac"]
    assert sorted({int(r["window_end"]) for r in curves}) == [250, 500, 750, 1000]
    assert (out / "barrier.png").exists() and not (out / "barrier.pdf").exists()
    assert "1 run(s) listed in sweep.json have no results yet" in capsys.readouterr().out


def test_plot_of_an_experiment_file_reads_its_default_sweep_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mini.yaml").write_text("runs: []\n")
    with pytest.raises(ConfigError, match=r"streamx sweep experiments/mini.yaml --budget smoke"):
        plot.main(["experiments/mini.yaml"])
    root = tmp_path / "runs" / "sweeps" / "mini" / "smoke"
    _write_run(root / "abc", "stream_ac", "Hopper-v5", 0, label="stream_ac")
    (root / "sweep.json").write_text(json.dumps({"experiment": "mini", "budget": "smoke", "runs": [
        {"dir": "abc", "method": "stream_ac", "env": "Hopper-v5", "seed": 0, "total_steps": TOTAL}]}))
    assert plot.main(["experiments/mini.yaml", "--format", "png", "--bootstrap", "50"]) == 0
    assert (root / "plots" / "final.csv").exists()
    (root / "plots" / "final.csv").unlink()
    assert plot.main(["mini", "--format", "png", "--bootstrap", "50"]) == 0  # a name, as `streamx sweep mini`
    assert (root / "plots" / "final.csv").exists()


def test_no_runs_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no runs found"):
        plot.main([str(tmp_path / "empty")])
    assert cli.main(["plot", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_without_matplotlib_every_csv_is_still_written(tmp_path, monkeypatch, capsys):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    _fake_runs(tmp_path / "runs")
    out = tmp_path / "out"
    assert plot.main([str(tmp_path / "runs"), "--out", str(out), "--bootstrap", "50"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["aggregates.csv", "curves.csv", "curves_runs.csv", "final.csv",
                                                         "final_runs.csv"]
    assert "pip install 'streamx-rl[plot]'" in capsys.readouterr().out


def test_each_run_draws_every_runs_own_curve_behind_the_mean(tmp_path, monkeypatch):
    """--each-run adds one thin line per run (through the windows in which its episodes ended)
    in its method's colour; without it only the means are drawn."""
    pytest.importorskip("matplotlib")
    _fake_runs(tmp_path / "runs")
    figures = []
    real = plot._figure_class()

    def recording(**kwargs):
        figure = real(**kwargs)
        figures.append(figure)
        return figure

    monkeypatch.setattr(plot, "_figure_class", lambda: recording)

    def hopper_lines(*flags):
        figures.clear()
        assert plot.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--bootstrap", "20",
                          "--format", "png", *flags]) == 0
        axes = next(f.axes[0] for f in figures if f.axes and f.axes[0].get_title().startswith("Hopper-v5"))
        return axes.get_lines(), axes.get_legend().get_title().get_text()

    plain, title = hopper_lines()
    assert "each run" not in title
    lines, title = hopper_lines("--each-run")
    assert "thin: each run" in title
    thin = [line for line in lines if line.get_linewidth() < 1.0]
    assert len(thin) == len(lines) - len(plain) == 6  # 2 methods × 3 seeds on Hopper
    gap = [line for line in thin if len(line.get_xdata()) == 9]  # classic_ac seed 2 has no episode in (300, 400]
    assert len(gap) == 1 and 400 not in list(gap[0].get_xdata())
    assert all(list(line.get_xdata())[-1] == TOTAL for line in thin)


def test_each_method_keeps_its_colour_in_every_figure_and_no_two_share_one():
    pytest.importorskip("matplotlib")
    barrier = plot._colors(["classic_ac", "ppo1", "sac1", "stream_ac", "ppo"])
    ablations = plot._colors(["classic_ac", "no_obgd", "no_layer_norm", "stream_ac"])
    alone = plot._colors(["stream_ac"])
    assert barrier["stream_ac"] == ablations["stream_ac"] == alone["stream_ac"]
    assert barrier["classic_ac"] == ablations["classic_ac"]
    assert len(set(ablations.values())) == 4 and len(set(barrier.values())) == 5
    assert ablations["no_obgd"] not in barrier.values()
    assert plot._colors(["no_obgd", "zz"])["no_obgd"] == ablations["no_obgd"]  # by name, not by its company
    # every stream-x algorithm (the same name pattern) and every other known method: distinct colours
    everything = plot._colors(["stream_td", "stream_q", "stream_sarsa", "stream_ac", "avg", "classic_q",
                               "classic_ac", "dqn", "dqn1", "sac", "sac1", "ppo", "ppo1", "my_stream_variant"])
    assert len(set(everything.values())) == len(everything)
    many = plot._colors([f"ablation_{i}" for i in range(20)])
    assert len(set(many.values())) == 20


def _captured_figures(monkeypatch) -> dict:
    """Replace plot._save so each figure is kept (by file stem) as well as written."""
    figures = {}
    save = plot._save

    def keep(figure, out, stem, formats):
        figures[stem] = figure
        return save(figure, out, stem, formats)

    monkeypatch.setattr(plot, "_save", keep)
    return figures


def _paper_lines(axes) -> dict:
    return {line.get_label(): line for line in axes.get_lines() if line.get_label().startswith("paper:")}


def test_paper_marks_only_on_the_papers_environment_version(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    for env in ("Hopper-v4", "Hopper-v5"):
        for method in METHODS:
            for seed in (0, 1):
                _write_run(tmp_path / "runs" / env / method / str(seed), method, "Hopper-v5", seed, method)
                config = json.loads((tmp_path / "runs" / env / method / str(seed) / "config.json").read_text())
                config["env"] = env
                (tmp_path / "runs" / env / method / str(seed) / "config.json").write_text(json.dumps(config))
    figures = _captured_figures(monkeypatch)
    out = tmp_path / "out"
    assert plot.main([str(tmp_path / "runs"), "--out", str(out), "--format", "png", "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    assert "paper reference marks: Hopper-v4" in printed
    assert "the paper's numbers are for Hopper-v4, not Hopper-v5: not drawn" in printed
    assert _read(out / "paper.csv") == [
        {"env": "Hopper-v4", "method": "classic_ac", "paper_method": "classic", "paper_return": "0.0",
         "source": analysis.paper_results()["source"]},
        {"env": "Hopper-v4", "method": "stream_ac", "paper_method": "stream-x", "paper_return": "2173.0",
         "source": analysis.paper_results()["source"]}]
    colors = plot._colors(list(METHODS))

    (axes,) = figures["curves_Hopper-v4"].axes
    lines = _paper_lines(axes)
    assert sorted(lines) == ["paper: classic 0", "paper: stream-x 2173"]
    stream = lines["paper: stream-x 2173"]
    assert stream.get_linestyle() == "--" and stream.get_color() == colors["stream_ac"]
    assert list(stream.get_ydata()) == [2173, 2173]
    assert "paper: stream-x 2173" in [t.get_text() for t in axes.get_legend().get_texts()]
    (axes,) = figures["curves_Hopper-v5"].axes
    assert _paper_lines(axes) == {}

    panels = {axes.get_title(): axes for axes in figures["barrier"].axes}
    marks = _paper_lines(panels["Hopper-v4"])
    assert sorted(marks) == ["paper: classic 0", "paper: stream-x 2173"]
    bar_x = [t.get_text() for t in panels["Hopper-v4"].get_xticklabels()].index("stream_ac (n=2)")
    assert marks["paper: stream-x 2173"].get_xdata().mean() == pytest.approx(bar_x)  # across its own bar
    assert _paper_lines(panels["Hopper-v5"]) == {}

    figures.clear()
    assert plot.main([str(tmp_path / "runs"), "--out", str(tmp_path / "plain"), "--format", "png",
                      "--bootstrap", "50", "--no-paper"]) == 0
    assert not (tmp_path / "plain" / "paper.csv").exists()
    assert all(_paper_lines(axes) == {} for figure in figures.values() for axes in figure.axes)


def test_aggregates_figure_shows_probability_of_improvement(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    _fake_runs(tmp_path / "runs")
    figures = _captured_figures(monkeypatch)
    assert plot.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--format", "png",
                      "--bootstrap", "50"]) == 0
    assert len(figures["aggregates"].axes) == 3
    third = figures["aggregates"].axes[2]
    assert [t.get_text() for t in third.get_yticklabels()] == ["P(stream_ac > classic_ac)"]


def test_bootstrap_ci_is_the_exact_percentile_interval_of_all_resamples():
    """For n = 5 every one of the 5⁵ equally likely resamples can be enumerated: the percentile
    bootstrap must converge to that distribution's 2.5 % and 97.5 % quantiles — not to (min, max),
    and not to another confidence level."""
    import itertools

    values = [0.0, 1.0, 3.0, 6.0, 10.0]
    means = np.sort([sum(c) / 5 for c in itertools.product(values, repeat=5)])
    cdf = np.arange(1, len(means) + 1) / len(means)
    exact_low = means[np.searchsorted(cdf, 0.025)]
    exact_high = means[np.searchsorted(cdf, 0.975)]
    low, high = analysis.bootstrap_ci(values, n_resamples=200_000, seed=1)
    assert abs(low - exact_low) <= 0.2 and abs(high - exact_high) <= 0.2, ((low, high), (exact_low, exact_high))
    assert (exact_low, exact_high) == (1.0, 7.4)  # far inside (min, max) = (0, 10)
    narrower = analysis.bootstrap_ci(values, n_resamples=200_000, seed=1, confidence=0.9)
    assert narrower[0] > low + 0.3 and narrower[1] < high - 0.3


def test_an_unfinished_run_is_named_in_the_legend_and_its_missing_windows_are_dotted(tmp_path, monkeypatch,
                                                                                        capsys):
    """A seed interrupted part-way: the panel says "1 unfinished", the legend how far it got, and
    the windows it does not reach (averaged over fewer seeds) are drawn dotted, not solid."""
    pytest.importorskip("matplotlib")
    root = tmp_path / "runs"
    for seed in SEEDS:
        _write_run(root / str(seed), "stream_ac", "Hopper-v5", seed, "stream_ac", finished=seed != 1)
    episodes = root / "1" / "episodes.csv"  # seed 1 stopped after its episode ending at step 600
    kept = [line for line in episodes.read_text().splitlines() if not line[0].isdigit() or
            int(line.split(",")[0]) <= 600]
    episodes.write_text("\n".join(kept) + "\n")
    figures = _captured_figures(monkeypatch)
    assert plot.main([str(root), "--out", str(tmp_path / "out"), "--format", "png", "--bootstrap", "50"]) == 0
    assert "3 seeds, 1 unfinished" in capsys.readouterr().out
    (axes,) = figures["curves_Hopper-v5"].axes
    assert axes.get_title() == "Hopper-v5 — 3 seeds, 1 unfinished"
    legend = axes.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["stream_ac (n=3; unfinished: seed 1 to 600)"]
    assert "dotted: fewer seeds" in legend.get_title().get_text()
    solid, dotted = axes.get_lines()
    x = np.asarray(solid.get_xdata())
    assert list(x) == list(range(100, 1001, 100))
    # three seeds up to 600, two after it: solid to 600, dotted from 600 (joined there) to the end
    assert np.isfinite(np.asarray(solid.get_ydata(), dtype=float)).tolist() == [True] * 6 + [False] * 4
    assert dotted.get_linestyle() == ":"
    assert np.isfinite(np.asarray(dotted.get_ydata(), dtype=float)).tolist() == [False] * 5 + [True] * 5


def test_steps_and_seed_labels():
    assert [plot._steps_text(s) for s in (0, 600, 900_000, 4_240_000, 10_000_000)] == [
        "0", "600", "900k", "4.24M", "10M"]
    done = analysis.Run(Path("a"), "stream_q", "Breakout", 0, 10, np.array([5.0, 10.0]), np.zeros(2), "finished")
    cut = analysis.Run(Path("b"), "stream_q", "Breakout", 1, 10, np.array([4.0]), np.zeros(1), "interrupted")
    assert plot._method_label("stream_q", [done]) == "stream_q (n=1)"
    assert plot._method_label("stream_q", [done, cut]) == "stream_q (n=2; unfinished: seed 1 to 4)"
    assert plot._seed_label([done, cut]) == "2 seeds, 1 unfinished"
    assert plot._seed_label([done]) == "1 seed"
    blown = analysis.Run(Path("c"), "stream_q", "Breakout", 2, 10, np.array([3.0]), np.zeros(1), "diverged")
    assert plot._method_label("stream_q", [blown, cut, done]) == (
        "stream_q (n=3; diverged: seed 2 at 3; unfinished: seed 1 to 4)")
    assert plot._seed_label([done, blown]) == "2 seeds"  # a diverged run ended: an outcome, not unfinished
    many = [analysis.Run(Path(str(seed)), "stream_q", "Breakout", seed, 10**7, np.array([float(at)]), np.zeros(1),
                         "interrupted") for seed, at in ((4, 50_000), (2, 1_550_000), (3, 50_000))]
    assert plot._method_label("stream_q", [done, *many]) == (
        "stream_q (n=4; unfinished: seeds 2, 3, 4 to 50k – 1.55M)")
    same = [analysis.Run(Path(str(seed)), "stream_q", "Breakout", seed, 10, np.array([4.0]), np.zeros(1),
                         "interrupted") for seed in (1, 2, 3)]
    assert plot._method_label("stream_q", same) == "stream_q (n=3; unfinished: seeds 1, 2, 3 to 4)"


def test_a_run_that_diverged_before_its_first_episode_ended_is_labelled_with_its_summarys_step(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"algo": "classic_ac", "env": "dm_control/dog-stand-v0",
                                                 "total_steps": 2_000_000, "seed": 1}))
    (run / "episodes.csv").write_text("step,return,length,wall_time\n")
    (run / "summary.json").write_text(json.dumps({"status": "diverged", "steps": 17, "episodes": 0}))
    blown = analysis.load_run(run)
    assert (blown.status, blown.stopped_at, len(blown.steps)) == ("diverged", 17, 0)
    late = analysis.Run(Path("b"), "classic_ac", "dm_control/dog-stand-v0", 0, 2_000_000, np.array([1000.0]),
                        np.zeros(1), "diverged", stopped_at=460_123)
    assert plot._method_label("classic_ac", [late, blown]) == (
        "classic_ac (n=2; diverged: seed 0 at 460k, seed 1 at 17)")
    (run / "summary.json").unlink()
    assert analysis.load_run(run).stopped_at is None


def test_runs_of_one_method_and_env_made_with_different_task_versions_are_drawn_apart(tmp_path, monkeypatch,
                                                                                       capsys):
    for seed in SEEDS:
        run = tmp_path / "runs" / str(seed)
        _write_run(run, "stream_ac", "Hopper-v5", seed, "stream_ac")
        mujoco = "2.3.7" if seed == 2 else "3.17.0"
        (run / "versions.json").write_text(json.dumps({"task": {"gymnasium": "1.4.0", "mujoco": mujoco}}))
    runs = [analysis.load_run(tmp_path / "runs" / str(seed)) for seed in SEEDS]
    assert runs[2].task_versions == {"gymnasium": "1.4.0", "mujoco": "2.3.7"}
    assert analysis.split_by_task_versions(runs[:2]) == (runs[:2], [])  # one kind: nothing to split
    split, lines = analysis.split_by_task_versions(runs)
    assert [run.method for run in split] == ["stream_ac [mujoco 3.17.0]"] * 2 + ["stream_ac [mujoco 2.3.7]"]
    assert lines == ["stream_ac on Hopper-v5: runs made with different task versions, drawn apart: "
                     "stream_ac [mujoco 2.3.7], stream_ac [mujoco 3.17.0]"]
    assert analysis.paper_method("stream_ac [mujoco 2.3.7]") == "stream_ac"  # the paper's mark still applies
    figures = _captured_figures(monkeypatch)
    assert plot.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--format", "png",
                      "--bootstrap", "20"]) == 0
    assert lines[0] in capsys.readouterr().out
    (axes,) = figures["curves_Hopper-v5"].axes
    assert [t.get_text() for t in axes.get_legend().get_texts()] == [
        "stream_ac [mujoco 2.3.7] (n=1)", "stream_ac [mujoco 3.17.0] (n=2)"]
    assert sorted({r["method"] for r in _read(tmp_path / "out" / "final.csv")}) == [
        "stream_ac [mujoco 2.3.7]", "stream_ac [mujoco 3.17.0]"]
    (tmp_path / "runs" / "2" / "versions.json").unlink()  # an older run recorded nothing
    runs = [analysis.load_run(tmp_path / "runs" / str(s)) for s in SEEDS]
    assert analysis.split_by_task_versions(runs) == (runs, [])
    (tmp_path / "runs" / "1" / "versions.json").write_text(json.dumps({"task": {"gymnasium": "1.4.0",
                                                                                  "mujoco": "2.3.7"}}))
    runs = [analysis.load_run(tmp_path / "runs" / str(s)) for s in SEEDS]
    assert [run.method for run in analysis.split_by_task_versions(runs)[0]] == [
        "stream_ac [mujoco 3.17.0]", "stream_ac [mujoco 2.3.7]", "stream_ac [versions not recorded]"]


def test_paper_marks_are_for_the_methods_run_on_that_env_once_per_paper_value():
    def run(method, env):
        return analysis.Run(Path("x"), method, env, 0, 10, np.array([5.0]), np.zeros(1), "finished")

    runs = [run("stream_ac [mujoco 2.3.7]", "Hopper-v4"), run("stream_ac [mujoco 3.17.0]", "Hopper-v4"),
            run("classic_ac", "Walker2d-v4")]
    marks = plot._env_marks("Hopper-v4", runs)
    assert [(m["method"], m["paper_return"]) for m in marks] == [("stream_ac [mujoco 2.3.7]", 2173.0)]
    assert [m["paper_method"] for m in plot._env_marks("Walker2d-v4", runs)] == ["classic"]
