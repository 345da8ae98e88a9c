"""The tabular benchmark: does a method find the feature that causes the uncertainty?

On each synthetic set (:mod:`uattr.tabular.synthetic`) and each model
(:mod:`uattr.tabular.models`), every method that applies explains the set's uncertainty
(aleatoric or epistemic) of its ``n`` test rows with ``background`` training rows. Scores
per row, from the rank ``r`` (1 = first) of the planted cause among the ``F`` features:

    top-1        1[r = 1]                         (chance: 1/F)
    rank score   (F − r) / (F − 1)                (chance: 1/2; 1 = first, 0 = last)

with their means and standard errors over the rows. Beside them, the model's mean
uncertainty on the test rows and on as many training rows: where the two are close, the
model is not unsure about the test rows, and no method has a cause to find.

Each cell (set × model × method) is stored in the run folder's ``cells/`` when it is done,
so a stopped run resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from tqdm.auto import tqdm

from ..experiments.runs import RunFolder
from ..experiments.spread import paired_differences
from .methods import LRP_GAMMA, attribute_rows
from .models import MODELS, boosted_bootstrap, mlp_ensemble, random_forest, row_vae
from .posteriors import RowUncertainty, row_uncertainty
from .synthetic import FEATURES, SETS, SyntheticSet, make_set

__all__ = ["CLUE_TABLE", "REAL", "REAL_TABLE", "TABLE", "cause_ranks", "choose_clue_lambda",
           "paired_by_group", "real_set", "run_benchmark", "run_real", "scores"]

TABLE = "tabular_synthetic"
#: the methods each model admits: trees are not differentiable
TREE_METHODS = ("shapley", "occlusion")
NETWORK_METHODS = ("shapley", "occlusion", "optimization", "covgi", "covlrp", "clue")
#: CLUE's λ_x, chosen on validation draws of the sets (seed + 1) by the mean rank score
CLUE_LAMBDAS = (0.1, 1.0, 10.0)
CLUE_TABLE = "tabular_clue_validation"


def cause_ranks(phi: np.ndarray, causes: np.ndarray) -> np.ndarray:
    """``[n]``: the rank (1 = first) of each row's cause among its attributions
    ``phi [n, F]``, counting ties against the cause (a flat map finds nothing)."""
    own = phi[np.arange(len(phi)), causes][:, None]
    return 1 + (phi > own).sum(1) + ((phi == own).sum(1) - 1)  # - 1: the cause itself


def scores(ranks: np.ndarray, features: int) -> dict[str, float]:
    """Top-1 rate and rank score (module docstring), each with its standard error."""
    top1 = (ranks == 1).astype(float)
    rank_score = (features - ranks) / (features - 1)
    n = len(ranks)
    return {"top-1": float(top1.mean()), "top-1 s.e.": float(top1.std(ddof=1) / n**0.5),
            "rank score": float(rank_score.mean()),
            "rank score s.e.": float(rank_score.std(ddof=1) / n**0.5)}


def _models(data: SyntheticSet, seed: int, ship: bool
            ) -> dict[str, tuple[Callable[[], object], str | None]]:
    return {"random forest": (lambda: random_forest(data, seed), None),
            "boosted trees ×10": (lambda: boosted_bootstrap(data, seed), None),
            "MLP ensemble ×5": (lambda: mlp_ensemble(data, seed, ship=ship), "logits")}


def run_benchmark(out: RunFolder, *, n: int = 500, background: int = 32, seed: int = 0,
                  ship: bool = False, progress: bool = True) -> tuple[list[dict], dict]:
    """Every cell of the benchmark into ``out`` (resuming finished ones); returns the rows
    of the table and the hashes of the shipped weights the MLPs were loaded from."""
    rows, hashes, per_row = [], {}, {}
    lam_x, validation = choose_clue_lambda(seed, background, progress)
    out.write_table(CLUE_TABLE, validation)
    cells = [(s, m) for s in SETS for m in MODELS]
    for set_name, model_name in tqdm(cells, desc="tabular benchmark", disable=not progress):
        data = make_set(set_name, n_test=n, seed=seed)
        rng = np.random.default_rng([seed, 2])
        reference = data.x_train[rng.choice(len(data.x_train), background, replace=False)]
        make, output = _models(data, seed, ship)[model_name]
        model = make()
        if isinstance(model, tuple):  # the MLPs and their shipped weights' hashes
            model, named = model
            hashes.update(named)
        u = row_uncertainty(model, data.kind, output=output)
        methods = NETWORK_METHODS if u.differentiable else TREE_METHODS
        clue = {}
        if u.differentiable:  # CLUE searches the set's VAE (shipped like the MLPs)
            vae, named = row_vae(data, seed, ship=ship)
            hashes.update(named)
            clue = {"vae": vae, "lam_x": lam_x}
        with torch.no_grad():
            test_u = float(u(torch.tensor(data.x_test)).mean())
            train_u = float(u(torch.tensor(data.x_train[:n])).mean())
        for method in methods:
            phi, seconds = _cell(out, u, data, reference, model_name, method, seed, n,
                                 clue if method == "clue" else {})
            ranks = cause_ranks(phi, data.causes)
            per_row[f"{set_name} | {model_name} | {method}"] = ranks.tolist()
            rows.append({"set": set_name, "uncertainty": data.kind, "model": model_name,
                         "method": method, **scores(ranks, phi.shape[1]),
                         "U test": test_u, "U train": train_u,
                         "s/row": seconds / len(phi), "n": len(phi)})
    out.write_json(f"{TABLE}_per_row.json", per_row)
    out.write_table(f"{TABLE}_paired", paired_by_group(
        {k: (FEATURES - np.asarray(v)) / (FEATURES - 1) for k, v in per_row.items()},
        "rank score"))
    return rows, hashes


def paired_by_group(per_row: dict[str, np.ndarray], score: str) -> list[dict]:
    """:func:`uattr.experiments.spread.paired_differences` of the methods on the same rows
    (keys ``"<group> | <method>"``), group by group (a set and a model, or a data set),
    each pair tagged with its ``rows`` group."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, values in per_row.items():
        group, method = key.rsplit(" | ", 1)
        groups.setdefault(group, {})[method] = np.asarray(values, dtype=np.float64)
    return [{"rows": group, **pair} for group, methods in groups.items()
            for pair in paired_differences(methods, score)]


def _cell(out: RunFolder, u: RowUncertainty, data: SyntheticSet, reference: np.ndarray,
          model_name: str, method: str, seed: int, n: int,
          options: dict) -> tuple[np.ndarray, float]:
    """``(phi [n, F], seconds)`` of one cell, from the run folder when it is there
    (``options``: the method's, keyed by all but the VAE, which the set names)."""
    name = f"{TABLE}-{data.name}-{model_name}-{method}".replace(" ", "_").replace("×", "x")
    config = {"set": data.name, "model": model_name, "method": method, "seed": seed, "n": n,
              "background": len(reference),
              **{k: v for k, v in options.items() if k != "vae"}}
    if method == "covlrp":  # a cell of the ε-rule (before LRP-γ) is not this one
        config["lrp gamma"] = LRP_GAMMA
    return _cached(out, name, config, partial(_attribute, u, data.x_test, method, reference,
                                              seed, options))


def _attribute(u: RowUncertainty, x: np.ndarray, method: str, reference: np.ndarray,
               seed: int, options: dict | None = None) -> np.ndarray:
    options = {**({"seed": seed} if method in ("optimization", "shapley") else {}),
               **(options or {})}
    if method == "shapley" and x.shape[1] > 12:
        options["n_permutations"] = REAL_PERMUTATIONS
    needs_background = method not in ("covgi", "covlrp")
    return attribute_rows(u, x, method, background=reference if needs_background else None,
                          **options).numpy()


def choose_clue_lambda(seed: int, background: int, progress: bool = False
                       ) -> tuple[float, list[dict]]:
    """CLUE's ``λ_x`` among :data:`CLUE_LAMBDAS`, by the mean rank score of the cause over
    the three sets drawn from ``seed + 1`` (100 test rows each; their MLPs and VAEs trained
    here, never the test draws'); returns it and the validation table."""
    rows, mean = [], dict.fromkeys(CLUE_LAMBDAS, 0.0)
    for name in tqdm(SETS, desc="CLUE's λ_x on validation draws", disable=not progress):
        data = make_set(name, n_test=100, seed=seed + 1)
        networks, _ = mlp_ensemble(data, seed + 1)
        vae, _ = row_vae(data, seed + 1)
        u = row_uncertainty(networks, data.kind, output="logits")
        rng = np.random.default_rng([seed + 1, 2])
        reference = data.x_train[rng.choice(len(data.x_train), background, replace=False)]
        for lam_x in CLUE_LAMBDAS:
            phi = attribute_rows(u, data.x_test, "clue", background=reference, vae=vae,
                                 lam_x=lam_x).numpy()
            result = scores(cause_ranks(phi, data.causes), phi.shape[1])
            mean[lam_x] += result["rank score"] / len(SETS)
            rows.append({"set": name, "λ_x": lam_x, **result})
    chosen = max(CLUE_LAMBDAS, key=mean.__getitem__)
    rows += [{"set": "mean of the three", "λ_x": lam_x, "rank score": value,
              "chosen": lam_x == chosen} for lam_x, value in mean.items()]
    return chosen, rows


def _cached(out: RunFolder, name: str, config: dict, compute: Callable[[], np.ndarray]
            ) -> tuple[np.ndarray, float]:
    """A cell's array and the seconds it took: stored in ``out`` once computed."""
    stored = out.load_cell(name, config)
    if stored is not None:
        return stored[1], stored[0]["seconds"]
    start = time.perf_counter()
    array = compute()
    seconds = time.perf_counter() - start
    out.save_cell(name, config, {"seconds": seconds}, array)
    return array, seconds


# ------------------------------------------------------------------ real data sets
REAL_TABLE = "tabular_real"
REAL = ("breast cancer", "wine", "diabetes")
#: permutations per row where a data set has more than 12 features (exact below)
REAL_PERMUTATIONS = 32


def real_set(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str],
                                                 bool]:
    """``(x_train, y_train, x_test, feature names, is a classification)`` of one of the
    data sets bundled with scikit-learn (no download), split 70/30 (seeded)."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    loaders = {"breast cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
               "diabetes": datasets.load_diabetes}
    if name not in loaders:
        raise ValueError(f"name must be one of {REAL}, got {name!r}")
    bunch = loaders[name]()
    classification = name != "diabetes"
    x_train, x_test, y_train, _ = train_test_split(
        bunch.data, bunch.target, test_size=0.3, random_state=seed,
        stratify=bunch.target if classification else None)
    return x_train, y_train, x_test, list(bunch.feature_names), classification


def run_real(out: RunFolder, *, background: int = 32, seed: int = 0,
             progress: bool = True) -> tuple[list[dict], dict[str, dict[str, list[float]]]]:
    """Feature flipping (:mod:`uattr.tabular.faithfulness`) of Shapley values and
    occlusion of a random forest's uncertainty on each real data set's test rows that are
    more uncertain than the background, against a random order (paired over the rows).
    Returns the table's rows and each data set's mean deletion curve per order."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from .faithfulness import deletion_curves, flipping_scores

    rows, per_row, mean_curves = [], {}, {}
    for name in tqdm(REAL, desc="real data sets", disable=not progress):
        x_train, y_train, x_test, names, classification = real_set(name, seed)
        forest = (RandomForestClassifier if classification else RandomForestRegressor)(
            200, min_samples_leaf=5, random_state=seed).fit(x_train, y_train)
        kind = "total" if classification else "epistemic"
        u = row_uncertainty(forest, kind)
        rng = np.random.default_rng([seed, 3])
        reference = x_train[rng.choice(len(x_train), background, replace=False)]
        with torch.no_grad():
            unsure = (u(torch.as_tensor(x_test)) > u(torch.as_tensor(reference)).mean()
                      ).numpy()
        x_test = x_test[unsure]  # the rows whose uncertainty asks for an explanation
        found = {}
        for method in ("random order", "shapley", "occlusion"):
            config = {"data": name, "method": method, "seed": seed, "background": background}
            key = f"{REAL_TABLE}-{name}-{method}".replace(" ", "_")
            if method == "random order":
                phi, seconds = rng.normal(size=x_test.shape), 0.0
            else:
                phi, seconds = _cached(out, key, config, partial(
                    _attribute, u, x_test, method, reference, seed))
            curves = deletion_curves(u, x_test, reference, torch.as_tensor(phi))
            found[method] = flipping_scores(curves).numpy()
            mean_curves.setdefault(name, {})[method] = curves.mean(0).tolist()
            per_row[f"{name} | {method}"] = found[method].tolist()
            n = len(x_test)
            gap = found[method] - found["random order"]
            rows.append({"data": name, "features": len(names), "test rows": len(unsure),
                         "model": "random forest",
                         "uncertainty": kind, "method": method,
                         "U drop to background": float((curves[:, 0] - curves[:, -1]).mean()),
                         "flipping score": float(found[method].mean()),
                         "s.e.": float(found[method].std(ddof=1) / n**0.5),
                         "minus random": float(gap.mean()),
                         "paired s.e.": float(gap.std(ddof=1) / n**0.5),
                         "s/row": seconds / n, "n": n})
    out.write_json(f"{REAL_TABLE}_per_row.json", per_row)
    out.write_table(f"{REAL_TABLE}_paired", paired_by_group(per_row, "flipping score"))
    out.write_json(f"{REAL_TABLE}_curves.json", mean_curves)
    return rows, mean_curves
