"""``uattr tabular``: which features make a model unsure about rows of a CSV file, and
``uattr tabular-bench``: the tabular benchmark with known causes.

    uattr tabular --csv data.csv --target label --forest --rows 0 5 12
    uattr tabular --csv data.csv --target label --model forest.joblib --uncertainty epistemic
    uattr tabular-bench --n 500 --results docs/results/tabular-synthetic-n500-seed0

Everything is checked and computed before the output folder is written, so a bad input
(an unknown column, a text column, a model without ``predict_proba``, NaN rows) stops the
command with a clear error and leaves nothing half-done.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..experiments.job import command_line
from ..experiments.runs import RunFolder, markdown_table
from ..tabular import attribute_rows, row_uncertainty
from ..tabular.figures import attribution_summary, benchmark_figure, deletion_figure
from .arguments import positive_int
from .preflight import check_output_folder

__all__ = ["add_tabular_parsers", "check_tabular", "cmd_tabular", "cmd_tabular_bench"]

#: a target with at most this many distinct integer or text values is a class label
MAX_CLASSES = 20


def add_tabular_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tabular", help="which features make a model unsure about rows of a "
                                       "CSV file (scikit-learn ensembles or any joblib model)")
    p.add_argument("--csv", required=True, help="the data: one row per example, a header")
    p.add_argument("--target", required=True, help="the column the model predicts (left out "
                                                   "of the features)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="a fitted scikit-learn ensemble (forest, bagging) or a "
                                       "list of fitted models, saved with joblib.dump")
    model.add_argument("--forest", action="store_true",
                       help="fit a random forest (200 trees) on the CSV's rows and explain it")
    p.add_argument("--uncertainty", choices=("total", "aleatoric", "epistemic"), default=None,
                   help="which uncertainty (default total; epistemic for regressors whose "
                        "members predict no variance)")
    p.add_argument("--method", choices=("shapley", "occlusion"), default="shapley",
                   help="Shapley values of U against background rows (default; exact up to "
                        "12 features) or occlusion, one feature at a time")
    p.add_argument("--rows", type=int, nargs="+", default=None,
                   help="the rows to explain (0-based, after the header; default: the "
                        "--most-uncertain rows)")
    p.add_argument("--most-uncertain", type=positive_int, default=10,
                   help="without --rows, explain the K rows the model is most unsure about "
                        "(default 10)")
    p.add_argument("--background", type=positive_int, default=50,
                   help="rows drawn from the CSV that stand in for an absent feature "
                        "(default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the forest and the draws")
    p.add_argument("--out", default=None, help="output folder (default runs/tabular-<csv>)")
    p.set_defaults(func=cmd_tabular)

    p = sub.add_parser("tabular-bench", help="the tabular benchmark: synthetic sets whose "
                                             "uncertainty has a known cause")
    p.add_argument("--n", type=positive_int, default=500, help="test rows per set (default "
                                                               "500)")
    p.add_argument("--background", type=positive_int, default=32,
                   help="background rows (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ship", action="store_true",
                   help="store newly trained MLP ensembles as weights uattr ships")
    p.add_argument("--out", default=None,
                   help="run folder (default runs/tabular-synthetic-n<N>-seed<seed>)")
    p.add_argument("--results", default=None,
                   help="also copy the tables, figure and record to this folder")
    p.set_defaults(func=cmd_tabular_bench)


def check_tabular(args: argparse.Namespace) -> None:
    """What argparse cannot check, before anything is read or fitted."""
    for flag in ("out", "results"):
        if getattr(args, flag, None) is not None:
            check_output_folder(getattr(args, flag), f"--{flag}")
    if args.command == "tabular":
        if not Path(args.csv).is_file():
            raise ValueError(f"--csv {args.csv}: no such file")
        if args.model is not None and not Path(args.model).is_file():
            raise ValueError(f"--model {args.model}: no such file")


# ------------------------------------------------------------------ uattr tabular
def _read(args: argparse.Namespace):
    """``(features DataFrame, target Series)``, checked."""
    import pandas as pd

    try:
        table = pd.read_csv(args.csv)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"--csv {args.csv}: not a readable CSV file ({error})") from None
    if args.target not in table.columns:
        raise ValueError(f"--target {args.target!r} is not a column of {args.csv}; its "
                         f"columns are {list(table.columns)}")
    features = table.drop(columns=[args.target])
    text = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if text:
        raise ValueError(f"--csv: the feature columns {text} are not numeric; encode them "
                         "first (one-hot or ordinal) or drop them")
    if features.shape[1] == 0:
        raise ValueError(f"--csv {args.csv}: no feature column besides --target")
    missing = features.index[features.isna().any(axis=1)].tolist()
    if missing:
        raise ValueError(f"--csv: rows {missing[:10]} have missing feature values; impute "
                         "or drop them first")
    return features, table[args.target]


def _is_label(target) -> bool:
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        return True
    values = target.dropna().to_numpy()
    return bool(np.all(values == np.round(values)) and len(np.unique(values)) <= MAX_CLASSES)


def _model(args: argparse.Namespace, features, target) -> object:
    if args.forest:
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        if target.isna().any():
            raise ValueError("--target: the --forest fit needs a target on every row; rows "
                             f"{target.index[target.isna()].tolist()[:10]} have none")
        forest = (RandomForestClassifier if _is_label(target) else RandomForestRegressor)(
            200, min_samples_leaf=5, random_state=args.seed)
        return forest.fit(features.to_numpy(), target.to_numpy())
    import joblib

    try:
        model = joblib.load(args.model)
    except Exception as error:  # joblib raises whatever unpickling raised
        raise ValueError(f"--model {args.model}: not a model saved with joblib.dump "
                         f"({type(error).__name__}: {error})") from None
    first = model[0] if isinstance(model, (list, tuple)) and model else model
    names = getattr(first, "feature_names_in_", None)
    if names is not None and list(names) != list(features.columns):
        raise ValueError(f"--model was fitted on the features {list(names)}, but the CSV "
                         f"without --target has {list(features.columns)}")
    from sklearn.base import is_classifier

    if is_classifier(first) and not hasattr(first, "predict_proba"):
        raise ValueError(f"--model: the {type(first).__name__} has no predict_proba; "
                         "uncertainty attribution of a classifier needs class probabilities")
    return model


def cmd_tabular(args: argparse.Namespace) -> int:
    features, target = _read(args)
    model = _model(args, features, target)
    kinds = ("total", "epistemic") if args.uncertainty is None else (args.uncertainty,)
    for kind in kinds:  # total, or epistemic where the members give no variance
        try:
            u = row_uncertainty(model, kind)
            break
        except ValueError as error:
            if args.uncertainty is not None or "only the epistemic" not in str(error):
                raise ValueError(f"--model: {error}") from None
    if u.n_features != features.shape[1]:
        raise ValueError(f"--model takes {u.n_features} features, the CSV without --target "
                         f"has {features.shape[1]}")
    x = torch.tensor(features.to_numpy(dtype=np.float64))
    everyone = u(x)  # [N]
    if args.rows is not None:
        bad = [r for r in args.rows if not 0 <= r < len(x)]
        if bad:
            raise ValueError(f"--rows must lie in [0, {len(x) - 1}], got {bad}")
        rows = list(args.rows)
    else:
        rows = everyone.argsort(descending=True)[: args.most_uncertain].tolist()
    rng = np.random.default_rng(args.seed)
    background = x[rng.choice(len(x), min(args.background, len(x)), replace=False)]
    phi = attribute_rows(u, x[rows], args.method, background=background,
                         **({"progress": True, "seed": args.seed}
                            if args.method == "shapley" else {"progress": True}))
    base = float(u(background).mean())
    names = [str(c) for c in features.columns]
    table = [{"row": r, "U": float(everyone[r]), **dict(zip(names, map(float, p),
                                                             strict=True))}
             for r, p in zip(rows, phi, strict=True)]
    out = RunFolder(args.out or f"runs/tabular-{Path(args.csv).stem}")
    out.write_table("attributions", table)
    out.save_figure("summary.png", attribution_summary(phi.numpy(), names, rows, base,
                                                       everyone[rows].numpy(), u.kind))
    out.write_json("run-tabular.json", {
        "command": command_line(), "csv": str(args.csv), "target": args.target,
        "model": type(model).__name__, "uncertainty": u.kind, "method": args.method,
        "background": len(background), "base (E[U] over the background)": base,
        "rows": rows, "seed": args.seed})
    print(f"{u.kind} uncertainty of {type(model).__name__}; {args.method} against "
          f"{len(background)} background rows (their mean U {base:.4f})")
    top = [{"row": r, "U": float(everyone[r]),
            "first feature": names[int(p.argmax())], "its attribution": float(p.max())}
           for r, p in zip(rows, phi, strict=True)]
    print(markdown_table(top))
    print(f"wrote {out.path}/attributions.csv, .json and summary.png")
    return 0


# ------------------------------------------------------------------ uattr tabular-bench
def cmd_tabular_bench(args: argparse.Namespace) -> int:
    from ..tabular.benchmark import REAL_TABLE, TABLE, run_benchmark, run_real

    out = RunFolder(args.out or f"runs/tabular-synthetic-n{args.n}-seed{args.seed}")
    rows, hashes = run_benchmark(out, n=args.n, background=args.background, seed=args.seed,
                                 ship=args.ship)
    out.write_table(TABLE, rows)
    out.save_figure(f"{TABLE}.png", benchmark_figure(rows))
    real, curves = run_real(out, background=args.background, seed=args.seed)
    out.write_table(REAL_TABLE, real)
    out.save_figure(f"{REAL_TABLE}.png", deletion_figure(curves))
    out.write_json("run-tabular-bench.json", {
        "command": command_line(), "n": args.n, "background": args.background,
        "seed": args.seed, "weights": hashes,
        "trained in the run": "the random forests and boosted trees (scikit-learn, float64, "
                              "seeded: the same trees on any machine)",
        "data": "synthetic sets drawn from the seed (uattr.tabular.synthetic); breast "
                "cancer, wine and diabetes as bundled with scikit-learn, split 70/30"})
    print(markdown_table([{k: v for k, v in row.items() if k != "n"} for row in rows]))
    print(markdown_table(real))
    if args.results:
        out.publish(args.results)
        print(f"copied the table, figure and record to {args.results}")
    return 0
