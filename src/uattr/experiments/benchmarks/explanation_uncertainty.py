"""How uncertain are explanations on MNIST? papers/004's comparison of every posterior
with every explanation method.

For each (posterior, method) and the N images: the explanation distribution of every
image (each sample explains its own predicted class), and

- **mean CV**: the coefficient of variation averaged over the pixels where it is defined,
  then over images (lower: the samples agree on the explanation);
- **deletion / insertion AUC** of the mean prediction's probability of its class, with
  pixels ordered by the mean map and by the std map (papers/004 "Mechanism 3"; deletion
  blackens pixels, insertion starts from black: lower deletion and higher insertion AUC
  mean a more faithful order);
- **CV per class**: the mean CV of the images of each true class.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ... import viz
from ...attribution.base import constructor_settings
from ...explanation.distributions import EXPLAINERS, ExplanationUncertainty, mean_cv
from ...metrics import deletion_insertion
from ...ops.rng import index_generators
from ...zoo import data
from ..commands import BenchCommand, option
from ..common import cached_cell, posterior_key
from ..job import POSTERIOR_KINDS, Job, Section, log, print_table
from ..runs import RunFolder

__all__ = ["COMMAND", "YOUR_MODEL", "benchmark", "run_explanation_uncertainty"]


def run_explanation_uncertainty(
    images: Tensor,
    labels: Tensor,
    posteriors: dict[str, Callable[[Tensor], Tensor]],
    methods: list[str],
    *,
    folder: RunFolder | None = None,
    steps: int = 20,
    batch_size: int = 50,
    seed: int = 0,
    device: torch.device | str = "cpu",
    data_key: dict | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[dict], list[dict], dict[tuple[str, str], Tensor]]:
    """Rows ``(posterior, method, mean CV, AUCs, s/image)``, rows of the CV per class,
    and the ``[3, N, H, W]`` mean / std / CV maps of each cell. With a ``folder`` each
    cell is stored and reused."""
    rows, per_class, maps = [], [], {}
    classes = sorted(set(labels.tolist()))
    for posterior_name, posterior in posteriors.items():
        hashed = posterior_key(posterior)  # once per posterior: it reads every weight
        for method in methods:
            explainer = ExplanationUncertainty(posterior, method, seed=seed)
            config = {"posterior": posterior_name, "posterior key": hashed,
                      "explainer": constructor_settings(explainer), "steps": steps,
                      "data": data_key or {"n": len(images)}}

            def compute(explainer: ExplanationUncertainty = explainer,
                        posterior_name: str = posterior_name) -> tuple[dict, np.ndarray]:
                row, array = _cell(images, explainer, steps=steps, batch_size=batch_size,
                                   device=device,
                                   desc=f"{posterior_name} / {explainer.method}")
                return {"posterior": posterior_name, "method": explainer.method, **row}, array

            row, array = cached_cell(folder, f"explanation-uncertainty-{posterior_name}-"
                                             f"{method}", config, compute, log,
                                     f"{posterior_name} / {method}")
            rows.append(row)
            stats = torch.from_numpy(array[:3])  # [3, N, H, W]: mean, std, CV
            maps[(posterior_name, method)] = stats
            cv = mean_cv(stats[0], stats[2])  # [N]
            per_class.append({"posterior": posterior_name, "method": method,
                              **{f"CV {c}": float(cv[labels == c].mean()) for c in classes}})
    return rows, per_class, maps


def _cell(images: Tensor, explainer: ExplanationUncertainty, *, steps: int, batch_size: int,
          device: torch.device | str, desc: str) -> tuple[dict, np.ndarray]:
    posterior, seed = explainer.posterior, explainer.seed
    start = time.perf_counter()
    orders, curves = ("mean", "std"), ("deletion", "insertion")
    stats, aucs = [], {(curve, order): [] for curve in curves for order in orders}

    def mean_probs(z: Tensor) -> Tensor:
        return posterior(z).mean(1)  # [N, C]

    for i in tqdm(range(0, len(images), batch_size), desc=desc, leave=False,
                  disable=len(images) <= batch_size):
        x = images[i : i + batch_size].to(device)
        result = explainer.explain(x, generator=index_generators(seed, range(i, i + len(x))))
        stats.append(torch.stack([result.mean, result.std, result.cv]).cpu())  # [3, b, H, W]
        with torch.no_grad():
            classes = mean_probs(x).argmax(-1)
            for order in orders:
                found = deletion_insertion(mean_probs, x, getattr(result, order),
                                           steps=steps, targets=classes)
                for curve in curves:
                    aucs[(curve, order)].append(found[f"{curve}_auc"].cpu())
    seconds = (time.perf_counter() - start) / len(images)
    stats = torch.cat(stats, 1)  # [3, N, H, W]
    row: dict = {"mean CV": float(mean_cv(stats[0], stats[2]).mean())}
    for order in orders:
        for curve in curves:
            row[f"{curve} AUC ({order} map)"] = float(torch.cat(aucs[(curve, order)]).mean())
    row["s/image"] = seconds
    row["n"] = len(images)
    return row, stats.numpy()


# ------------------------------------------------------------ the job of uattr bench/run
#: the row of a user's own model (``--model``) in the comparison
YOUR_MODEL = "your model"


def benchmark(job: Job, n: int, posteriors: list[str] | None,
              methods: list[str]) -> Section:
    """papers/004 on the first ``n`` test images: every posterior × explanation method.

    ``posteriors``: the kinds uattr trains on the data set to compare (``ensemble`` or a
    sampled one); ``None``: all of them, or, when the job's posterior is a user's model
    (``--model``), none. A user's model is always compared, as the row ``your model``."""
    settings, out = job.settings, job.out
    where = settings.data
    chosen = settings.posterior
    if posteriors is None:
        posteriors = [] if chosen.model else list(POSTERIOR_KINDS)
    loaded = {YOUR_MODEL: job.posterior} if chosen.model else {}
    for kind in posteriors:
        if kind == chosen.kind and not chosen.model:
            loaded[kind] = job.posterior  # the job's own, already loaded
        else:
            loaded[kind], info = POSTERIOR_KINDS[kind].load(settings, False)
            job.weights.update(info["weights"])
    split = data.load(where.dataset, where.split, root=where.data_dir)
    images, labels = split.images[:n], split.labels[:n]
    rows, per_class, maps = run_explanation_uncertainty(
        images, labels, loaded, methods, folder=out, seed=settings.method.seed,
        device=settings.device, data_key={"split": where.split, "n": n}, log=log)
    out.write_table("explanation_uncertainty", rows)
    out.write_table("explanation_uncertainty_per_class", per_class)
    shown = slice(0, min(6, n))
    method = methods[0]
    grid = {f"{kind} {stat}": maps[(kind, method)][k][shown]
            for kind in loaded for k, stat in enumerate(("mean", "std", "CV"))}
    out.save_figure("explanation_uncertainty_maps.png",
                    viz.maps_grid(images[shown], grid,
                                  titles=[f"label {v}" for v in labels[shown].tolist()]))
    text = (f"The first {n} {where.dataset} {where.split} images; each posterior sample "
            f"explains its own predicted class ({settings.posterior.samples} samples for the "
            "single-network posteriors, trained on "
            f"{settings.posterior.posterior_train or 'all the'} training images). Mean CV: the "
            "coefficient of variation of the explanation over the samples, averaged over "
            "pixels and images (lower: the samples agree). Deletion / insertion AUC of "
            "the mean prediction's class probability, pixels in the order of the mean or "
            "the std map (lower deletion, higher insertion: a more faithful order). "
            f"Figure: {method}.")
    print_table(f"Explanation uncertainty (papers/004): {text}", rows)
    print_table("Mean CV per true class", per_class)
    return Section("Explanation uncertainty", text,
                   [("explanation uncertainty", rows), ("mean CV per class", per_class)],
                   ["explanation_uncertainty_maps.png"])


COMMAND = BenchCommand(
    "explanation-uncertainty", "mean / std / CV of explanations over posterior samples, with "
    "deletion and insertion AUCs (papers/004)",
    lambda job, args: benchmark(job, args.n, args.posteriors, args.explainers),
    options=(
        option("--posteriors", nargs="+", default=None, choices=tuple(POSTERIOR_KINDS),
               help="posteriors uattr trains to compare (default: all of them; with --model, "
                    "none: your model alone)"),
        option("--explainers", nargs="+", default=list(EXPLAINERS), choices=EXPLAINERS,
               help="explanation methods (default all)"),
    ))
