"""What a command checks before it loads a model or touches a data set: output folders,
Ray addresses, options that do not apply, optional packages, and the settings a folder
was made with. Every refusal is a ``ValueError`` whose one line names the argument and
what was expected; :func:`uattr.cli.main` prints it and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from ..experiments.runs import write_atomic
from ..experiments.settings import Settings

__all__ = ["RECORD", "CommandLineParser", "check_applicable", "check_folder_settings",
           "check_output_folder", "check_package", "check_ray", "one_line",
           "write_folder_settings"]

DEFAULT = Settings()
RECORD = "settings.json"  # what a folder of explain, attribute, run or bench was made with
_FLAGS = {"kind": "posterior"}  # arguments whose flag is not their name
RAY_TIMEOUT_S = 0.5  # a Ray head answers a TCP connection within milliseconds
# where `ray start --head` writes the address that `ray.init("auto")` reads
RAY_CURRENT_CLUSTER = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"


class CommandLineParser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse prints the whole usage first, which buries
    the line that says what is wrong)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line(error: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


# ------------------------------------------------------------------ output folders
def check_output_folder(path: str | os.PathLike, flag: str) -> None:
    """``path`` is a folder, or can be made: not a file, and its nearest existing parent
    takes a new file (tried with a temporary file that is gone at once, so nothing is left
    behind, also where permissions alone would not tell, as on a read-only mount)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag} {path} is a file; expected a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is a file, so no folder can be made "
                         "under it")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ValueError(f"{flag} {path}: cannot write in {existing} "
                         f"({error.strerror or error})") from None


#: options added after folders were first recorded, with their defaults: at its default such
#: an option is left out of the record, so that a folder recorded before it still resumes
ADDED_LATER = {"max_steps": Settings().method.max_steps, "stop": Settings().method.stop,
               "init": Settings().method.init}


def folder_settings(args: argparse.Namespace, left_out: Iterable[str]) -> dict:
    """The arguments that decide what a folder holds: every one but ``left_out`` (and an
    option of :data:`ADDED_LATER` at its default)."""
    skip = {"func", "_parser", *left_out}
    skip |= {k for k, default in ADDED_LATER.items() if getattr(args, k, None) == default}
    return {"command": args.command,
            **({"benchmark": args.benchmark} if getattr(args, "benchmark", None) else {}),
            **{k: v for k, v in sorted(vars(args).items())
               if k not in skip and k not in ("command", "benchmark")}}


def check_folder_settings(folder: str | os.PathLike, wanted: dict, flag: str, *,
                          keys: Iterable[str] | None = None, remedy: str) -> None:
    """Refuse ``folder`` when its :data:`RECORD` says it was made with other settings
    (only ``keys`` compared, when given); ``remedy`` says what to do instead. A damaged
    record is moved aside, as every damaged result file is."""
    from ..experiments.healing import read_json_or_set_aside

    stored = read_json_or_set_aside(Path(folder) / RECORD)
    if not isinstance(stored, dict):
        return
    compared = list(keys) if keys is not None else sorted(set(stored) | set(wanted))
    plain = json.loads(json.dumps(wanted, default=str))  # as it reads back from disk
    changed = [k for k in compared if stored.get(k) != plain.get(k)]
    if changed:
        shown = ", ".join(f"--{_FLAGS.get(k, k).replace('_', '-')} {stored.get(k)!r} there, "
                          f"{plain.get(k)!r} now" for k in changed[:3])
        raise ValueError(f"{flag} {folder} holds results of other settings ({shown}); "
                         f"{remedy}")


def write_folder_settings(folder: str | os.PathLike, wanted: dict) -> None:
    """Record in ``folder`` the settings it is made with (atomically)."""
    write_atomic(Path(folder) / RECORD,
                 (json.dumps(wanted, indent=2, default=str) + "\n").encode())


# ------------------------------------------------------------------ Ray
def check_ray(workers: int | None, address: str | None) -> None:
    """``--workers`` (a local Ray) or ``--address`` (a running cluster), not both; Ray
    installed; and a cluster answering at the address within :data:`RAY_TIMEOUT_S`."""
    if workers is not None and address is not None:
        raise ValueError(f"--workers {workers} starts a Ray of its own and --address "
                         f"{address} joins a running one: give one of them")
    if workers is None and address is None:
        return
    check_package("ray", "--workers" if address is None else "--address", "uattr[ray]")
    if address is None:
        return
    where = address
    if address == "auto":
        where = os.environ.get("RAY_ADDRESS") or _current_cluster()
        if not where or where == "auto":
            raise ValueError("--address auto: no Ray cluster runs on this machine (start one "
                             "with `ray start --head`, or give HOST:PORT)")
    host, port = _host_port(where.removeprefix("ray://"), address)
    try:
        with socket.create_connection((host, port), timeout=RAY_TIMEOUT_S):
            pass
    except OSError:
        raise ValueError(f"--address {address}: no Ray cluster answers at {host}:{port} "
                         f"within {RAY_TIMEOUT_S:g} s (is `ray start --head` running "
                         "there?)") from None


def _current_cluster() -> str | None:
    try:
        return RAY_CURRENT_CLUSTER.read_text().strip() or None
    except OSError:
        return None


def _host_port(text: str, given: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--address must be auto or HOST:PORT (a port in 1-65535), got "
                         f"{given!r}")
    return host.strip("[]"), int(port)


# ------------------------------------------------------------------ packages
def check_package(module: str, flag: str, extra: str) -> None:
    """``module`` can be imported (found without importing it: that is for the work)."""
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"{flag} needs the package {module!r}, which is not installed: "
                         f"pip install '{extra}'")


# ------------------------------------------------------------------ options
def _given(args: argparse.Namespace, names: Iterable[str]) -> list[str]:
    """The options among ``names`` whose value is not the default (so: given)."""
    posterior = DEFAULT.posterior
    defaults = {"kind": posterior.kind, "members": posterior.members,
                "arch": posterior.arch, "epochs": posterior.epochs,
                "samples": posterior.samples, "dropconnect_p": posterior.dropconnect_p,
                "posterior_train": None, "output": posterior.output, "num_samples": None,
                "retrain": False, "out": None, "model": [],
                "trust_output": False, "ensemble_index": posterior.ensemble_index,
                "ship": None}
    flags = {"kind": "--posterior"}
    return [flags.get(name, f"--{name.replace('_', '-')}") for name in names
            if hasattr(args, name) and getattr(args, name) != defaults[name]]


def check_applicable(args: argparse.Namespace) -> None:
    """Refuse options that the chosen command and posterior would ignore."""
    command = args.command
    if not hasattr(args, "kind"):
        return
    model = bool(getattr(args, "model", None))
    if not model:
        _refuse(_given(args, ["output", "num_samples", "trust_output"]),
                "for --model (your own posterior) only")
    compares_posteriors = command == "run" or getattr(args, "benchmark", None) in (
        "explanation-uncertainty", "mitigation")
    if command == "train" and getattr(args, "detector", None) and not getattr(args, "vae", False):
        _refuse(_given(args, ["kind", "members", "arch", "epochs", "samples",
                              "dropconnect_p", "posterior_train", "ensemble_index"]),
                "not for --detector: a detector's settings are fixed "
                "(uattr.experiments.benchmarks.segmenters.DETECTORS)")
        return
    if command == "train" and getattr(args, "vae", False):
        _refuse(_given(args, ["kind", "members", "arch", "epochs", "samples",
                              "dropconnect_p", "posterior_train", "ensemble_index"]),
                "not for --vae: the VAE's settings are fixed (uattr.zoo.vae.VAEConfig)")
        return
    if command == "train" and getattr(args, "out", None) is not None:
        raise ValueError("--out is the folder of --vae's figure; uattr train without --vae "
                         "writes the model to the cache (--cache-dir)")
    if compares_posteriors:
        return  # they train every kind, each with its own options
    if model:
        _refuse(_given(args, ["kind", "members", "arch", "epochs", "samples",
                              "dropconnect_p", "posterior_train", "ensemble_index",
                              "ship"]),
                "not with --model: they train uattr's own posteriors, and yours is "
                "trained already")
    elif args.kind == "ensemble":
        _refuse(_given(args, ["samples", "dropconnect_p", "posterior_train"]),
                "for single-network posteriors only (--posterior mc-dropout, dropconnect or "
                "flipout), not the ensemble")
    else:
        _refuse(_given(args, ["members", "arch", "ensemble_index"]),
                f"for the ensemble only, not --posterior {args.kind}")
        if args.kind != "dropconnect":
            _refuse(_given(args, ["dropconnect_p"]),
                    f"for --posterior dropconnect only, not {args.kind}")


def _refuse(flags: list[str], why: str) -> None:
    if flags:
        raise ValueError(f"{', '.join(flags)}: {why}")


def interrupted() -> int:
    """What Ctrl-C prints: one line, and the shell's status for SIGINT (128 + 2)."""
    print("uattr: interrupted; finished work is kept: rerun the same command to resume",
          file=sys.stderr)
    return 130
