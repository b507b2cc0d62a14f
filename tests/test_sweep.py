"""streamx sweep: expansion, hashing, skip/resume, and the local, slurm (submitit) and ray backends."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamx.cli import main
from streamx.errors import ConfigError
from streamx.sweep import _time_text, config_hash, execute_run, expand, load_experiment, run_rate, run_status, run_sweep

ROOT = Path(__file__).resolve().parents[1]

TINY = """
name: tiny
envs: [CartPole-v1]
methods:
  stream_q: {{algo: stream_q}}
  classic_q: {{algo: stream_q, config: {classic}}}
budgets:
  smoke: {{total_steps: {steps}, seeds: 2, window: 100, overrides: {{checkpoint_interval: {interval}}}}}
  other: {{total_steps: 50, seeds: [7], methods: [stream_q]}}
"""


def _experiment(tmp_path: Path, steps: int = 300, interval: int = 0) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(classic=ROOT / "configs" / "classic" / "classic_q.yaml", steps=steps,
                                interval=interval))
    return path


def test_expand_resolves_each_run_like_streamx_train(tmp_path):
    experiment = load_experiment(_experiment(tmp_path))
    runs = expand(experiment, "smoke", tmp_path / "out")
    assert [(r.method, r.seed) for r in runs] == [("stream_q", 0), ("stream_q", 1), ("classic_q", 0), ("classic_q", 1)]
    classic = runs[2].config
    assert classic["label"] == "classic_q" and classic["optimizer"] == "sgd" and classic["layer_norm"] is False
    assert classic["hidden_sizes"] == [32, 32] and classic["max_episode_steps"] == 10_000  # suite defaults kept
    assert runs[0].config["optimizer"] == "obgd" and runs[0].config["total_steps"] == 300
    assert len({r.run_dir for r in runs}) == 4
    for run in runs:  # the directory is the hash of the resolved config, which excludes run_dir
        assert Path(run.run_dir) == tmp_path / "out" / config_hash(run.config)
    # the hash ignores settings that cannot change results, and nothing else
    assert config_hash({**runs[0].config, "progress": True, "run_dir": "x"}) == config_hash(runs[0].config)
    assert config_hash({**runs[0].config, "lr": 0.5}) != config_hash(runs[0].config)
    other = expand(experiment, "other", tmp_path / "out")
    assert [(r.method, r.seed, r.config["total_steps"]) for r in other] == [("stream_q", 7, 50)]


def test_experiment_errors_name_the_problem(tmp_path):
    experiment = load_experiment(_experiment(tmp_path))
    with pytest.raises(ConfigError, match="no budget 'huge'.*smoke, other"):
        expand(experiment, "huge")
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "missing")
    bad = tmp_path / "bad.yaml"
    bad.write_text("envs: [CartPole-v1]\nmethods: {m: {config: x.yaml}}\nbudgets: {smoke: {}}\n")
    with pytest.raises(ConfigError, match="method 'm' needs an 'algo'"):
        load_experiment(bad)
    bad.write_text("envs: [CartPole-v1]\nmethods: {m: {algo: stream_q}}\nbudgets: {smoke: {methods: [n]}}\n")
    with pytest.raises(ConfigError, match=r"lists methods \['n'\]"):
        load_experiment(bad)
    bad.write_text("envs: [CartPole-v1]\nmethods: {m: {algo: stream_q, lr: 1}}\nbudgets: {smoke: {}}\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lr'\]"):
        load_experiment(bad)
    bad.write_text("envs: [CartPole-v1]\nmethods: {m: {algo: stream_q, overrides: {lr: -1}}}\nbudgets: {smoke: {}}\n")
    with pytest.raises(ConfigError, match="method m, env CartPole-v1: .*lr=-1"):
        expand(load_experiment(bad), "smoke")


def test_every_shipped_experiment_expands():
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        experiment = load_experiment(path)
        for budget in experiment.budgets:
            runs = expand(experiment, budget, "unused")
            assert runs, (path, budget)
            assert all(r.config["label"] == r.method for r in runs)


def test_a_sweep_runs_only_the_chosen_methods_envs_and_seeds(tmp_path, capsys):
    experiment, out = _experiment(tmp_path, steps=100), tmp_path / "out"
    loaded = load_experiment(experiment)
    every = expand(loaded, "smoke", out)
    chosen = expand(loaded, "smoke", out, only_methods=["classic_q"], only_seeds=[1])
    assert [(r.method, r.seed) for r in chosen] == [("classic_q", 1)]
    assert chosen[0].run_dir == every[3].run_dir  # the same run, wherever it is chosen from
    assert [(r.method, r.seed) for r in expand(loaded, "smoke", out, only_seeds=[0])] == [("stream_q", 0),
                                                                                        ("classic_q", 0)]
    assert len(expand(loaded, "smoke", out, only_envs=["CartPole-v1"])) == 4
    with pytest.raises(ConfigError, match=r"has no seeds \[5\]; it has: 0, 1"):
        expand(loaded, "smoke", out, only_seeds=[5])
    with pytest.raises(ConfigError, match=r"has no envs \['Hopper-v4'\]; it has: CartPole-v1"):
        expand(loaded, "smoke", out, only_envs=["Hopper-v4"])
    with pytest.raises(ConfigError, match=r"has no methods \['ppo'\]"):
        expand(loaded, "smoke", out, only_methods=["ppo"])
    capsys.readouterr()
    assert main(["sweep", str(experiment), "--out", str(out), "--seeds", "one"]) != 0
    assert "--seeds one: give seeds as comma-separated integers" in capsys.readouterr().err
    assert main(["sweep", str(experiment), "--out", str(out), "--seeds", "1", "--methods", "classic_q"]) == 0
    assert "4 runs (1 selected), 0 already finished, 1 to run" in capsys.readouterr().err
    manifest = json.loads((out / "sweep.json").read_text())  # lists every run, whichever ran
    assert [(r["method"], r["seed"], r["status"]) for r in manifest["runs"]] == [
        ("stream_q", 0, "new"), ("stream_q", 1, "new"), ("classic_q", 0, "new"),
        ("classic_q", 1, "finished")]
    assert main(["sweep", str(experiment), "--out", str(out), "--seeds", "0,1", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "4 runs in" in listed and "(3 new, 1 finished)" in listed
    assert sum("  finished  " in line for line in listed.splitlines()) == 1


def test_dry_run_lists_the_step_each_run_reached_and_which_are_running(tmp_path, capsys):
    """--dry-run shows, beside each run's status, the step an unfinished run reached (the newer of
    its summary.json and its metrics.csv), a run whose lock a live process holds as running,
    and the count of each status."""
    from streamx.runlock import run_lock

    experiment, out = _experiment(tmp_path), tmp_path / "out"
    first, second, third, _ = expand(load_experiment(experiment), "smoke", out)
    stopped = Path(first.run_dir)
    stopped.mkdir(parents=True)
    (stopped / "summary.json").write_text(json.dumps({"status": "interrupted", "steps": 120}))
    (stopped / "metrics.csv").write_text("step,episodes\n100,3\n")
    finished = Path(second.run_dir)
    finished.mkdir(parents=True)
    (finished / "summary.json").write_text(json.dumps({"status": "finished", "steps": 300}))
    running = Path(third.run_dir)
    running.mkdir(parents=True)
    (running / "summary.json").write_text(json.dumps({"status": "interrupted", "steps": 100}))
    (running / "metrics.csv").write_text("step,episodes\n100,3\n200,5\n")
    with run_lock(running):
        assert main(["sweep", str(experiment), "--out", str(out), "--dry-run"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "interrupted" in rows[first.key] and rows[first.key].endswith("seed 0  120 of 300 steps")
    assert "finished" in rows[second.key] and rows[second.key].endswith("seed 1  300 steps")
    assert "running" in rows[third.key] and rows[third.key].endswith("seed 0  200 of 300 steps")
    assert rows["4"] == f"4 runs in {out} (1 interrupted, 1 finished, 1 running, 1 new)"
    assert list(out.iterdir()) and not (out / "sweep.json").exists()  # a dry run writes nothing


def test_dry_run_shows_an_unfinished_runs_rate_and_the_time_it_has_left(tmp_path, capsys):
    """A running run's rate is its last logged interval's (metrics.csv), a stopped run's its
    whole run's (summary.json); the time left is the remaining steps at that rate. A diverged
    run and one whose rate is unknown show none."""
    from streamx.runlock import run_lock

    experiment, out = _experiment(tmp_path), tmp_path / "out"
    first, second, third, fourth = expand(load_experiment(experiment), "smoke", out)
    stopped = Path(first.run_dir)
    stopped.mkdir(parents=True)
    (stopped / "summary.json").write_text(json.dumps({"status": "interrupted", "steps": 120,
                                                      "steps_per_second": 0.05}))
    (stopped / "metrics.csv").write_text("step,episodes,steps_per_second\n100,3,9.0\n")
    running = Path(second.run_dir)
    running.mkdir(parents=True)
    (running / "summary.json").write_text(json.dumps({"status": "interrupted", "steps": 100,
                                                      "steps_per_second": 1.0}))
    (running / "metrics.csv").write_text("step,episodes,steps_per_second\n100,3,0.5\n200,5,0.02\n")
    blown = Path(third.run_dir)
    blown.mkdir(parents=True)
    (blown / "summary.json").write_text(json.dumps({"status": "diverged", "steps": 50, "steps_per_second": 2.0}))
    unknown = Path(fourth.run_dir)
    unknown.mkdir(parents=True)
    (unknown / "metrics.csv").write_text("step,episodes\n100,3\n")
    with run_lock(running):
        assert main(["sweep", str(experiment), "--out", str(out), "--dry-run"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert rows[first.key].endswith("seed 0  120 of 300 steps (0.05 steps/s: ≈ 60 min to go)")  # 180 / 0.05 s
    assert rows[second.key].endswith("seed 1  200 of 300 steps (0.02 steps/s: ≈ 83 min to go)")  # 100 / 0.02 s
    assert rows[third.key].endswith("seed 0  50 of 300 steps")
    assert rows[fourth.key].endswith("seed 1  100 of 300 steps")
    assert run_rate(stopped, running=True) == 9.0 and run_rate(unknown, running=True) is None
    assert [_time_text(t) for t in (45, 5000, 4.4 * 3600)] == ["45 s", "83 min", "4.4 h"]


def test_dry_run_columns_line_up_for_long_method_names(tmp_path, capsys):
    """The method and env columns are as wide as the listing's longest names."""
    path = tmp_path / "long.yaml"
    path.write_text(TINY.format(classic=ROOT / "configs" / "classic" / "classic_q.yaml", steps=300, interval=0)
                    .replace("classic_q:", "classic_q_with_a_longer_name:"))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    rows = capsys.readouterr().out.splitlines()[:-1]
    assert len(rows) == 4 and len({row.index(" seed ") for row in rows}) == 1
    assert len({row.index("CartPole-v1") for row in rows}) == 1


def test_a_closed_pipe_on_stdout_ends_the_listing_quietly(tmp_path):
    """`streamx sweep … --dry-run | head -1`: the reader goes away; no error message, status 141."""
    reader, writer = os.pipe()
    os.close(reader)
    result = subprocess.run([sys.executable, "-m", "streamx.cli", "sweep", str(_experiment(tmp_path)),
                             "--out", str(tmp_path / "out"),
                             "--dry-run"], stdout=writer, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(writer)
    assert result.returncode == 141 and result.stderr == ""


def test_local_sweep_runs_skips_finished_and_writes_a_manifest(tmp_path, capsys):
    experiment, out = _experiment(tmp_path), tmp_path / "out"
    assert main(["sweep", str(experiment), "--out", str(out), "--jobs", "2"]) == 0
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["experiment"] == "tiny" and manifest["budget"] == "smoke" and manifest["window"] == 100
    assert len(manifest["runs"]) == 4 and {r["status"] for r in manifest["runs"]} == {"finished"}
    for run in manifest["runs"]:
        config = json.loads((out / run["dir"] / "config.json").read_text())
        assert (config["label"], config["seed"]) == (run["method"], run["seed"])
        assert (out / run["dir"] / "episodes.csv").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    capsys.readouterr()
    assert main(["sweep", str(experiment), "--out", str(out)]) == 0  # nothing left to do
    assert "4 already finished, 0 to run" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")} == stamps


def test_same_seed_gives_the_same_run_in_a_sweep(tmp_path):
    experiment = load_experiment(_experiment(tmp_path))
    spec = expand(experiment, "smoke", tmp_path / "a")[0]
    execute_run(spec)
    again = expand(experiment, "smoke", tmp_path / "b")[0]
    execute_run(again)
    assert (Path(spec.run_dir) / "episodes.csv").read_text().split("\n")[0] == "step,return,length,wall_time"
    strip = lambda p: [line.rsplit(",", 1)[0] for line in (Path(p) / "episodes.csv").read_text().splitlines()]  # noqa: E731
    assert strip(spec.run_dir) == strip(again.run_dir)


def test_a_killed_sweep_resumes_where_it_stopped(tmp_path):
    """kill -9 the whole sweep mid-run; running it again skips finished runs and continues the rest."""
    experiment, out = _experiment(tmp_path, steps=40_000, interval=4_000), tmp_path / "out"
    command = [sys.executable, "-m", "streamx.cli", "sweep", str(experiment), "--out", str(out), "--jobs", "1"]
    def one_finished_and_the_next_checkpointed() -> bool:
        states = [run_status(d) for d in out.glob("*") if d.is_dir()]
        in_progress = [d for d in out.glob("*/checkpoints/*.ckpt") if run_status(d.parent.parent) != "finished"]
        return states.count("finished") >= 1 and bool(in_progress)

    _kill_sweep_when(command, tmp_path, one_finished_and_the_next_checkpointed)
    finished_before = {d.name: (d / "summary.json").stat().st_mtime_ns
                       for d in out.glob("*") if d.is_dir() and run_status(d) == "finished"}
    killed = [d for d in out.glob("*") if d.is_dir() and run_status(d) == "incomplete"]
    assert finished_before and killed
    results = run_sweep(experiment, "smoke", out, jobs=1, quiet=True)
    assert len(results) == 4 - len(finished_before)
    assert {r["status"] for r in results} <= {"finished", "diverged"}  # classic Q may blow up: an outcome
    for name, stamp in finished_before.items():  # untouched
        assert (out / name / "summary.json").stat().st_mtime_ns == stamp
    for run_dir in killed:  # continued from its checkpoint, not restarted
        summary = json.loads((run_dir / "summary.json").read_text())
        assert len(summary["resumes"]) >= 1
        assert summary["status"] == "diverged" or summary["steps"] == 40_000


def test_slurm_backend_packs_runs_into_array_tasks(tmp_path):
    pytest.importorskip("submitit")
    experiment, out = _experiment(tmp_path, steps=200), tmp_path / "out"
    code = main(["sweep", str(experiment), "--out", str(out), "--backend", "slurm", "--submitit-cluster", "local",
                 "--runs-per-task", "3", "--time-min", "10"])
    assert code == 0
    assert {r["status"] for r in json.loads((out / "sweep.json").read_text())["runs"]} == {"finished"}
    tasks = [p for p in (out / "submitit").rglob("*_result.pkl")]
    assert len(tasks) == 2  # 4 runs, 3 per array task


@pytest.mark.slow
def test_ray_backend_on_a_local_instance(tmp_path):
    pytest.importorskip("ray")
    experiment, out = _experiment(tmp_path, steps=200), tmp_path / "out"
    assert main(["sweep", str(experiment), "--out", str(out), "--backend", "ray", "--ray-address", "local"]) == 0
    assert {r["status"] for r in json.loads((out / "sweep.json").read_text())["runs"]} == {"finished"}


def test_a_diverged_run_is_an_outcome_not_a_failure(tmp_path, capsys):
    path = tmp_path / "div.yaml"
    path.write_text("name: div\nenvs: [Pendulum-v1]\nmethods:\n"
                    f"  classic_ac: {{algo: stream_ac, config: {ROOT / 'configs/classic/classic_ac.yaml'}, "
                    "overrides: {lr: 1.0}}\nbudgets: {smoke: {total_steps: 2000, seeds: 1}}\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    assert "1 run(s) diverged" in capsys.readouterr().err
    (run,) = json.loads((out / "sweep.json").read_text())["runs"]
    assert run["status"] == "diverged"
    summary = json.loads((out / run["dir"] / "summary.json").read_text())
    assert summary["status"] == "diverged" and "non-finite" in summary["error"]
    assert run_sweep(path, "smoke", out, quiet=True) == []  # not rerun


@pytest.mark.slow
def test_stream_barrier_smoke_sweep_killed_resumed_and_plotted(tmp_path):
    """The acceptance path: sweep the MuJoCo stream-barrier panel at its smoke budget, kill -9 it
    mid-sweep, run it again (finished runs skipped), then plot: figures and aggregated CSVs."""
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("matplotlib")
    out, plots = tmp_path / "sweep", tmp_path / "plots"
    command = [sys.executable, "-m", "streamx.cli", "sweep", str(ROOT / "experiments" / "stream_barrier_mujoco"),
               "--budget", "smoke", "--out", str(out), "--jobs", "1"]
    def one_finished_and_the_next_under_way() -> bool:
        states = [run_status(d) for d in out.glob("*") if d.is_dir()]
        return "finished" in states and "incomplete" in states

    _kill_sweep_when(command, tmp_path, one_finished_and_the_next_under_way, timeout=300)
    finished = {d.name: (d / "summary.json").stat().st_mtime_ns for d in out.glob("*")
                if d.is_dir() and run_status(d) == "finished"}
    results = run_sweep(ROOT / "experiments" / "stream_barrier_mujoco", "smoke", out, jobs=2, quiet=True)
    assert len(results) == 12 - len(finished) and {r["status"] for r in results} <= {"finished", "diverged"}
    for name, stamp in finished.items():
        assert (out / name / "summary.json").stat().st_mtime_ns == stamp
    assert main(["plot", str(out), "--out", str(plots), "--bootstrap", "200"]) == 0
    for name in ("curves_Hopper-v5", "barrier", "aggregates"):
        for extension in ("png", "pdf"):
            assert (plots / f"{name}.{extension}").stat().st_size > 1000
    final = _csv(plots / "final.csv")
    assert {row["method"] for row in final} == {"classic_ac", "ppo1", "sac1", "stream_ac", "ppo", "sac"}
    curves = _csv(plots / "curves.csv")
    assert {int(row["window_end"]) for row in curves} == {500, 1000, 1500}
    for row in final:  # two seeds per method, each with a final-window return
        assert row["env"] == "Hopper-v5" and int(row["n_runs"]) + int(row["n_diverged"]) == 2


def _kill_sweep_when(command: list[str], cwd: Path, condition, timeout: float = 240) -> None:
    """Start a sweep in its own process group and kill -9 the whole group once ``condition()``."""
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=cwd)
    deadline = time.monotonic() + timeout
    try:
        while not condition():
            assert process.poll() is None, "the sweep ended before it could be killed"
            if time.monotonic() > deadline:
                pytest.fail("the sweep made no progress")
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_sigterm_stops_the_whole_sweep_and_its_workers_checkpoint(tmp_path):
    experiment, out = _experiment(tmp_path, steps=2_000_000), tmp_path / "out"
    command = [sys.executable, "-m", "streamx.cli", "sweep", str(experiment), "--out", str(out), "--jobs", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while len([d for d in out.glob("*/metrics.csv")]) < 2:  # both workers are training
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)  # to the sweep only, as a scheduler or `kill` would
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1 and b"interrupted" in err
    dirs = [d for d in out.glob("*") if d.is_dir()]
    assert len(dirs) == 2  # no new run started after the signal
    for run_dir in dirs:
        assert run_status(run_dir) == "interrupted"
        assert list((run_dir / "checkpoints").glob("*.ckpt"))


def test_run_identity_covers_every_decisive_value_defaults_included(tmp_path):
    """A run made under an earlier default never answers for a run of today's default."""
    from streamx.config import Config
    from streamx.identity import decisive_values

    experiment = load_experiment(_experiment(tmp_path))
    run = expand(experiment, "smoke", tmp_path / "out")[0]
    before = config_hash(run.config)
    # values at their defaults are part of the identity, so a default that changes moves the run
    assert decisive_values(run.config)["kappa_value"] == Config().kappa_value
    assert config_hash({**run.config, "kappa_value": 3.0}) != before
    # values a run never reads are not part of its identity; values it reads are
    assert config_hash({**run.config, "life_loss": "reset"}) == before  # CartPole is not Atari
    assert config_hash({**run.config, "kappa_policy": 9.0}) == before  # stream_q has no policy
    assert config_hash({**run.config, "exploration_steps": 123}) != before
    assert config_hash({**run.config, "threads": 2, "checkpoint_interval": 7}) == before


def test_saved_configs_without_a_new_field_mean_its_earlier_behaviour():
    from streamx.config import VALUES_BEFORE_FIELD, Config
    from streamx.identity import decisive_values

    saved = Config(algo="stream_q", env="BreakoutNoFrameskip-v4").to_dict()
    for name in VALUES_BEFORE_FIELD:
        saved.pop(name)
    restored = Config.from_saved(saved)
    assert restored.life_loss == "reset" and restored.exploration_steps is None
    assert Config.from_dict(saved).life_loss == "continue"  # today's default: the paper's procedure
    assert decisive_values(saved)["life_loss"] == "reset"
    assert config_hash(saved) != config_hash(Config(algo="stream_q", env="BreakoutNoFrameskip-v4").to_dict())


def test_a_run_made_with_other_settings_is_never_skipped_or_resumed(tmp_path):
    experiment = load_experiment(_experiment(tmp_path, steps=50))
    run = expand(experiment, "smoke", tmp_path / "out")[0]
    assert execute_run(run)["status"] == "finished"
    saved = json.loads((Path(run.run_dir) / "config.json").read_text())
    (Path(run.run_dir) / "config.json").write_text(json.dumps({**saved, "lamda": 0.5}))
    result = execute_run(run)
    assert result["status"] == "failed" and "other settings (lamda differ)" in result["error"]
    assert run_status(run.run_dir) == "finished"  # nothing written over it


def _set_recorded(run_dir: Path, **versions: str | None) -> None:
    path = Path(run_dir) / "versions.json"
    record = json.loads(path.read_text())
    record["task"].update(versions)
    path.write_text(json.dumps(record))


def test_a_run_records_the_package_versions_of_its_task(tmp_path):
    from streamx import provenance

    experiment = load_experiment(_experiment(tmp_path, steps=50))
    run = expand(experiment, "smoke", tmp_path / "out")[0]
    assert execute_run(run)["status"] == "finished"
    record = json.loads((Path(run.run_dir) / "versions.json").read_text())
    assert record["suite"] == "classic"
    assert record["task"] == {"gymnasium": importlib.metadata.version("gymnasium")}
    assert record["other"]["torch"] == importlib.metadata.version("torch")
    assert record["other"]["python"] == platform.python_version()
    # each suite's task is its simulator and gymnasium (which registers the id)
    assert provenance.TASK_PACKAGES["mujoco"] == ("gymnasium", "mujoco")
    assert provenance.TASK_PACKAGES["dmc"] == ("gymnasium", "mujoco", "dm-control", "shimmy")
    assert provenance.TASK_PACKAGES["atari"] == ("gymnasium", "ale-py")
    if provenance.installed_version("mujoco") is not None:
        assert provenance.versions_record("mujoco")["task"] == {
            "gymnasium": importlib.metadata.version("gymnasium"), "mujoco": importlib.metadata.version("mujoco")}
    assert provenance.versions_record("ett")["task"] == {}  # the task is the data file
    assert provenance.versions_record(None)["task"] == {"gymnasium": importlib.metadata.version("gymnasium")}


def test_a_run_of_other_task_versions_is_neither_skipped_nor_resumed(tmp_path, capsys):
    """A run made with another gymnasium (or simulator) is another task: the sweep reports it and
    leaves it as it is, `streamx train --resume` refuses it; a run that recorded nothing (made
    before versions were recorded) is taken as it is, and the sweep says so."""
    from streamx.run import resume

    experiment = _experiment(tmp_path, steps=300, interval=100)
    out = tmp_path / "out"
    assert all(r["status"] == "finished" for r in run_sweep(experiment, "smoke", out, jobs=1, quiet=True))
    runs = expand(load_experiment(experiment), "smoke", out)
    other, unrecorded = Path(runs[0].run_dir), Path(runs[1].run_dir)
    _set_recorded(other, gymnasium="0.29.1")
    (unrecorded / "versions.json").unlink()
    before = {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()}
    capsys.readouterr()
    results = run_sweep(experiment, "smoke", out, jobs=1)
    printed = capsys.readouterr().err
    assert [r["run_dir"] for r in results] == [str(other)]
    assert results[0]["status"] == "failed"
    assert (f"{other} holds a run made with gymnasium 0.29.1 (installed here: "
            f"{importlib.metadata.version('gymnasium')})") in results[0]["error"]
    assert "pip install gymnasium==0.29.1" in results[0]["error"] and "--out" in results[0]["error"]
    assert "3 already finished, 1 to run" in printed
    assert "1 of them hold no versions.json" in printed
    assert {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()} == before  # nothing written over it
    # an interrupted run of another task is not continued either
    summary = json.loads((other / "summary.json").read_text())
    (other / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    with pytest.raises(ConfigError, match=r"gymnasium 0\.29\.1 .*neither continued nor counted as done"):
        resume(other)
    assert execute_run(runs[0])["status"] == "failed"
    (other / "versions.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"versions\.json is unreadable"):
        resume(other)
