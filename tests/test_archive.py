"""experiments/archive.py: a sweep's plain results, plus the newest checkpoint of unfinished runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import episode_rows

from streamx import cli
from streamx.sweep import run_status

ROOT = Path(__file__).resolve().parent.parent


def _archive_module():
    spec = importlib.util.spec_from_file_location("streamx_archive", ROOT / "experiments" / "archive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(root: Path, name: str, status: str | None, checkpoints: list[int], extra: tuple[str, ...] = ()) -> Path:
    run_dir = root / name
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"algo": "ppo1"}))
    (run_dir / "episodes.csv").write_text("step,return,length,wall_time\n10,1.0,10,0.1\n")
    (run_dir / "metrics.csv").write_text("step\n10\n")
    if status is not None:
        (run_dir / "summary.json").write_text(json.dumps({"status": status, "steps": 10}))
    for step in checkpoints:
        (run_dir / "checkpoints" / f"step_{step:012d}.ckpt").write_bytes(b"x" * step)
    for name_ in extra:
        (run_dir / name_).write_bytes(b"pickle")
    return run_dir


def test_archive_copies_results_and_only_the_newest_checkpoint_of_unfinished_runs(tmp_path):
    archive = _archive_module()
    source, target = tmp_path / "sweep", tmp_path / "results"
    _run(source, "finished", "finished", [1, 2, 3], extra=("model.zip", "vecnormalize.pkl"))
    (source / "finished" / "eval.json").write_text('{"mean_return": 1.0}')  # streamx eval's result
    _run(source, "running", None, [4, 5, 6])
    _run(source, "stopped", "interrupted", [7])
    _run(source, "diverged", "diverged", [8])
    (source / "sweep.json").write_text("{}")
    (source / "stray").mkdir()  # not a run: no config.json

    done = {run: (status, copied) for run, status, copied in archive.archive(source, target)}

    assert done == {"finished": ("finished", False), "running": ("incomplete", True),
                    "stopped": ("interrupted", True), "diverged": ("diverged", False)}
    assert (target / "sweep.json").is_file() and not (target / "stray").exists()
    for run in done:
        for name in ("config.json", "episodes.csv", "metrics.csv"):
            assert (target / run / name).read_bytes() == (source / run / name).read_bytes()
    assert not (target / "finished" / "checkpoints").exists() and not (target / "diverged" / "checkpoints").exists()
    assert (target / "finished" / "eval.json").read_text() == '{"mean_return": 1.0}'
    assert not (target / "running" / "eval.json").exists()
    assert not (target / "finished" / "model.zip").exists() and not (target / "finished" / "vecnormalize.pkl").exists()
    assert [p.name for p in (target / "running" / "checkpoints").iterdir()] == ["step_000000000006.ckpt"]
    assert run_status(target / "running") == "incomplete" and run_status(target / "finished") == "finished"

    # the next session: the run went on (new checkpoint) and then finished
    (source / "running" / "checkpoints" / "step_000000000009.ckpt").write_bytes(b"y")
    archive.archive(source, target)
    assert [p.name for p in (target / "running" / "checkpoints").iterdir()] == ["step_000000000009.ckpt"]
    (source / "running" / "summary.json").write_text(json.dumps({"status": "finished", "steps": 10}))
    archive.main([str(source), str(target)])
    assert not (target / "running" / "checkpoints").exists()


def test_an_archived_unfinished_run_resumes_from_its_copied_checkpoint(tmp_path):
    archive = _archive_module()
    source = tmp_path / "sweep"
    run_dir = source / "run"
    assert cli.main(["train", "stream_q", "--env", "CartPole-v1", "--steps", "600", "--run-dir", str(run_dir),
                     "progress=false", "checkpoint_interval=200"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    uninterrupted = episode_rows(run_dir)
    (run_dir / "summary.json").unlink()  # as if killed after its last checkpoint
    (run_dir / "checkpoints" / "step_000000000600.ckpt").unlink(missing_ok=True)
    target = tmp_path / "results"
    archive.archive(source, target)
    assert cli.main(["train", "--resume", str(target / "run")]) == 0
    resumed = json.loads((target / "run" / "summary.json").read_text())
    assert resumed["status"] == "finished" and resumed["steps"] == summary["steps"] == 600
    assert len(uninterrupted) > 5 and episode_rows(target / "run") == uninterrupted


def test_rekey_renames_runs_to_their_current_sweep_names(tmp_path):
    from streamx.config import Config
    from streamx.sweep import config_hash

    archive = _archive_module()
    config = Config(algo="stream_q", env="CartPole-v1", total_steps=100, label="stream_q").to_dict()
    run_dir = tmp_path / "oldname12345"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "summary.json").write_text(json.dumps({"status": "finished"}))
    manifest = {"runs": [{"dir": "oldname12345", "method": "stream_q", "env": "CartPole-v1", "seed": 0}]}
    (tmp_path / "sweep.json").write_text(json.dumps(manifest))
    assert archive.rekey(tmp_path) == [("oldname12345", config_hash(config))]
    assert (tmp_path / config_hash(config) / "summary.json").is_file() and not run_dir.exists()
    assert json.loads((tmp_path / "sweep.json").read_text())["runs"][0]["dir"] == config_hash(config)
    assert archive.rekey(tmp_path) == []  # already current: nothing to do


def test_paper_tables_average_finished_runs_and_report_unfinished_ones_as_interim(tmp_path):
    spec = importlib.util.spec_from_file_location("paper_tables", ROOT / "experiments" / "paper_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    entries = []
    for seed, (status, episodes) in enumerate([
        ("finished", [(50, 0.0), (150, 100.0), (180, 300.0)]),  # last window (100, 200]: 200
        ("finished", [(120, 400.0)]),  # last window: 400
        ("interrupted", [(60, 10.0), (90, 30.0), (130, 1000.0)]),  # reached 130: interim (0, 100] = 20
    ]):
        run_dir = tmp_path / f"run{seed}"
        run_dir.mkdir()
        (run_dir / "config.json").write_text(json.dumps(
            {"algo": "stream_ac", "env": "Hopper-v4", "total_steps": 200, "seed": seed, "label": "stream_ac"}))
        (run_dir / "episodes.csv").write_text("step,return,length\n" + "".join(
            f"{step},{ret},10\n" for step, ret in episodes))
        (run_dir / "summary.json").write_text(json.dumps({"status": status, "steps_per_second": 100.0 * (seed + 1)}))
        entries.append({"dir": run_dir.name, "method": "stream_ac", "env": "Hopper-v4", "seed": seed})
    planned = [*entries, {"dir": "notyet", "method": "stream_ac", "env": "Hopper-v4", "seed": 3}]
    (tmp_path / "sweep.json").write_text(json.dumps({"window": 100, "runs": planned}))
    (row,) = tables.table_rows([tmp_path])
    assert row["paper"] == "2173" and row["seeds"] == "2/4" and row["version"] == "v4"
    assert row["streamx"].startswith("300 [")  # mean of 200 and 400; the unfinished run is not in it
    assert row["notes"] == "1 unfinished (20 at 100); seed 3 not started" and row["steps_per_second"] == "150"
    assert row["task"] == "not recorded"
    assert row["per_seed"] == "seed 0: 200.0; seed 1: 400.0; seed 2: interrupted; last full window 20.0 (to 100)"
    # the step a run stopped at is summary.json's where it has one (its last episode ended earlier)
    (tmp_path / "run2" / "summary.json").write_text(json.dumps({"status": "interrupted", "steps": 199}))
    (row,) = tables.table_rows([tmp_path])
    assert row["per_seed"].endswith("seed 2: interrupted at 199; last full window 20.0 (to 100)")
    for seed, mujoco in enumerate(["3.17.0", "3.17.0", "2.3.7"]):
        (tmp_path / f"run{seed}" / "versions.json").write_text(json.dumps(
            {"task": {"gymnasium": "1.4.0", "mujoco": mujoco}}))
    (row,) = tables.table_rows([tmp_path])
    assert row["task"] == "gymnasium 1.4.0, mujoco 2.3.7 / gymnasium 1.4.0, mujoco 3.17.0"
    assert row["notes"].endswith("runs of different task versions: " + row["task"])


def test_every_archived_full_budget_run_records_its_task_versions():
    """A full-budget run in experiments/results/ says which simulator made it (versions.json), so
    a sweep never continues or counts it under another one."""
    results = Path(__file__).resolve().parents[1] / "experiments" / "results"
    runs = sorted(p.parent for p in results.glob("*/full/*/config.json"))
    assert len(runs) >= 40
    for run in runs:
        record = json.loads((run / "versions.json").read_text())
        assert record["task"].get("gymnasium"), run


def test_every_archived_run_keeps_its_name_under_todays_code():
    """The archive's run directories are named by the hash of the values that decide each run
    (streamx.identity): a change to streamx that renames one would make a sweep rerun it. Every
    run in experiments/results/ must still be one the sweep of its experiment and budget expands to."""
    from streamx.sweep import expand, load_experiment

    results = Path(__file__).resolve().parents[1] / "experiments" / "results"
    checked = 0
    for budget_dir in sorted(p for p in results.glob("*/*") if (p / "sweep.json").is_file()):
        experiment = load_experiment(Path(__file__).resolve().parents[1] / "experiments" / budget_dir.parent.name)
        try:
            names = {Path(spec.run_dir).name for spec in expand(experiment, budget_dir.name)}
        except Exception as exc:  # an experiment whose suite is not installed here
            pytest.skip(f"{budget_dir}: {exc}")
        archived = {p.name for p in budget_dir.iterdir() if (p / "config.json").is_file()}
        assert archived <= names, f"{budget_dir}: runs no longer named as archived: {sorted(archived - names)}"
        checked += len(archived)
    assert checked >= 20


def test_physics_versions_tells_a_physics_change_from_rounding(tmp_path):
    spec = importlib.util.spec_from_file_location("physics_versions", ROOT / "experiments" / "physics_versions.py")
    physics = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(physics)
    rng = np.random.default_rng(0)
    base = {f"{task}|{k}": rng.standard_normal((50, 3)) for task in ("A-v4", "B-v4", "C-v4", "D-v4")
            for k in range(physics.EPISODES)}
    other = {key: value.copy() for key, value in base.items()}
    other["D-v4|3"] = other["D-v4|3"][:30]  # one episode ends earlier, the steps before it alike
    for k in range(physics.EPISODES):
        other[f"A-v4|{k}"][9:] += 0.05  # a jump at step 9 (a contact handled otherwise)
        other[f"B-v4|{k}"] += 1e-12 * np.exp(np.arange(50) / 3.0)[:, None]  # rounding, growing chaotically
    np.savez(tmp_path / "a.npz", versions=np.array(["mujoco 1"]), **base)
    np.savez(tmp_path / "b.npz", versions=np.array(["mujoco 2"]), **other)
    lines = physics.compare(tmp_path / "a.npz", tmp_path / "b.npz")
    assert lines[1] == ("  A-v4: steps differently — first difference above 1e-09 at step 9–9, 0.05–0.05 there "
                        "(20 of 20 episodes)")
    assert lines[2].startswith("  B-v4: the same up to rounding (in 20 of 20 episodes a difference above 1e-09 "
                               "appears, at most 1.")
    assert lines[3] == "  C-v4: the same up to rounding (no difference above 1e-09 in any episode)"
    assert lines[4] == ("  D-v4: steps differently — first difference above 1e-09 at step 29–29, 1–1 there "
                        "(1 of 20 episodes)")
