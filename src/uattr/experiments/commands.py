"""What a benchmark brings to ``uattr bench NAME``: its help, its own options, the rows its
``--methods`` chooses from, the checks its arguments need and how it runs. Each benchmark
module declares its :class:`BenchCommand`; the command line builds its parsers from them
(``uattr.cli``), so that a benchmark's options live beside the benchmark.

The argparse types below check a value while the arguments are parsed, so that a bad
value stops the command before any data is loaded or any model trained, with a message
that names the argument.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .job import Job, Section

__all__ = ["BenchCommand", "Option", "chosen_methods", "float_in", "int_at_least",
           "non_negative_int", "positive_int"]


def int_at_least(low: int, wanted: str) -> Callable[[str], int]:
    """An argparse type: an int >= ``low``; ``wanted`` says so in the error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value
    return parse


positive_int = int_at_least(1, "a positive integer")
non_negative_int = int_at_least(0, "an integer >= 0")


def float_in(low: float, high: float = math.inf, *, low_open: bool = False,
             high_open: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite float in the interval from ``low`` to ``high``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (math.isfinite(value) and above and below):
            interval = (f"{'(' if low_open else '['}{low:g}, "
                        f"{high:g}{')' if high_open else ']'}")
            raise argparse.ArgumentTypeError(f"must lie in {interval}, got {text!r}")
        return value

    return parse


@dataclass(frozen=True)
class Option:
    """One command-line option: ``parser.add_argument(*flags, **settings)``."""

    flags: tuple[str, ...]
    settings: dict[str, Any]

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*self.flags, **self.settings)


def option(*flags: str, **settings: Any) -> Option:
    """An :class:`Option`, written as the ``add_argument`` call it stands for."""
    return Option(flags, settings)


@dataclass(frozen=True)
class BenchCommand:
    """``uattr bench NAME``.

    ``run(job, args)`` runs the benchmark into the job's folder and returns its section of
    the report; ``options`` are its own (beside the options every benchmark has);
    ``methods(args)``: the rows ``--methods`` chooses from (``None``: no ``--methods``);
    ``on_ray``: its work is cells of methods × images, which ``--workers`` / ``--address``
    run on Ray; ``defaults``: its defaults of common options (``{"n": 6}``); ``n_counts``:
    what ``--n`` counts, the images of ``--split`` (checked against its size) or
    something the ``check`` checks; ``check(args)``: what argparse alone cannot check;
    ``report(args)``: the name of its report and run record (``report-<name>.md``,
    ``run-<name>.json``) where its options make another table in the same folder
    (default: its own name)."""

    name: str
    help: str
    run: Callable[[Job, argparse.Namespace], Section]
    options: tuple[Option, ...] = ()
    methods: Callable[[argparse.Namespace], Sequence[str]] | None = None
    on_ray: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    n_counts_split_images: bool = True
    check: Callable[[argparse.Namespace], None] | None = None
    report: Callable[[argparse.Namespace], str] | None = None


def chosen_methods(args: argparse.Namespace) -> list[str] | None:
    """``--methods``: ``None`` for all of them."""
    return None if args.methods == ["all"] else args.methods
