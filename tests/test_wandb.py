"""Weights & Biases logging (config wandb=true), checked in W&B's offline mode: the local run
directory W&B writes is read back record by record; nothing is sent anywhere."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from streamx.cli import main as cli_main
from streamx.errors import ConfigError
from streamx.outputs import WANDB_FILE, RunWriter, read_csv
from streamx.run import resolve_config, resume, train


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B in offline mode with every directory it uses under tmp_path; returns WANDB_DIR."""
    for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(key, raising=False)
    directory = tmp_path / "wandb_dir"
    directory.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(directory))
    for key, name in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(key, str(tmp_path / f"wandb_{name}"))
    yield directory
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        wandb.teardown()  # W&B caches its settings per process: the next test starts afresh


def _records(path: Path) -> list:
    """The protobuf records of a W&B transaction log (``run-<id>.wandb``): a 7-byte file header
    (":W&B", magic, version), then 32 KiB blocks of chunks, each with a 7-byte header (CRC-32C,
    length, type: 1 full, 2 first, 3 middle, 4 last) as in LevelDB's log format."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    block, position, payloads, pending = 32768, 7, [], b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        length = int.from_bytes(data[position + 4:position + 6], "little")
        kind = data[position + 6]
        chunk = data[position + 7:position + 7 + length]
        if len(chunk) < length:  # the writer process is still appending this chunk: read what is whole
            break
        position += 7 + length
        if kind == 1:
            payloads.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            payloads.append(pending + chunk)
            pending = b""
    records = []
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def _offline_runs(directory: Path, expected: int) -> list[dict]:
    """Per offline run directory (oldest first): its run record, history rows, summary and exit
    code. W&B's writer process finishes the files after ``finish()`` returns: wait (up to a
    minute) until ``expected`` runs have their exit record."""
    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + 60
    while True:
        try:
            runs = _read_offline_runs(directory)
        except DecodeError:  # a record caught mid-write: read again
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        if (len(runs) >= expected and all(run["exit_code"] is not None for run in runs)) or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def _read_offline_runs(directory: Path) -> list[dict]:
    runs = []
    for run_dir in sorted((directory / "wandb").glob("offline-run-*")):
        (log,) = run_dir.glob("run-*.wandb")
        info: dict = {"dir": run_dir, "history": [], "summary": {}, "exit_code": None, "run": None}
        for record in _records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                info["run"] = record.run
            elif kind == "history":
                info["history"].append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                        for item in record.history.item})
            elif kind == "summary":
                info["summary"].update({item.key: json.loads(item.value_json) for item in record.summary.update
                                        if item.key})
            elif kind == "exit":
                info["exit_code"] = record.exit.exit_code
        runs.append(info)
    return runs


def test_wandb_logs_the_csv_numbers_and_a_resume_continues_the_same_run(tmp_path, offline_wandb):
    pytest.importorskip("wandb")
    run_dir = tmp_path / "run"
    config = resolve_config("stream_q", "CartPole-v1", overrides={
        "total_steps": 2000, "run_dir": str(run_dir), "progress": False, "checkpoint_interval": 500,
        "log_interval": 250, "wandb": True, "wandb_project": "streamx-test", "wandb_group": "ci"})
    first = train(config, on_episode=lambda step, ret, length: step > 1100)
    assert first.status == "stopped_early"
    record = json.loads((run_dir / WANDB_FILE).read_text())
    assert record["project"] == "streamx-test" and record["group"] == "ci" and record["entity"] is None
    assert not (run_dir / "wandb").exists()  # WANDB_DIR is set: W&B's files go there
    (before,) = _offline_runs(offline_wandb, 1)
    assert before["run"].run_id == record["id"] and before["exit_code"] == 0

    resumed = resume(run_dir)
    assert resumed.status == "finished" and resumed.steps == 2000
    runs = _offline_runs(offline_wandb, 2)
    assert len(runs) == 2
    for run in runs:  # one W&B run, continued: same id, project, group
        assert run["run"].run_id == record["id"]
        assert run["run"].project == "streamx-test" and run["run"].run_group == "ci"
        assert run["run"].display_name == "stream_q-CartPole-v1-s0"
    assert runs[-1]["exit_code"] == 0
    assert runs[-1]["summary"]["status"] == "finished" and runs[-1]["summary"]["steps"] == 2000

    history = [row for run in runs for row in run["history"]]
    episodes = [row for row in history if "episode/return" in row]
    csv_episodes = read_csv(run_dir / "episodes.csv")
    assert [row["env_step"] for row in episodes] == [int(row["step"]) for row in csv_episodes]
    assert [row["episode/return"] for row in episodes] == pytest.approx([float(r["return"]) for r in csv_episodes])
    assert [row["episode/length"] for row in episodes] == [int(row["length"]) for row in csv_episodes]
    metrics = [row for row in history if "train/td_error_rms" in row]
    csv_metrics = read_csv(run_dir / "metrics.csv")
    assert [row["env_step"] for row in metrics] == [int(row["step"]) for row in csv_metrics]
    assert [row["train/recent_return"] for row in metrics] == pytest.approx(
        [float(r["recent_return"]) for r in csv_metrics], rel=1e-5)


def test_wandb_files_go_to_the_run_directory_without_wandb_dir(tmp_path, offline_wandb, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_DIR")
    writer = RunWriter(tmp_path / "run", {"algo": "stream_q", "env": "CartPole-v1", "seed": 3}, wandb=True)
    writer.episode(7, 2.5, 7, 0.1)
    writer.metric({"step": 10, "episodes": 1, "recent_return": 2.5})
    writer.summary({"status": "failed", "steps": 10})
    writer.close()
    (run,) = _offline_runs(tmp_path / "run", 1)
    assert run["run"].display_name == "stream_q-CartPole-v1-s3" and run["exit_code"] == 1
    assert {"env_step": 7, "episode/return": 2.5, "episode/length": 7}.items() <= run["history"][0].items()
    assert {"env_step": 10, "train/episodes": 1, "train/recent_return": 2.5}.items() <= run["history"][1].items()


def test_wandb_missing_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'streamx-rl\[wandb\]'"):
        RunWriter(tmp_path / "run", {"algo": "stream_q"}, wandb=True)
    assert not (tmp_path / "run").exists()  # nothing written before the error
    code = cli_main(["train", "stream_q", "--env", "CartPole-v1", "--steps", "100", "--run-dir",
                     str(tmp_path / "cli"), "wandb=true", "progress=false"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "streamx-rl[wandb]" in error


def test_wandb_settings_default_to_the_run_config(tmp_path, offline_wandb):
    """A caller that passes only the config (the batch baselines do) logs as the config says, and
    reopening the directory continues the run config.json names."""
    pytest.importorskip("wandb")
    config = {"algo": "ppo1", "env": "CartPole-v1", "seed": 1, "label": "ppo_batch1", "wandb": True,
              "wandb_project": "from-config", "wandb_entity": None, "wandb_group": "sb3"}
    writer = RunWriter(tmp_path / "run", config)
    writer.episode(5, 1.0, 5, 0.1)
    writer.close()
    reopened = RunWriter.reopen(tmp_path / "run", extra_fields=(), episode_rows=1, metric_rows=0)
    reopened.episode(9, 2.0, 4, 0.2)
    reopened.summary({"status": "finished"})
    reopened.close()
    runs = _offline_runs(offline_wandb, 2)
    assert len(runs) == 2
    record = json.loads((tmp_path / "run" / WANDB_FILE).read_text())
    assert record["project"] == "from-config" and record["group"] == "sb3"
    for run in runs:
        assert run["run"].run_id == record["id"] and run["run"].project == "from-config"
        assert run["run"].run_group == "sb3" and run["run"].display_name == "ppo_batch1-CartPole-v1-s1"
    assert [row["env_step"] for run in runs for row in run["history"]] == [5, 9]
    assert [run["exit_code"] for run in runs] == [1, 0]  # closed without a summary: not a finished run
    off = RunWriter(tmp_path / "off", {**config, "wandb": True}, wandb=False)  # an argument overrides the config
    off.close()
    assert not (tmp_path / "off" / WANDB_FILE).exists()
