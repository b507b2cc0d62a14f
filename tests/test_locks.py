"""One writer per run directory, and no sweep worker outliving its sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from streamx.errors import RunLockedError
from streamx.run import checkpoint_paths, resolve_config, resume, train
from streamx.runlock import LOCK_FILE, holder, run_lock

REPO = Path(__file__).resolve().parents[1]


def _holding_child(run_dir: Path) -> subprocess.Popen:
    """A child process that takes the run directory's lock and sleeps."""
    code = textwrap.dedent(f"""
        import time
        from streamx.runlock import run_lock
        with run_lock({str(run_dir)!r}):
            print("locked", flush=True)
            time.sleep(300)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert child.stdout.readline().strip() == "locked"
    return child


def _config(run_dir: Path, steps: int = 200, **overrides):
    return resolve_config("stream_q", "CartPole-v1", overrides={
        "total_steps": steps, "run_dir": str(run_dir), "progress": False, "hidden_sizes": [8],
        "checkpoint_interval": 100, **overrides})


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_leaves_no_lock(tmp_path):
    run_dir = tmp_path / "run"
    train(_config(run_dir))
    child = _holding_child(run_dir)
    try:
        assert holder(run_dir) == child.pid
        with pytest.raises(RunLockedError, match=f"in use by process {child.pid}"):
            resume(run_dir)
        with pytest.raises(RunLockedError, match=f"in use by process {child.pid}"):
            train(_config(run_dir))  # before RunWriter could say anything about the directory
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert holder(run_dir) is None  # the OS dropped the lock with the process
    with run_lock(run_dir) as stale:
        assert stale == child.pid  # the dead holder's PID is recognized as stale
        assert holder(run_dir) == os.getpid()
        with run_lock(run_dir) as again:  # re-entrant in one process
            assert again is None
    assert holder(run_dir) is None
    assert (run_dir / LOCK_FILE).read_text() == ""  # a clean release leaves no PID behind


def test_resume_while_the_run_trains_is_refused_from_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    trainer = subprocess.Popen([sys.executable, "-m", "streamx.cli", "train", "stream_q", "--env", "CartPole-v1",
                                "--steps", "10000000", "--run-dir", str(run_dir), "progress=false",
                                "checkpoint_interval=500", "hidden_sizes=8"], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not checkpoint_paths(run_dir) and time.time() < deadline:
            time.sleep(0.2)
        assert checkpoint_paths(run_dir), "the training process wrote no checkpoint"
        second = subprocess.run([sys.executable, "-m", "streamx.cli", "train", "--resume", str(run_dir)],
                                cwd=REPO, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert second.stderr.strip() == (f"streamx: error: run directory {run_dir} is in use by process "
                                         f"{trainer.pid} (it is training or resuming this run); wait for it to "
                                         "finish or stop it, then try again")
    finally:
        trainer.send_signal(signal.SIGTERM)  # checkpoints and stops
        trainer.wait(timeout=300)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sweep_workers_die_with_a_killed_sweep_and_leave_their_runs_resumable(tmp_path):
    experiment = tmp_path / "orphans.yaml"
    experiment.write_text(textwrap.dedent("""
        name: orphans
        envs: [CartPole-v1]
        methods:
          q: {algo: stream_q, overrides: {hidden_sizes: [8], checkpoint_interval: 500}}
        budgets:
          long: {total_steps: 10000000, seeds: 2}
    """))
    out = tmp_path / "sweep"
    sweep = subprocess.Popen([sys.executable, "-m", "streamx.cli", "sweep", str(experiment), "--budget", "long",
                              "--out", str(out), "--jobs", "2"], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        runs: list[Path] = []
        while time.time() < deadline:
            runs = [p for p in out.glob("*") if p.is_dir() and checkpoint_paths(p)]
            if len(runs) == 2:
                break
            time.sleep(0.2)
        assert len(runs) == 2, "the sweep's workers did not start training"
        workers = [holder(run) for run in runs]
        assert all(pid and pid != sweep.pid for pid in workers)
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    deadline = time.time() + 120
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "sweep workers outlived their killed sweep"
    for run in runs:  # each worker was told to stop: it checkpointed and released its directory
        assert holder(run) is None
        assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
