"""The weights that ship with uattr: every network a committed table was computed with.

Training is not bit-reproducible across CPUs (the same seed gives other weights on another
machine), so a table can only be regenerated from the weights it was computed with. They
are stored under ``uattr/weights/<name>/`` as state dicts (``torch.load(...,
weights_only=True)`` reads them; most in float16, and every table that uses them was
computed from the stored, rounded values), with ``manifest.json`` beside them:

.. code-block:: json

    {"<name>": {"kind": "ensemble", "spec": {...}, "dtype": "float16",
                "files": {"member0.pt": "<SHA-256>", ...},
                "command": "uattr train ... --ship", "scores": {...}}}

``<name>`` is the name of the model's cache entry (``mnist-ensemble-<hash of its
settings>``), so a loader that finds its name here loads the shipped weights instead of
training, and trains only when the user's settings differ or when asked (``--retrain``).
Every run records the SHA-256 of the weights it used (:func:`file_hashes`), and a test
fails when a committed table names weights that are not shipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from functools import cache
from io import BytesIO
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["MANIFEST", "SHIPPED", "file_hashes", "load_shipped", "manifest", "sha256",
           "ship", "shipped_digests", "shipped_entry"]

SHIPPED = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = SHIPPED / "manifest.json"
DTYPES = {"float16": torch.float16, "float32": torch.float32}


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@cache
def _read_manifest(path: Path, mtime: float) -> dict:
    return json.loads(path.read_text())


def manifest() -> dict:
    """Every shipped model by name (empty when none ships)."""
    if not MANIFEST.exists():
        return {}
    return _read_manifest(MANIFEST, MANIFEST.stat().st_mtime)


def shipped_digests() -> dict[str, str]:
    """Every shipped file as a run record names it, ``name/file``: its SHA-256."""
    return {f"{name}/{file}": digest for name, entry in manifest().items()
            for file, digest in entry["files"].items()}


def shipped_entry(name: str) -> dict | None:
    """The manifest's entry of ``name``, or ``None`` when uattr ships no such model."""
    return manifest().get(name)


def load_shipped(name: str, file: str) -> dict[str, Tensor] | None:
    """The state dict of ``name``'s ``file`` as float32, or ``None`` when it is not shipped.

    The file's SHA-256 must be the manifest's: a shipped file that differs (edited, cut
    short) is an error, not a reason to train silently."""
    entry = shipped_entry(name)
    if entry is None or file not in entry["files"]:
        return None
    path = SHIPPED / name / file
    if not path.is_file():
        raise ValueError(f"shipped weights {path} are missing; reinstall uattr, or pass "
                         "--retrain to train them on this machine")
    if sha256(path) != entry["files"][file]:
        raise ValueError(f"shipped weights {path} do not match their SHA-256 in "
                         f"{MANIFEST}; reinstall uattr, or pass --retrain to train them "
                         "on this machine")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def is_shipped(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of the shipped files."""
    return Path(path).resolve().is_relative_to(SHIPPED)


def file_hashes(name: str, files: Mapping[str, str | os.PathLike]) -> dict[str, str]:
    """``{"<name>/<file>": SHA-256}`` of the files a model was loaded from (shipped or
    cached): what a run records of the weights it used."""
    return {f"{name}/{file}": sha256(path) for file, path in files.items()}


def ship(name: str, kind: str, spec: dict, states: Mapping[str, Mapping[str, Tensor]], *,
         dtype: str = "float16", command: str,
         scores: Callable[[], dict] | None = None) -> dict:
    """Store ``states`` (``{file: state dict}``) as the shipped weights of ``name``, their
    floating-point tensors in ``dtype``, and record them in the manifest with their
    SHA-256, the ``command`` that trained them and, computed from the stored (rounded)
    weights once they are in place, ``scores()``. Returns the manifest entry."""
    from ..experiments.runs import write_atomic

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    folder = SHIPPED / name
    files = {}
    for file, state in states.items():
        rounded = {k: v.detach().to(DTYPES[dtype]) if v.is_floating_point() else v
                   for k, v in state.items()}
        buffer = BytesIO()
        torch.save(rounded, buffer)
        write_atomic(folder / file, buffer.getvalue())
        files[file] = sha256(folder / file)
    entries = dict(manifest())
    entries[name] = {"kind": kind, "spec": spec, "dtype": dtype, "files": files,
                     "command": command}

    def write() -> None:
        write_atomic(MANIFEST, (json.dumps(entries, indent=2, sort_keys=True) + "\n").encode())

    write()
    if scores is not None:  # computed by loading what was just written, so written first
        entries[name]["scores"] = scores()
        write()
    return entries[name]
