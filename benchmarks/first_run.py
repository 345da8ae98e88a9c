"""How long a newcomer's first command takes: ``make run`` in a fresh clone of this
repository, timed end to end (the virtual environment created, every package installed
without pip's cache, then the main job on the shipped weights).

    .venv/bin/python benchmarks/first_run.py --results docs/results/first-run

The clone is of the committed ``HEAD``, in a temporary folder that is removed after.
Writes ``run-first-run.json`` into ``--out`` (and ``--results``): the seconds in all and
of the main job alone (its own run record's), the CPU and its threads, the commit, and
the weights the main job used with whether every one of them is a shipped file (then
``make run`` trained nothing). ``make run``'s output is kept beside it, as
``make-run.log``, in ``--out`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from uattr.experiments.attribute import cpu_model
from uattr.experiments.runs import RunFolder, write_atomic
from uattr.zoo.weights import shipped_digests

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/first-run", help="folder of the record")
    parser.add_argument("--results", help="also copy the record to this folder")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    out = RunFolder(args.out)
    with tempfile.TemporaryDirectory() as folder:
        clone = Path(folder) / "uattr"
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)],
                       check=True)
        # a newcomer's machine has no pip cache: every wheel is fetched
        env = {**os.environ, "PIP_NO_CACHE_DIR": "1"}
        env.pop("VIRTUAL_ENV", None)
        print(f"make run in a fresh clone of {commit[:12]} ...", flush=True)
        start = time.perf_counter()
        done = subprocess.run(["make", "run"], cwd=clone, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
        out.write_text("make-run.log", done.stdout)
        if done.returncode != 0:
            sys.exit(f"make run failed ({done.returncode}); its output is in "
                     f"{out.path / 'make-run.log'}")
        [record_path] = list((clone / "runs").glob("**/run.json"))
        record = json.loads(record_path.read_text())
    shipped = shipped_digests()
    weights = record.get("weights") or {}
    out.write_json("run-first-run.json", {
        "command": "make run", "commit": commit, "cpu": cpu_model(),
        "threads": torch.get_num_threads(), "pip cache": False,
        "seconds": seconds, "main job seconds": record["seconds"],
        "weights": weights,
        "every weight shipped": bool(weights) and all(shipped.get(name) == digest
                                                       for name, digest in weights.items())})
    print(json.dumps({"seconds": round(seconds, 1),
                      "main job seconds": round(record["seconds"], 1)}))
    if args.results:
        write_atomic(Path(args.results) / "run-first-run.json",
                     (out.path / "run-first-run.json").read_bytes())


if __name__ == "__main__":
    main()
