"""A run folder: tables (Markdown, CSV, JSON), figures (PNG), and resumable cells.

Every file is written atomically (a temporary file, then a rename), so an interrupted
run never leaves a half-written table behind. A *cell* is one finished unit of work
(one method on one benchmark) stored with the configuration that produced it; asking
for the same cell with the same configuration loads it instead of recomputing it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunFolder", "config_key", "format_cell", "markdown_table", "threads_label",
           "write_atomic"]


def config_key(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable configuration."""
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def format_cell(value: Any) -> str:
    """A table cell as the Markdown tables write it: floats with three decimals (or in
    scientific notation below 0.001), ``–`` for a missing value."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as a GitHub Markdown table (floats with three decimals, ``–`` where a
    row has no value); the columns default to every key of any row."""
    if not rows:
        return ""
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(format_cell(row.get(c)) for c in columns) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def threads_label(threads: int | str) -> str:
    """``"1 thread"``, ``"2 threads"``, ``"1/2 threads"``: how tables name the threads a
    measurement ran on."""
    return f"{threads} thread{'' if str(threads) == '1' else 's'}"


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it, and set it back at once
    os.umask(mask)
    return mask


def write_atomic(target: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``target``, then rename it into place:
    readers see the whole file or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    try:
        # mkstemp makes the file its owner's alone; a result file is as readable as any
        # file this user makes (the umask's permissions)
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class RunFolder:
    """A folder that collects the outputs of one run."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.written: list[str] = []  # tables, figures and reports of this run, not cells

    def _write_bytes(self, name: str, data: bytes) -> Path:
        if not name.startswith("cells/") and name not in self.written:
            self.written.append(name)
        return write_atomic(self.path / name, data)

    def publish(self, destination: str | os.PathLike) -> list[Path]:
        """Copy this run's tables, figures and reports (never its cells) to
        ``destination``, for example ``docs/results/<run>`` to commit the results a
        document quotes. Returns the files written."""
        folder = Path(destination)
        return [write_atomic(folder / name, (self.path / name).read_bytes())
                for name in self.written]

    def write_text(self, name: str, text: str) -> Path:
        return self._write_bytes(name, text.encode())

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2, default=float) + "\n")

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text())

    def write_npy(self, name: str, array: np.ndarray) -> Path:
        buffer = io.BytesIO()
        np.save(buffer, array)
        return self._write_bytes(name, buffer.getvalue())

    def write_npz(self, name: str, arrays: dict[str, np.ndarray]) -> Path:
        """Several arrays in one compressed ``.npz`` (keys: their names)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return self._write_bytes(name, buffer.getvalue())

    def write_table(self, stem: str, rows: Sequence[dict[str, Any]],
                    columns: Sequence[str] | None = None) -> None:
        """``stem.md``, ``stem.csv`` and ``stem.json`` of the same rows; the columns
        default to every key of any row, in the order they first appear."""
        columns = list(columns or dict.fromkeys(key for row in rows for key in row))
        self.write_text(f"{stem}.md", markdown_table(rows, columns))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        self.write_text(f"{stem}.csv", buffer.getvalue())
        self.write_json(f"{stem}.json", list(rows))

    def save_figure(self, name: str, figure: Any) -> Path:
        """Save a matplotlib figure as PNG (uattr's figures are plain ``Figure`` objects,
        outside pyplot: nothing to close, and the backend is left alone)."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        return self._write_bytes(name, buffer.getvalue())

    # ------------------------------------------------------------------------ cells
    def load_cell(self, name: str, config: dict[str, Any]) -> tuple[dict, np.ndarray] | None:
        """The stored record and array of cell ``name`` if it was made with ``config``; a
        damaged one is moved aside (:mod:`.healing`) and computed again."""
        from .healing import read_json_or_set_aside, read_npy_or_set_aside, set_aside

        record_path = self.path / "cells" / f"{name}.json"
        array_path = self.path / "cells" / f"{name}.npy"
        if not (record_path.exists() and array_path.exists()):
            return None
        stored = read_json_or_set_aside(record_path)
        if not isinstance(stored, dict) or "record" not in stored:
            if record_path.exists():
                set_aside(record_path, "it is not a cell's record")
            return None
        if stored.get("config_key") != config_key(config):
            return None
        array = read_npy_or_set_aside(array_path)
        if array is None:
            return None
        return stored["record"], array

    def save_cell(self, name: str, config: dict[str, Any], record: dict, array: np.ndarray) -> None:
        """Store a finished cell (array first, so a record always has its array)."""
        self.write_npy(f"cells/{name}.npy", array)
        self.write_json(f"cells/{name}.json",
                        {"config_key": config_key(config), "config": config, "record": record})
