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

import numpy as np
import torch
from tqdm.auto import tqdm

from ..experiments.runs import RunFolder
from .methods import attribute_rows
from .models import MODELS, boosted_bootstrap, mlp_ensemble, random_forest
from .posteriors import RowUncertainty, row_uncertainty
from .synthetic import SETS, SyntheticSet, make_set

__all__ = ["TABLE", "cause_ranks", "run_benchmark", "scores"]

TABLE = "tabular_synthetic"
#: the methods each model admits: trees are not differentiable
TREE_METHODS = ("shapley", "occlusion")
NETWORK_METHODS = ("shapley", "occlusion", "optimization", "covgi")


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
        with torch.no_grad():
            test_u = float(u(torch.tensor(data.x_test)).mean())
            train_u = float(u(torch.tensor(data.x_train[:n])).mean())
        for method in methods:
            phi, seconds = _cell(out, u, data, reference, model_name, method, seed, n)
            ranks = cause_ranks(phi, data.causes)
            per_row[f"{set_name} | {model_name} | {method}"] = ranks.tolist()
            rows.append({"set": set_name, "uncertainty": data.kind, "model": model_name,
                         "method": method, **scores(ranks, phi.shape[1]),
                         "U test": test_u, "U train": train_u,
                         "s/row": seconds / len(phi), "n": len(phi)})
    out.write_json(f"{TABLE}_per_row.json", per_row)
    return rows, hashes


def _cell(out: RunFolder, u: RowUncertainty, data: SyntheticSet, reference: np.ndarray,
          model_name: str, method: str, seed: int, n: int) -> tuple[np.ndarray, float]:
    """``(phi [n, F], seconds)`` of one cell, from the run folder when it is there."""
    name = f"{TABLE}-{data.name}-{model_name}-{method}".replace(" ", "_").replace("×", "x")
    config = {"set": data.name, "model": model_name, "method": method, "seed": seed, "n": n,
              "background": len(reference)}
    stored = out.load_cell(name, config)
    if stored is not None:
        return stored[1], stored[0]["seconds"]
    options = {"seed": seed} if method == "optimization" else {}
    start = time.perf_counter()
    phi = attribute_rows(u, data.x_test, method,
                         background=None if method == "covgi" else reference,
                         **options).numpy()
    seconds = time.perf_counter() - start
    out.save_cell(name, config, {"seconds": seconds}, phi)
    return phi, seconds
