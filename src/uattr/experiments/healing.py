"""Result files that heal: every file a run reads back (shards, cells, manifests, timing
rows, cached models and scores) is checked as it is read; one that is damaged (cut short
by a full disk, an interrupted copy, a killed process on a file system without atomic
renames) is named in a warning, moved aside to ``<name>.damaged`` for inspection, and
treated as missing, so the work that made it is done again and a folder never gets stuck.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DAMAGED", "read_json_or_set_aside", "read_npy_or_set_aside",
           "read_npz_or_set_aside", "set_aside", "warn"]

DAMAGED = ".damaged"

# What reading a damaged file raises: a cut JSON a JSONDecodeError (a ValueError), a cut
# .npy a ValueError or EOFError, a cut .npz (a zip) BadZipFile, OSError or KeyError.
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile,
                UnicodeDecodeError)


def warn(message: str) -> None:
    """A warning on standard error, one line."""
    print(f"uattr: warning: {message}", file=sys.stderr, flush=True)


def set_aside(path: Path, reason: str, log: Callable[[str], None] = warn) -> Path:
    """Move the damaged ``path`` to ``<path>.damaged`` (replacing an older one) and say so."""
    aside = path.with_name(path.name + DAMAGED)
    os.replace(path, aside)
    log(f"{path} is damaged ({reason}); moved to {aside.name}, and what it held is "
        "computed again")
    return aside


def _reason(error: BaseException) -> str:
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def read_json_or_set_aside(path: Path, log: Callable[[str], None] = warn) -> Any | None:
    """What the JSON file ``path`` holds; ``None`` when it does not exist or is damaged
    (then moved aside)."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except _READ_ERRORS as error:
        set_aside(path, _reason(error), log)
        return None


def read_npy_or_set_aside(path: Path, log: Callable[[str], None] = warn) -> np.ndarray | None:
    """The array of the ``.npy`` file ``path``; ``None`` when missing or damaged."""
    if not path.exists():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as error:
        set_aside(path, _reason(error), log)
        return None


def read_npz_or_set_aside(path: Path, keys: Iterable[str],
                          log: Callable[[str], None] = warn, *,
                          optional: Iterable[str] = ()) -> dict[str, np.ndarray] | None:
    """The arrays ``keys`` of the ``.npz`` file ``path``, and those of ``optional`` that it
    holds (each read in full, so that a cut member is found now, not later); ``None`` when
    missing, damaged or lacking a key of ``keys``."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in keys}
            arrays.update({key: stored[key] for key in optional if key in stored.files})
            return arrays
    except _READ_ERRORS as error:
        set_aside(path, _reason(error), log)
        return None
