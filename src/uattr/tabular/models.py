"""The tabular benchmark's models, fitted on a synthetic set's training rows: a random
forest, a bootstrap ensemble of gradient-boosted trees, and an ensemble of MLPs.

scikit-learn builds its trees in float64 with seeded draws: the same forests on any
machine with the same scikit-learn. The MLPs train in float32, which is not
bit-reproducible across CPUs, so their weights ship with uattr (:mod:`uattr.zoo.weights`)
and are loaded unless ``retrain``; ``ship`` stores newly trained ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from torch import nn

from ..zoo import weights
from .clue import RowVAE, train_row_vae
from .synthetic import SyntheticSet

__all__ = ["MODELS", "boosted_bootstrap", "mlp_ensemble", "mlp_scores", "random_forest",
           "row_vae"]

MODELS = ("random forest", "boosted trees ×10", "MLP ensemble ×5")


def random_forest(data: SyntheticSet, seed: int = 0) -> RandomForestClassifier:
    """200 trees, at least 10 rows a leaf (so that a leaf's label share is a probability)."""
    return RandomForestClassifier(200, min_samples_leaf=10, random_state=seed).fit(
        data.x_train, data.y_train)


def boosted_bootstrap(data: SyntheticSet, seed: int = 0, members: int = 10
                      ) -> list[GradientBoostingClassifier]:
    """``members`` gradient-boosted models (100 stages of depth 3), each fitted on its own
    bootstrap resample of the training rows: boosting's trees are the stages of one model,
    the resamples make an ensemble."""
    rng = np.random.default_rng([seed, 1])
    models = []
    for member in range(members):  # a loop over models to fit, not over rows
        rows = rng.integers(0, len(data.x_train), len(data.x_train))
        models.append(GradientBoostingClassifier(n_estimators=100, max_depth=3,
                                                 random_state=seed + member).fit(
            data.x_train[rows], data.y_train[rows]))
    return models


def _mlp(features: int, hidden: int = 32) -> nn.Module:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, 2))


MLP_SPEC = {"hidden": 32, "epochs": 400, "lr": 0.01, "weight_decay": 1e-4, "members": 5}


def _name(kind: str, spec: dict, data: SyntheticSet, seed: int) -> str:
    """The cache name of a model of ``kind`` trained with ``spec`` on ``data``'s rows."""
    text = json.dumps({**spec, "set": data.name, "seed": seed, "n_train": len(data.x_train)},
                      sort_keys=True)
    return f"tabular-{data.name}-{kind}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _load_or_train(name: str, modules: dict[str, nn.Module], train: Callable[[], None], *,
                   kind: str, spec: dict, retrain: bool, ship: bool,
                   scores: Callable[[], dict] | None = None) -> dict[str, str]:
    """Load ``modules`` (``{file: module}``) from the shipped weights of ``name``, or, when
    uattr ships none (or ``retrain``), ``train()`` them, and store them as shipped weights
    if ``ship``. Returns the hashes of the shipped files they hold (none if trained and not
    shipped): what a run records."""
    states = dict.fromkeys(modules) if retrain else {
        file: weights.load_shipped(name, file) for file in modules}
    if all(state is not None for state in states.values()):
        for module, state in zip(modules.values(), states.values(), strict=True):
            module.load_state_dict(state)
    else:
        train()
        if ship:
            weights.ship(name, kind, spec, {f: m.state_dict() for f, m in modules.items()},
                         dtype="float32", command="uattr tabular-bench --ship",
                         scores=scores)
            for file, module in modules.items():  # what the tables use: the stored weights
                module.load_state_dict(weights.load_shipped(name, file))
    for module in modules.values():
        module.eval()
    return {f"{name}/{file}": digest for file, digest in
            (weights.shipped_entry(name) or {}).get("files", {}).items()}


def mlp_ensemble(data: SyntheticSet, seed: int = 0, *, retrain: bool = False,
                 ship: bool = False) -> tuple[list[nn.Module], dict[str, str]]:
    """``(networks, weight hashes)``: five MLPs (two ReLU layers of 32), each trained from
    its own initialisation with full-batch Adam on the cross-entropy; the shipped weights
    when uattr has them (and not ``retrain``), else trained here (and shipped if ``ship``)."""
    networks = {f"member{m}.pt": _mlp(data.x_train.shape[1], MLP_SPEC["hidden"])
                for m in range(MLP_SPEC["members"])}

    def train() -> None:
        x = torch.tensor(data.x_train, dtype=torch.float32)
        y = torch.tensor(data.y_train)
        for member, network in enumerate(networks.values()):
            torch.manual_seed(seed * 100 + member)
            network.apply(lambda m: m.reset_parameters() if isinstance(m, nn.Linear)
                          else None)
            optimizer = torch.optim.Adam(network.parameters(), lr=MLP_SPEC["lr"],
                                         weight_decay=MLP_SPEC["weight_decay"])
            for _ in range(MLP_SPEC["epochs"]):
                loss = nn.functional.cross_entropy(network(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    members = list(networks.values())
    hashes = _load_or_train(_name("mlp", MLP_SPEC, data, seed), networks, train,
                            kind="tabular-mlp-ensemble",
                            spec={**MLP_SPEC, "set": data.name, "seed": seed},
                            retrain=retrain, ship=ship,
                            scores=lambda: mlp_scores(data, members, seed))
    return members, hashes


VAE_SPEC = {"hidden": 64, "epochs": 500, "lr": 0.01, "noise_std": 0.3}


def row_vae(data: SyntheticSet, seed: int = 0, *, retrain: bool = False,
            ship: bool = False) -> tuple[RowVAE, dict[str, str]]:
    """``(vae, weight hashes)``: the :class:`~uattr.tabular.clue.RowVAE` of the set's
    training rows that CLUE searches, shipped like the MLPs."""
    vae = RowVAE(data.x_train.shape[1], data.x_train.shape[1], VAE_SPEC["hidden"])

    def train() -> None:
        vae.load_state_dict(train_row_vae(data.x_train, hidden=VAE_SPEC["hidden"],
                                          epochs=VAE_SPEC["epochs"], lr=VAE_SPEC["lr"],
                                          noise_std=VAE_SPEC["noise_std"],
                                          seed=seed).state_dict())

    hashes = _load_or_train(_name("vae", VAE_SPEC, data, seed), {"vae.pt": vae}, train,
                            kind="tabular-vae", spec={**VAE_SPEC, "set": data.name,
                                                      "seed": seed},
                            retrain=retrain, ship=ship)
    return vae, hashes


def mlp_scores(data: SyntheticSet, networks: list[nn.Module], seed: int) -> dict:
    """The ensemble's and each member's accuracy on 2000 fresh rows drawn as the training
    rows were (seed + 1000), labels noisy where the set makes them so."""
    from .synthetic import make_set

    fresh = make_set(data.name, n_train=2000, n_test=1, seed=seed + 1000)
    x = torch.tensor(fresh.x_train, dtype=torch.float32)
    y = torch.tensor(fresh.y_train)
    with torch.no_grad():
        probs = torch.stack([net(x).softmax(-1) for net in networks], 1)  # [N, S, 2]
    return {"accuracy": round(float((probs.mean(1).argmax(-1) == y).float().mean()), 5),
            "member_accuracy": [round(float((p.argmax(-1) == y).float().mean()), 5)
                                for p in probs.unbind(1)]}
