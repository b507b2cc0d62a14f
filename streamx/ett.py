"""The Stream TD(λ) prediction task on the ETT electricity-transformer series (PAPER §4).

One pass over a multivariate time series is one episode. At row ``t`` the agent observes the
seven load/temperature columns smoothed by a bias-corrected exponential moving average, and
predicts the discounted sum of future cumulants: the oil temperature (OT), min-max normalized
over the series. The step into observation ``t`` returns as its cumulant the OT of row ``t + 1``
(``cumulant="paper"``, the authors' pairing, PAPER §9: the cumulant of the transition
``s_t → s_{t+1}`` is OT at row ``t + 2``) or of row ``t`` itself (``cumulant="same_row"``).
There is no control: the action space is a one-action dummy.

Indexing used throughout this module (``T`` rows, lead ``k`` = 2 (paper) or 1 (same_row),
``n = T − k`` transitions)::

    s_t          = smoothed features of rows 0..t                     t = 0 .. n
    cumulants[t] = c_{t+1} = OT_norm[t+k]   (reward of the step s_t → s_{t+1})   t = 0 .. n−1
    returns[t]   = G_t = c_{t+1} + γ G_{t+1},  G_{n−1} = c_n  (s_n is terminal, v = 0)
    TD error     δ_t = c_{t+1} + γ v(s_{t+1}) − v(s_t)

so ``predictions[t] = v(s_t)`` (what ``StreamTD.update`` returns as ``"prediction"``) is
compared with ``returns[t]``.

The data: the ETT-small CSVs of https://github.com/zhouhaoyi/ETDataset (CC BY-ND 4.0; the paper
used ETTm2, 15-minute data). streamx ships no data: :func:`load_ett` reads a CSV you point it
at, or downloads the file once into a cache directory.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import http.client
import math
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from streamx.errors import ConfigError
from streamx.prediction import discounted_returns, prediction_report

__all__ = [
    "ETT_COLUMNS",
    "ETT_DATASETS",
    "ETT_URL_TEMPLATE",
    "ETTPrediction",
    "default_cache_dir",
    "discounted_returns",
    "load_ett",
    "prediction_report",
    "register_ett_envs",
]

ETT_DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2")
ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
ETT_URL_TEMPLATE = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{dataset}.csv"
"""Raw-file URL of one ETT-small CSV; ``{dataset}`` is one of :data:`ETT_DATASETS`."""

DOWNLOAD_TIMEOUT_S = 30.0
_TARGET = ETT_COLUMNS.index("OT")


# --- loading ------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$STREAMX_DATA_DIR`` if set (the directory that holds the CSVs), else ``~/.cache/streamx/ett``."""
    configured = os.environ.get("STREAMX_DATA_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "streamx" / "ett"


def _check_dataset(dataset: str) -> None:
    if dataset not in ETT_DATASETS:
        close = difflib.get_close_matches(dataset, ETT_DATASETS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown ETT dataset '{dataset}'{hint}; choose one of: {', '.join(ETT_DATASETS)}")


def _read_csv(path: Path) -> np.ndarray:
    """The ETT columns of one CSV as float64 [T, 7]; ConfigError naming the file otherwise."""
    if not path.is_file():
        raise ConfigError(f"ETT file {path} does not exist; check the path (the CSV of zhouhaoyi/ETDataset)")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in ETT_COLUMNS if name not in header]
            if missing:
                raise ConfigError(
                    f"ETT file {path} lacks the column(s) {', '.join(missing)} (its header is "
                    f"{','.join(header) or 'empty'}); it must have the columns {','.join(ETT_COLUMNS)}"
                )
            indices = [header.index(name) for name in ETT_COLUMNS]
            rows: list[list[float]] = []
            for line_number, row in enumerate(reader, start=2):
                if not row:
                    continue  # a trailing blank line
                try:
                    values = [float(row[i]) for i in indices]
                except (ValueError, IndexError):
                    raise ConfigError(
                        f"ETT file {path}, line {line_number}: a value of {','.join(ETT_COLUMNS)} is missing "
                        f"or not a number ({','.join(row)[:200]}); fix or re-download the file"
                    ) from None
                if not all(math.isfinite(v) for v in values):
                    raise ConfigError(
                        f"ETT file {path}, line {line_number}: NaN or infinite value ({','.join(row)[:200]}); "
                        "the task needs every value finite — fix or re-download the file"
                    )
                rows.append(values)
    except UnicodeDecodeError:
        raise ConfigError(f"ETT file {path} is not a text CSV; re-download it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read ETT file {path}: {exc.strerror or exc}; check the path") from None
    if len(rows) < 2:
        raise ConfigError(f"ETT file {path} has {len(rows)} data row(s); the task needs at least 2")
    return np.asarray(rows, dtype=np.float64)


def _download(dataset: str, target: Path) -> None:
    """Fetch ``dataset`` into ``target``: to a temporary file beside it, validated, then an atomic
    rename, so an interrupted download never leaves a half-written CSV in the cache."""
    url = ETT_URL_TEMPLATE.format(dataset=dataset)
    manual = (
        f"download it by hand to {target} (e.g. `curl -L -o {target} {url}`), or pass the path of a "
        f"copy: ETTPrediction(path=...) or env_kwargs={{path: /path/to/{dataset}.csv}}"
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{dataset}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise ConfigError(f"cannot create the ETT cache directory {target.parent} ({exc.strerror or exc}); "
                          f"set STREAMX_DATA_DIR or cache_dir to a writable directory, or {manual}") from None
    temp_path = Path(temp_name)
    try:
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                shutil.copyfileobj(response, out)
        except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSErrors
            reason = getattr(exc, "reason", None) or exc
            raise ConfigError(f"could not download the ETT dataset {dataset} ({reason}); {manual}") from None
        try:
            _read_csv(temp_path)
        except ConfigError as exc:
            raise ConfigError(f"the download of {url} is not a valid ETT CSV ({exc}); {manual}") from None
        os.replace(temp_path, target)
    finally:
        with contextlib.suppress(OSError):
            temp_path.unlink()


def load_ett(dataset: str = "ETTm2", path: str | Path | None = None,
             cache_dir: str | Path | None = None) -> np.ndarray:
    """The ETT series as float64 ``[T, 7]`` in :data:`ETT_COLUMNS` order (the date column dropped).

    With ``path``: read that CSV (``dataset`` is then only a label). Without: use
    ``<cache_dir>/<dataset>.csv`` (default :func:`default_cache_dir`), downloading it from
    :data:`ETT_URL_TEMPLATE` once if absent. Raises ConfigError with the fix for a missing or
    malformed file, or when the download fails (e.g. offline).
    """
    if path is not None:
        return _read_csv(Path(path).expanduser())
    _check_dataset(dataset)
    target = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / f"{dataset}.csv"
    if not target.is_file():
        _download(dataset, target)
    return _read_csv(target)


# --- the environment --------------------------------------------------------------------------

def smoothed_features(data: np.ndarray, beta: float = 0.999) -> np.ndarray:
    """Bias-corrected exponential moving average of each column (PAPER §4).

    ``m_k = β m_{k−1} + (1 − β) x_k`` with ``m_0 = 0``, output ``m_k / (1 − β^k)`` for
    ``k = 1..T`` (row ``k − 1``), so the first output equals the first row exactly.
    """
    data = np.asarray(data, dtype=np.float64)
    out = np.empty_like(data)
    average = np.zeros(data.shape[1:], dtype=np.float64)
    for k, row in enumerate(data, start=1):
        average = beta * average + (1.0 - beta) * row
        out[k - 1] = average / (1.0 - beta**k)
    return out


CUMULANT_LEADS = {"paper": 2, "same_row": 1}
"""How many rows after s_t the cumulant of the transition s_t → s_{t+1} is read."""


class ETTPrediction(gym.Env):
    """One pass over an ETT series as one episode of a prediction task (PAPER §4).

    ``reset`` returns ``s_0``; the ``t``-th ``step`` returns ``s_{t+1}``, the cumulant
    ``c_{t+1}`` = min-max-normalized OT (min and max over the whole series) at row ``t + 2``
    (``cumulant="paper"``) or ``t + 1`` (``"same_row"``), and ``terminated=True`` on the last
    transition. Observations are float32 ``(7,)``: the columns smoothed
    by :func:`smoothed_features`, not yet normalized (wrap in
    :class:`streamx.wrappers.NormalizeObservation`).

    The action space is ``Discrete(1)``: a single no-op action, present only so standard
    gymnasium wrappers and agents that sample actions work; the action is ignored.

    Data comes from ``data`` (an in-memory ``[T, 7]`` array in :data:`ETT_COLUMNS` order) if
    given, else from :func:`load_ett` (``dataset``, ``path``, ``cache_dir``).

    Attributes for offline evaluation: ``cumulants`` (float64, ``[n]``, ``cumulants[t]`` is
    the reward of step ``t``), ``features`` (float64 ``[T, 7]``, the smoothed observations),
    ``data`` (the raw series), ``num_transitions`` (``n`` = T − 2, or T − 1 with ``same_row``).
    """

    metadata: dict[str, Any] = {"render_modes": []}
    single_pass: bool = True
    """A data stream is learned in one pass: ``streamx.run.train`` stops when the episode ends."""

    def __init__(self, dataset: str = "ETTm2", path: str | Path | None = None,
                 cache_dir: str | Path | None = None, beta: float = 0.999, data: np.ndarray | None = None,
                 cumulant: str = "paper"):
        if not 0.0 <= beta < 1.0:
            raise ConfigError(f"beta={beta} must lie in [0, 1) (the paper uses 0.999)")
        if cumulant not in CUMULANT_LEADS:
            raise ConfigError(f"cumulant={cumulant!r} must be one of {', '.join(CUMULANT_LEADS)} "
                              "(paper: the step into row t returns OT of row t + 1)")
        lead = CUMULANT_LEADS[cumulant]
        if data is None:
            data = load_ett(dataset, path=path, cache_dir=cache_dir)
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != len(ETT_COLUMNS) or data.shape[0] < lead + 1:
            raise ConfigError(
                f"ETT data must have shape [T >= {lead + 1}, {len(ETT_COLUMNS)}] (columns {','.join(ETT_COLUMNS)}), "
                f"got {data.shape}"
            )
        if not np.isfinite(data).all():
            raise ConfigError("ETT data holds NaN or infinite values; the task needs every value finite")
        target = data[:, _TARGET]
        self.ot_min, self.ot_max = float(target.min()), float(target.max())
        if self.ot_max == self.ot_min:
            raise ConfigError(f"the OT column is constant ({self.ot_min}), so its min-max normalization is undefined")
        self.dataset = dataset
        self.beta = beta
        self.data = data
        self.features = smoothed_features(data, beta)
        self.cumulant = cumulant
        self.cumulants = (target[lead:] - self.ot_min) / (self.ot_max - self.ot_min)
        self.num_transitions = len(self.cumulants)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(len(ETT_COLUMNS),), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(1)
        self._row: int | None = None

    def _observation(self) -> np.ndarray:
        return self.features[self._row].astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._row = 0
        return self._observation(), {"row": 0}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._row is None or self._row >= self.num_transitions:
            raise gym.error.ResetNeeded("the ETT series has ended (or never started); call reset() first")
        cumulant = float(self.cumulants[self._row])
        self._row += 1
        terminated = self._row == self.num_transitions
        return self._observation(), cumulant, terminated, False, {"row": self._row}

    # The position in the series is the whole simulator state: checkpoints resume mid-pass.
    def simulator_state(self) -> dict[str, Any]:
        return {"row": -1 if self._row is None else self._row}

    def load_simulator_state(self, state: dict[str, Any]) -> None:
        self._row = None if int(state["row"]) < 0 else int(state["row"])

# --- registration -----------------------------------------------------------------------------

def register_ett_envs() -> None:
    """Register ``streamx/<dataset>-v0`` for every ETT dataset (idempotent).

    ``gymnasium.make("streamx/ETTh2-v0", path="ETTh2.csv")`` then builds :class:`ETTPrediction`.
    """
    for dataset in ETT_DATASETS:
        env_id = f"streamx/{dataset}-v0"
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="streamx.ett:ETTPrediction", kwargs={"dataset": dataset})


register_ett_envs()
