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

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from torch import nn

from ..zoo import weights
from .synthetic import SyntheticSet

__all__ = ["MODELS", "boosted_bootstrap", "mlp_ensemble", "mlp_scores", "random_forest"]

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


def _name(data: SyntheticSet, seed: int) -> str:
    spec = json.dumps({**MLP_SPEC, "set": data.name, "seed": seed,
                       "n_train": len(data.x_train)}, sort_keys=True)
    return f"tabular-{data.name}-mlp-{hashlib.sha256(spec.encode()).hexdigest()[:10]}"


def mlp_ensemble(data: SyntheticSet, seed: int = 0, *, retrain: bool = False,
                 ship: bool = False) -> tuple[list[nn.Module], dict[str, str]]:
    """``(networks, weight hashes)``: five MLPs (two ReLU layers of 32), each trained from
    its own initialisation with full-batch Adam on the cross-entropy; the shipped weights
    when uattr has them (and not ``retrain``), else trained here (and shipped if ``ship``)."""
    name = _name(data, seed)
    files = {f"member{m}.pt": None for m in range(MLP_SPEC["members"])}
    networks = [_mlp(data.x_train.shape[1], MLP_SPEC["hidden"]) for _ in files]
    states = {file: weights.load_shipped(name, file) for file in files} if not retrain \
        else dict.fromkeys(files)
    if all(state is not None for state in states.values()):
        for network, state in zip(networks, states.values(), strict=True):
            network.load_state_dict(state)
    else:
        x = torch.tensor(data.x_train, dtype=torch.float32)
        y = torch.tensor(data.y_train)
        for member, network in enumerate(networks):
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
        if ship:
            weights.ship(name, "tabular-mlp-ensemble", {**MLP_SPEC, "set": data.name,
                                                        "seed": seed},
                         {file: net.state_dict() for file, net in
                          zip(files, networks, strict=True)}, dtype="float32",
                         command="uattr tabular-bench --ship",
                         scores=lambda: mlp_scores(data, networks, seed))
            for network, file in zip(networks, files, strict=True):
                network.load_state_dict(weights.load_shipped(name, file))
    for network in networks:
        network.eval()
    hashes = {f"{name}/{file}": digest for file, digest in
              (weights.shipped_entry(name) or {}).get("files", {}).items()}
    return networks, hashes


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
