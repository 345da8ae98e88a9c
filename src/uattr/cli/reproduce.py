"""``uattr reproduce``: list, regenerate or check the committed tables."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..experiments.reproduce import TABLES, recompute_slice, stale_tables
from ..experiments.runs import markdown_table
from .arguments import add_parallel

__all__ = ["add_reproduce_parser", "add_spread_parser", "check_reproduce", "check_spread"]

RESULTS = "docs/results"


def add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce",
                       help="regenerate the committed tables from the shipped weights (each "
                            "resumes from its run folder), list them, or check them")
    p.add_argument("tables", nargs="*", metavar="TABLE",
                   help="folders of docs/results to regenerate or check (default: all of "
                        "--list)")
    p.add_argument("--list", action="store_true",
                   help="print every table, its commands, its expected time on 2 CPU "
                        "cores and whether its weights are the shipped ones")
    p.add_argument("--check", action="store_true",
                   help="recompute the stored slice of each table (a few images of every "
                        "row) and compare it with the committed values instead")
    p.add_argument("--results", default=RESULTS, metavar="DIR",
                   help=f"where the tables are committed (default {RESULTS})")
    add_parallel(p)
    p.set_defaults(func=cmd_reproduce)


def _chosen(args: argparse.Namespace):
    known = {table.folder: table for table in TABLES}
    unknown = [name for name in args.tables if name not in known]
    if unknown:
        raise ValueError(f"TABLE: unknown {unknown}; choose from {sorted(known)}")
    return [known[name] for name in args.tables] if args.tables else list(TABLES)


def _status(folder: str, stale: dict[str, str], results: Path) -> str:
    """``shipped`` when every run record of the folder names shipped weights, else which
    records do not."""
    if not (results / folder).is_dir():
        return "not made yet"
    mine = sorted(record.split("/", 1)[-1] for record in stale
                  if record.split("/")[0] == folder)
    return "shipped" if not mine else f"not yet on the shipped weights: {', '.join(mine)}"


def check_reproduce(args: argparse.Namespace) -> None:
    _chosen(args)
    if args.list and args.check:
        raise ValueError("--list and --check: give one of them")


def cmd_reproduce(args: argparse.Namespace) -> int:
    from . import main

    tables = _chosen(args)
    if args.list:
        stale = stale_tables(args.results) if Path(args.results).is_dir() else {}
        rows = [{"table": t.folder, "what": t.what, "commands": "; ".join(t.commands),
                 "minutes on 2 cores": f"{t.minutes:g}" + ("" if t.measured else " (estimate)"),
                 "weights": _status(t.folder, stale, Path(args.results))} for t in tables]
        print(markdown_table(rows))
        print(f"{sum(t.minutes for t in tables):.0f} minutes in all, one process on 2 CPU "
              "cores; each command resumes from its run folder (runs/reproduce/<table>)")
        return 0
    if args.check:
        failed = 0
        for table in tables:
            folder = Path(args.results) / table.folder
            for path in sorted(folder.glob("*_slice.npz")):
                stem = path.name.removesuffix("_slice.npz")
                skipped: list[str] = []
                wrong = recompute_slice(folder, stem, skipped=skipped)
                failed += len(wrong)
                print(f"{table.folder}/{stem}: {'ok' if not wrong else wrong}"
                      + (f" (rows with random draws, which need their whole first batch, "
                         f"left out: {skipped})" if skipped else ""))
        return 1 if failed else 0
    for table in tables:
        for command in table.commands:
            words = shlex.split(command.format(results=args.results))
            if words[0] != "uattr":
                print(f"\n== {table.folder}: run `{command}` from the repository's root "
                      "(a script of its own)")
                continue
            argv = words[1:]
            if argv[0] == "spread":
                argv += ["--out", str(Path(args.results) / table.folder)]
            elif argv[0] == "explain":
                argv += ["--out", str(Path(args.results) / table.folder), "--overwrite"]
            elif argv[0] == "attribute":
                argv += ["--out", str(Path(args.results) / table.folder)]
            else:
                argv += ["--out", f"runs/reproduce/{table.folder}",
                         "--results", str(Path(args.results) / table.folder)]
            if args.workers is not None and argv[0] == "bench":
                argv += ["--workers", str(args.workers)]
            if args.address is not None and argv[0] == "bench":
                argv += ["--address", args.address]
            print(f"\n== {table.folder}: uattr {shlex.join(argv)}", flush=True)
            status = main(argv)
            if status:
                return status
    return 0


def add_spread_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spread",
                       help="how a detection table moves across independently trained "
                            "ensembles: each row's mean, its standard error across "
                            "ensembles and across images, how often it is first")
    p.add_argument("folders", nargs="+", metavar="FOLDER",
                   help="two or more detection table folders of the same N, one per "
                        "ensemble (each with detection_per_image.json)")
    p.add_argument("--out", required=True, help="folder of the spread table")
    p.set_defaults(func=cmd_spread)


def check_spread(args: argparse.Namespace) -> None:
    if len(args.folders) < 2:
        raise ValueError(f"FOLDER: give at least two tables' folders, got {args.folders}")
    for folder in args.folders:
        if not (Path(folder) / "detection_per_image.json").is_file():
            raise ValueError(f"FOLDER: {folder} holds no detection_per_image.json (regenerate "
                             "its table with `uattr reproduce`)")


def cmd_spread(args: argparse.Namespace) -> int:
    from ..experiments.job import command_line
    from ..experiments.reproduce import table_weights
    from ..experiments.runs import RunFolder
    from ..experiments.spread import detection_spread, read_per_image

    rows = detection_spread([read_per_image(folder) for folder in args.folders])
    out = RunFolder(args.out)
    out.write_table("spread", rows)
    weights: dict[str, str] = {}
    for folder in args.folders:
        weights.update(table_weights(folder))
    out.write_json("run-spread.json", {"command": command_line(), "folders": args.folders,
                                       "weights": dict(sorted(weights.items()))})
    print(markdown_table([{k: v for k, v in row.items() if k != "n"} for row in rows]))
    print(f"written to {out.path}")
    return 0
