"""What image size costs: seconds, forward/backward passes and peak memory per image of
every method at 28, 32, 96 and 224 px on colour images, and the optimization-based
method's step against one bare forward+backward of the same posterior.

    .venv/bin/python benchmarks/scaling.py --out runs/scaling --results docs/results/scaling-cpu
    .venv/bin/python benchmarks/scaling.py --device cuda --out runs/scaling-cuda
    .venv/bin/python benchmarks/scaling.py --steps-only --no-resnet --out runs/step-cost
    .venv/bin/python benchmarks/scaling.py --steps-only --no-resnet --sizes 28 32 \
        --step-images 4 16 100 --out runs/step-batches --results docs/results/step-batches-cpu

The images are crops of the colour photographs that ship with scikit-image and
scikit-learn (:data:`uattr.zoo.photo_mnist.PHOTOS`). The posterior is a 5-member ensemble
of the small CNN with an adaptive pool (``SmallCNN(pool_to=11)``: at 28 px the papers'
network, at any size the same layers), randomly initialised and seeded: time and memory
do not depend on the weights. ResNet-18 (5 members) is measured at 224 px as well. The
optimization-based rows run their whole budget of 500 steps (``early_stop=False``), the
worst case of the stopping rule; every other method runs its defaults.

Each (size, network, row) is one cell, run in a fresh process so that its peak memory is
its own: ``peak MiB`` is the process's peak resident memory above what it held before the
method started (on CUDA: the peak of allocated GPU memory). Each cell is written to
``--out/cells`` as it finishes, and a rerun skips the finished ones (a damaged one is
moved aside and measured again). Tables (Markdown, CSV,
JSON) go to ``--out``:

1. ``scaling``: per size, network and method: images, seconds/image, forward/image,
   backward/image, peak MiB;
2. ``optimization_step``: per size and network, one step of the method (and one with a
   blur of fixed width) against one bare batched forward+backward of the posterior (U(x)
   and its gradient) on the same images,
   timed in interleaved rounds after a warm-up, and the median of the rounds' ratios
   (alone, with ``--steps-only``: a few minutes, where the whole run takes more than an
   hour).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import torch

from uattr.experiments.attribute import cpu_model
from uattr.experiments.healing import read_json_or_set_aside
from uattr.experiments.registry import ROWS
from uattr.experiments.runs import RunFolder, markdown_table, write_atomic

SIZES = (28, 32, 96, 224)
MEMBERS = 5
RESNET_ROUNDS = 5
#: the rows measured on ResNet-18 by default: one of the method's two rows and those of up
#: to ~500 passes per image (fixed-mask KernelSHAP, LIME and the method on pixels would take
#: 15-40 min each on 2 CPU cores)
RESNET_METHODS = ("optimization (slic)", "amortized", "amortized (slic)",
                  "amortized + first-order (slic)", "grad", "smoothgrad",
                  "integrated gradients", "blur ig", "fullgrad", "guided backprop", "ua-backprop",
                  "occlusion")


def photo_crops(size: int, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random ``size``-px crops of the shipped colour photographs ``[n, 3, H, W]``."""
    from uattr.zoo.photo_mnist import random_crops

    return torch.from_numpy(random_crops(size, n, seed))


def ensemble(arch: str, size: int, device: str):
    """The 5-member posterior of ``arch`` (``small-cnn`` or ``resnet18``), seeded."""
    from uattr.uq import Ensemble
    from uattr.zoo.models import SmallCNN
    from uattr.zoo.resnet import ResNet18

    members = []
    for s in range(MEMBERS):
        torch.manual_seed(s)
        net = SmallCNN(3, 10, size, pool_to=11) if arch == "small-cnn" else ResNet18(3, 10)
        members.append(net.eval().to(device))
    return Ensemble(members)


def rows_for(posterior, in_channels: int) -> dict:
    """Every non-generative, non-oracle row of the detection table, the optimization-based
    ones with their whole step budget, the amortised explainer with an untrained mask
    network of the shipped explainers' width (one forward pass costs what it costs
    whatever the weights)."""
    from uattr.attribution.amortized import MaskNet
    from uattr.experiments.amortized import DEFAULT_CONFIG
    from uattr.experiments.registry import detection_methods, optimization
    from uattr.experiments.settings import MethodSettings

    settings = MethodSettings()
    torch.manual_seed(0)
    explainer = MaskNet(in_channels, DEFAULT_CONFIG.width).eval()
    specs = {name: spec for name, spec in
             detection_methods(posterior, settings, amortized=explainer).items()
             if not spec.oracle}
    for name, spec in specs.items():
        if name.startswith("optimization"):
            specs[name] = replace(spec, method=optimization(posterior, settings,
                                                            early_stop=False, progress=False))
    return specs


def _peak_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _quiet() -> None:
    """Random weights make maps that say nothing, which is not what is measured here."""
    from uattr import UninformativeMapWarning

    warnings.simplefilter("ignore", UninformativeMapWarning)


def method_cell(size: int, arch: str, name: str, n: int, device: str) -> dict:
    """One row of ``scaling``, measured in this (fresh) process."""
    from uattr.experiments.common import attribute_counted

    _quiet()
    posterior = ensemble(arch, size, device)
    x = photo_crops(size, n)
    spec = rows_for(posterior, x.shape[1])[name]
    with torch.no_grad():
        posterior(x[:1].to(device))  # warm-up: lazy allocations are not the method's
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = _peak_mib(device)
    done = attribute_counted(spec, x, n, device, log=lambda _: None)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"size": size, "network": arch, "method": name, "images": n,
            "s/image": done.seconds, "forward/image": done.forward,
            "backward/image": done.backward,
            "peak MiB": max(0.0, _peak_mib(device) - before)}


def _seconds(run, device: str, repeats: int = 1) -> float:
    """Wall-clock seconds of one ``run()``, the mean of ``repeats`` calls in a row."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def step_cell(size: int, arch: str, n: int, device: str) -> dict:
    """One row of ``optimization_step``: a step of the method (its cost over ``steps`` more
    steps, so that the set-up is not counted) against a bare forward+backward, measured in
    interleaved rounds: each round times the bare pass (the mean of ``bare_repeats`` in a
    row), then the method with 1 step and with ``1 + steps`` steps, so that a slow spell of
    a shared machine falls on both sides of the round's ratio; the row gives the medians
    over the rounds, and the ratio of a step whose blur has a fixed width
    (``learn_blur=False``: the image is blurred once), which says what learning σ costs.
    A step of the small CNN on a few images lasts milliseconds: 100 steps and 20 bare passes
    per round, 15 rounds; on 32 images or more a step lasts a tenth of a second and 20 steps
    and 5 bare passes a round time as long a stretch; ResNet-18's 2.6 s passes keep 20
    steps, 1 bare pass and 5 rounds."""
    if arch == "resnet18":
        steps, bare_repeats, rounds = 20, 1, RESNET_ROUNDS
    else:
        steps, bare_repeats, rounds = (20, 5, 15) if n >= 32 else (100, 20, 15)
    from uattr import OptimizationUA, uncertainty

    _quiet()
    posterior = ensemble(arch, size, device)
    x = photo_crops(size, n).to(device)

    def bare() -> None:
        leaf = x.clone().requires_grad_()
        torch.autograd.grad(uncertainty(posterior(leaf), "total").sum(), leaf)

    def run(k: int, learn_blur: bool):
        method = OptimizationUA(posterior, max_steps=k, early_stop=False, learn_blur=learn_blur)
        return lambda: method.attribute(x)

    # the method as it runs, and with a blur of fixed width (what learning σ costs)
    variants = {learn: (run(1, learn), run(1 + steps, learn)) for learn in (True, False)}
    bare()
    for one, more in variants.values():  # warm-up
        one()
        more()
    passes, step_costs = [], {learn: [] for learn in variants}
    for _ in range(rounds):
        passes.append(_seconds(bare, device, bare_repeats))
        for learn, (one, more) in variants.items():
            step_costs[learn].append((_seconds(more, device) - _seconds(one, device)) / steps)

    def ratio(costs: list[float]) -> float:
        return float(np.median([s / p for s, p in zip(costs, passes, strict=True)]))

    return {"size": size, "network": arch, "images": n,
            "step (s)": float(np.median(step_costs[True])),
            "forward+backward (s)": float(np.median(passes)),
            "ratio": ratio(step_costs[True]), "ratio, fixed blur": ratio(step_costs[False]),
            "rounds": rounds}


def _cell_name(*parts) -> str:
    return "-".join(str(p).replace(" ", "_").replace("(", "").replace(")", "")
                    for p in parts) + ".json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--images", type=int, default=4,
                        help="images per cell up to 96 px (default 4)")
    parser.add_argument("--images-large", type=int, default=1,
                        help="images per cell above 96 px (default 1)")
    parser.add_argument("--methods", nargs="+", help="rows to measure (default: all)")
    parser.add_argument("--no-resnet", action="store_true", help="skip ResNet-18 at 224 px")
    parser.add_argument("--resnet-methods", nargs="+", default=list(RESNET_METHODS),
                        help="rows to measure on ResNet-18, of those of --methods (default: "
                             "RESNET_METHODS); on 2 CPU cores one forward+backward of its 5 "
                             "members on one 224 px image takes ~2.6 s, so each 1000-pass "
                             "row takes ~15 min")
    parser.add_argument("--steps-only", action="store_true",
                        help="measure the optimization_step table only")
    parser.add_argument("--step-images", type=int, nargs="+",
                        help="batches of the optimization_step table with the small CNN "
                             "(default: the --images or --images-large of each size): its "
                             "few dozen small tensor operations per step cost about the same "
                             "whatever the batch, the posterior's passes grow with it")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/scaling", help="folder of the tables")
    parser.add_argument("--results", help="also copy the tables to this folder")
    args = parser.parse_args()
    if any(size < 16 for size in args.sizes):
        raise SystemExit("--sizes: every size must be >= 16 px (the CNN's two 4×4 convs)")
    known = [row.name for row in ROWS if not row.generative and not row.oracle]
    for flag, names in (("--methods", args.methods), ("--resnet-methods", args.resnet_methods)):
        unknown = sorted(set(names or []) - set(known))
        if unknown:
            raise SystemExit(f"{flag}: unknown {unknown}; choose from {known}")
    methods = args.methods or known
    resnet_methods = [m for m in methods if m in args.resnet_methods]
    out = RunFolder(args.out)
    cells = out.path / "cells"
    out.write_json("run-scaling.json", {
        "command": " ".join(["python", *sys.argv]), "cpu": cpu_model(),
        "threads": torch.get_num_threads(), "device": args.device,
        "methods": [] if args.steps_only else methods,
        "resnet methods": [] if args.no_resnet or args.steps_only else resnet_methods,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        # what is timed needs no trained weights: nothing to ship, the same on any machine
        "untrained networks": "member s initialised after torch.manual_seed(s)"})
    jobs = []
    for size in args.sizes:
        n = args.images if size <= 96 else args.images_large
        networks = ["small-cnn"] + (["resnet18"] if size == 224 and not args.no_resnet else [])
        for arch in networks:
            batches = args.step_images if args.step_images and arch == "small-cnn" else [n]
            jobs += [(cells / _cell_name("step", size, arch, images), step_cell,
                      (size, arch, images, args.device)) for images in batches]
            if args.steps_only:
                continue
            rows = resnet_methods if arch == "resnet18" else methods
            jobs += [(cells / _cell_name(size, arch, name), method_cell,
                      (size, arch, name, n, args.device)) for name in rows]
    spawn = multiprocessing.get_context("spawn")
    for path, cell, cell_args in jobs:
        if isinstance(read_json_or_set_aside(path), dict):  # a damaged cell is made again
            continue
        # a fresh process per cell: its peak memory is its own
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            row = pool.submit(cell, *cell_args).result()
        write_atomic(path, (json.dumps(row) + "\n").encode())
        print(json.dumps(row), flush=True)
    # "image" names a row's size in text, as the README's quotes find rows by their text
    # ("batch" too, where a size has steps timed on several batches)
    rows = [{"image": f"3×{row['size']}×{row['size']}",
             **({"batch": f"{row['images']} images"} if args.step_images else {}), **row}
            for row in (read_json_or_set_aside(path) for path, _, _ in jobs)]
    steps = [row for row in rows if "ratio" in row]
    scaling = [row for row in rows if "ratio" not in row]
    if scaling:
        out.write_table("scaling", scaling)
    out.write_table("optimization_step", steps)
    print(f"\n{markdown_table(scaling)}\n\n{markdown_table(steps)}")
    if args.results:
        out.publish(args.results)


if __name__ == "__main__":
    main()
