"""A SQLite results store: one row per explanation, safe with several writers."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .explanation import CausalExplanation

__all__ = ["ResultsStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS explanations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT,
    target INTEGER NOT NULL,
    confidence REAL NOT NULL,
    seconds REAL,
    responsibility BLOB NOT NULL,
    masks BLOB NOT NULL,
    settings TEXT NOT NULL,
    stats TEXT NOT NULL,
    metrics TEXT,
    created REAL NOT NULL
)
"""


def _pack(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else float(o))


class ResultsStore:
    """Explanations in a SQLite file (stdlib ``sqlite3``).

    Each ``add`` is one transaction; the database uses write-ahead logging and waits up to ``timeout`` seconds
    for a lock, so several processes can write to the same file. Arrays are stored compressed (``.npz``) and
    read back without unpickling anything.
    """

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.timeout)

    def add(self, explanation: CausalExplanation, with_metrics: bool = True) -> int:
        """Store one explanation (its metrics computed first unless ``with_metrics=False``); returns its row id."""
        metrics = explanation.metrics() if with_metrics else None
        masks = {"explanation": explanation.explanation} if explanation.explanation is not None else {}
        masks.update({f"explanation_{i}": m for i, m in enumerate(explanation.explanations)})
        if explanation.contrastive is not None:
            masks["contrastive"] = explanation.contrastive
        row = (
            explanation.path, int(explanation.target), float(explanation.confidence),
            float(explanation.stats.get("seconds", float("nan"))),
            _pack(responsibility=explanation.responsibility.astype(np.float32)), _pack(**masks),
            _json(explanation.settings), _json(explanation.stats), _json(metrics) if metrics else None, time.time(),
        )
        connection = self._connect()
        try:
            with connection:  # one transaction
                cursor = connection.execute(
                    "INSERT INTO explanations (path, target, confidence, seconds, responsibility, masks, settings, "
                    "stats, metrics, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row,
                )
                return int(cursor.lastrowid)
        finally:
            connection.close()

    def to_pandas(self, arrays: bool = True) -> pd.DataFrame:
        """Every row; settings, stats and metrics as dicts, the map and masks as arrays (when ``arrays``)."""
        connection = self._connect()
        try:
            table = pd.read_sql_query("SELECT * FROM explanations ORDER BY id", connection)
        finally:
            connection.close()
        for column in ("settings", "stats", "metrics"):
            table[column] = table[column].map(lambda text: json.loads(text) if text else None)
        if arrays:
            table["responsibility"] = table["responsibility"].map(lambda blob: _unpack(blob)["responsibility"])
            table["masks"] = table["masks"].map(_unpack)
        else:
            table = table.drop(columns=["responsibility", "masks"])
        return table

    def __len__(self) -> int:
        connection = self._connect()
        try:
            return int(connection.execute("SELECT COUNT(*) FROM explanations").fetchone()[0])
        finally:
            connection.close()
