"""The run directory: plain, durable result files.

    config.json    the resolved config (atomic write)
    versions.json  the versions of the packages the run was made with (streamx.provenance)
    episodes.csv   step, return, length, wall_time — one row per finished episode
    metrics.csv    periodic learning diagnostics (TD error, effective step size, trace norm, steps/s)
    summary.json   written at the end (atomic): steps, episodes, final returns, status
    prediction.json  stream_td only: v(s_t) against the true discounted returns, computed at the end
    tb/            TensorBoard events (only with tensorboard=true)
    wandb.json     the Weights & Biases run id (only with wandb=true; a resume continues that run)
    wandb/         W&B's local files (only with wandb=true and WANDB_DIR unset)

CSV rows are written whole and flushed as they happen, so a crash loses nothing written.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from streamx.errors import CheckpointError, ConfigError
from streamx.provenance import VERSIONS_FILE

__all__ = ["EPISODE_FIELDS", "METRIC_FIELDS", "WANDB_FILE", "RunWriter", "atomic_write_bytes", "atomic_write_text",
           "read_csv"]

EPISODE_FIELDS = ("step", "return", "length", "wall_time")
METRIC_FIELDS = (
    "step", "episodes", "recent_return", "td_error_abs_mean", "td_error_rms",
    "effective_step_size_mean", "effective_step_size_min", "trace_norm_mean", "steps_per_second",
)
WANDB_FILE = "wandb.json"
"""The run directory's record of its Weights & Biases run (id, project, entity, group)."""
_WANDB_STEP = "env_step"
"""The x-axis of every W&B chart: the agent step, as in the CSV files and TensorBoard."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename: never a half-written file."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class _CsvLog:
    """An append-only CSV file; ``keep_rows`` reopens an existing one, cut after that many rows
    (rows written after the checkpoint a run resumes from are dropped and written again)."""

    def __init__(self, path: Path, fields: tuple[str, ...], keep_rows: int | None = None) -> None:
        self.fields = fields
        self.rows = 0
        if keep_rows is None:
            self._handle = open(path, "w", newline="")  # noqa: SIM115 - kept open for the run
            self._writer = csv.writer(self._handle)
            self._writer.writerow(fields)
        else:
            with open(path, newline="") as handle:
                lines = handle.read().splitlines(keepends=True)
            header = next(csv.reader(lines[:1]), [])
            if tuple(header) != fields or len(lines) - 1 < keep_rows:
                raise CheckpointError(f"{path} does not match the checkpoint (header or row count); "
                                      "the run directory was changed by hand — start a new run")
            atomic_write_text(path, "".join(lines[:keep_rows + 1]))
            self._handle = open(path, "a", newline="")  # noqa: SIM115 - kept open for the run
            self._writer = csv.writer(self._handle)
            self.rows = keep_rows
        self._handle.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow([_fmt(row.get(name, "")) for name in self.fields])
        self._handle.flush()
        self.rows += 1

    def close(self) -> None:
        self._handle.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


class RunWriter:
    """Creates the run directory and writes every result file of one run.

    Weights & Biases logging follows ``wandb``, ``wandb_project``, ``wandb_entity`` and
    ``wandb_group``; each one left at None takes the run config's field of that name (the
    ``config`` given here, or the run directory's config.json on ``reopen``). ``versions``, when
    given, is written to versions.json (:func:`streamx.provenance.versions_record`)."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any], extra_fields: tuple[str, ...] = (),
                 tensorboard: bool = False, wandb: bool | None = None, wandb_project: str | None = None,
                 wandb_entity: str | None = None, wandb_group: str | None = None,
                 versions: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        enabled, options = _wandb_options(config, wandb, wandb_project, wandb_entity, wandb_group)
        if enabled:
            _import_wandb()  # a missing package fails before anything is written
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write_test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"run directory {self.run_dir} is not writable ({exc.strerror}); choose another with --run-dir"
            ) from None
        if (self.run_dir / "episodes.csv").exists() or (self.run_dir / "config.json").exists():
            raise ConfigError(
                f"run directory {self.run_dir} already holds a run; choose a new --run-dir "
                "(results are never overwritten)"
            )
        atomic_write_text(self.run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
        if versions is not None:
            atomic_write_text(self.run_dir / VERSIONS_FILE, json.dumps(versions, indent=2, sort_keys=True) + "\n")
        self.episodes = _CsvLog(self.run_dir / "episodes.csv", EPISODE_FIELDS)
        self.metrics = _CsvLog(self.run_dir / "metrics.csv", METRIC_FIELDS + extra_fields)
        self._open_tensorboard(tensorboard)
        self._open_wandb(enabled, options, config)

    @classmethod
    def reopen(cls, run_dir: str | Path, extra_fields: tuple[str, ...], episode_rows: int, metric_rows: int,
               tensorboard: bool = False, step: int | None = None, wandb: bool | None = None,
               wandb_project: str | None = None, wandb_entity: str | None = None,
               wandb_group: str | None = None) -> RunWriter:
        """Continue writing an existing run directory (resume), keeping the rows a checkpoint
        accounts for; with ``step`` (the checkpoint's), TensorBoard events after it are
        purged too, so the resumed run does not draw a second line over them. With ``wandb``
        the W&B run whose id ``wandb.json`` holds is continued (W&B keeps what it was sent
        after the checkpoint: the resumed run sends those steps again)."""
        config: dict[str, Any] = {}
        try:
            config = json.loads((Path(run_dir) / "config.json").read_text())
        except (OSError, ValueError):
            config = {}
        enabled, options = _wandb_options(config, wandb, wandb_project, wandb_entity, wandb_group)
        if enabled:
            _import_wandb()
        writer = cls.__new__(cls)
        writer.run_dir = Path(run_dir)
        writer.episodes = _CsvLog(writer.run_dir / "episodes.csv", EPISODE_FIELDS, keep_rows=episode_rows)
        writer.metrics = _CsvLog(writer.run_dir / "metrics.csv", METRIC_FIELDS + extra_fields, keep_rows=metric_rows)
        writer._open_tensorboard(tensorboard, purge_after=step)
        writer._open_wandb(enabled, options, config)
        return writer

    @property
    def metric_rows(self) -> int:
        return self.metrics.rows

    def _open_tensorboard(self, tensorboard: bool, purge_after: int | None = None) -> None:
        self.tensorboard = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError(
                    "tensorboard=true needs the tensorboard package: pip install 'streamx-rl[tensorboard]'"
                ) from None
            purge_step = None if purge_after is None else purge_after + 1  # events at steps > purge_after go
            self.tensorboard = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)

    def _open_wandb(self, enabled: bool, options: dict[str, str | None], config: dict[str, Any]) -> None:
        """Start (or, when ``wandb.json`` names one, continue) this run's W&B run. Its id is
        written to ``wandb.json`` before the run starts, so a resume always finds it."""
        self.wandb: Any = None
        self._wandb_exit_code = 1  # until summary() reports a finished run
        if not enabled:
            return
        wandb = _import_wandb()
        record_path = self.run_dir / WANDB_FILE
        record: dict[str, Any] = {}
        if record_path.is_file():
            try:
                record = json.loads(record_path.read_text())
            except (OSError, ValueError):
                record = {}
        run_id = record.get("id")
        if not isinstance(run_id, str) or not run_id:
            run_id = secrets.token_hex(8)  # W&B ids: lower-case letters and digits
            record = {"id": run_id, **options}
            atomic_write_text(record_path, json.dumps(record, indent=2, sort_keys=True) + "\n")
        directory = os.environ.get("WANDB_DIR") or str(self.run_dir)  # read now: W&B's own settings are cached
        name = f"{config.get('label') or config.get('algo', 'run')}-{config.get('env', '')}-s{config.get('seed', 0)}"
        self.wandb = wandb.init(
            id=run_id, resume="allow", project=record.get("project") or options["project"],
            entity=record.get("entity") or options["entity"], group=record.get("group") or options["group"],
            name=name, config=config, dir=directory, settings=wandb.Settings(console="off", silent=True),
            reinit="create_new",
        )
        self.wandb.define_metric(_WANDB_STEP)
        self.wandb.define_metric("episode/*", step_metric=_WANDB_STEP)
        self.wandb.define_metric("train/*", step_metric=_WANDB_STEP)

    def episode(self, step: int, episode_return: float, length: int, wall_time: float) -> None:
        self.episodes.write({"step": step, "return": float(episode_return), "length": int(length),
                             "wall_time": round(wall_time, 3)})
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("episode/return", episode_return, step)
            self.tensorboard.add_scalar("episode/length", length, step)
        if self.wandb is not None:
            self.wandb.log({_WANDB_STEP: int(step), "episode/return": float(episode_return),
                            "episode/length": int(length)})

    def metric(self, row: dict[str, Any]) -> None:
        self.metrics.write(row)
        scalars = {key: value for key, value in row.items()
                   if key != "step" and isinstance(value, int | float) and not isinstance(value, bool)}
        if self.tensorboard is not None:
            for key, value in scalars.items():
                self.tensorboard.add_scalar(f"train/{key}", value, row["step"])
        if self.wandb is not None:
            self.wandb.log({_WANDB_STEP: int(row["step"]), **{f"train/{key}": value for key, value in scalars.items()}})

    def prediction_report(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.run_dir / "prediction.json", json.dumps(data, indent=2, sort_keys=True) + "\n")

    def summary(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.run_dir / "summary.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
        if self.wandb is not None:
            for key in ("status", "steps", "episodes", "wall_time", "steps_per_second", "final_mean_return_last_10"):
                if data.get(key) is not None:
                    self.wandb.summary[key] = data[key]
            self._wandb_exit_code = 0 if data.get("status") in ("finished", "stopped_early") else 1

    def close(self) -> None:
        self.episodes.close()
        self.metrics.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish(exit_code=self._wandb_exit_code)
            self.wandb = None


def _wandb_options(config: dict[str, Any], wandb: bool | None, project: str | None, entity: str | None,
                   group: str | None) -> tuple[bool, dict[str, str | None]]:
    """Whether to log to W&B and the run's project, entity and group: each argument, or where it
    is None the config's field of the same name."""
    enabled = bool(config.get("wandb", False)) if wandb is None else wandb
    options = {"project": project or config.get("wandb_project") or "streamx",
               "entity": entity if entity is not None else config.get("wandb_entity"),
               "group": group if group is not None else config.get("wandb_group")}
    return enabled, options


def _import_wandb() -> Any:
    """The wandb module, or a one-line ConfigError naming the extra that installs it."""
    try:
        import wandb
    except ImportError:
        raise ConfigError("wandb=true needs the wandb package: pip install 'streamx-rl[wandb]'") from None
    return wandb
