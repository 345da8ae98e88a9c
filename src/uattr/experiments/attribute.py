"""Maps for a whole data set, in shards that are written atomically and resumed.

``uattr attribute`` splits the images of a split into shards of ``shard_size`` images.
Each finished shard is one file ``shard-<k>.npz`` holding its image indices, their maps
``[n, H, W]``, their uncertainty ``[n]`` and the seconds its worker took to compute it;
``manifest.json`` describes the method (its class and every setting), the segmenter, the
posterior (a hash of its weights) and the data; ``timing.json`` has one row per
invocation, rewritten after each shard (its images, shards, workers, CPU and
wall-clock seconds; a killed invocation keeps the row of the shards it wrote). A rerun
skips the shards already written and refuses to add shards to a folder made with other
settings. Random methods get one generator per image, seeded by the image's
index, so a map does not depend on which shard, batch or machine computed it: the shards
can run in one process or as Ray tasks (:mod:`.distributed`) and give the same maps.
"""

from __future__ import annotations

import io
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor
from tqdm.auto import tqdm

from .. import viz
from ..metrics import find_box
from ..ops.rng import index_generators
from ..uq import predict_probs, uncertainty
from ..zoo.data import default_patch_size
from .common import MethodSpec, attribute_in_batches, method_key
from .healing import read_json_or_set_aside, read_npz_or_set_aside, set_aside
from .runs import write_atomic
from .settings import Settings

__all__ = [
    "AttributedSet",
    "InvocationRecord",
    "ShardPlan",
    "ShardWorker",
    "attribute_dataset",
    "attribute_shard",
    "cpu_model",
    "finished_shards",
    "load_maps",
    "most_uncertain",
    "open_folder",
    "read_shard",
    "read_timing",
    "shard_name",
]

MANIFEST = "manifest.json"
TIMING = "timing.json"


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.npz"


@dataclass(frozen=True)
class ShardPlan:
    """The split's ``indices`` to attribute, cut into shards of ``shard_size``."""

    indices: Tensor
    shard_size: int

    @property
    def count(self) -> int:
        return (len(self.indices) + self.shard_size - 1) // self.shard_size

    def shard(self, k: int) -> Tensor:
        return self.indices[k * self.shard_size : (k + 1) * self.shard_size]


def open_folder(folder: str | os.PathLike, manifest: dict) -> Path:
    """Create ``folder`` with ``manifest``, or check that the one it holds is the same;
    ``ValueError`` naming what differs otherwise (shards of two settings never mix)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST
    wanted = json.loads(json.dumps(manifest, default=str))  # as it reads back from disk
    had_manifest = path.exists()
    stored = read_json_or_set_aside(path)
    if had_manifest and stored is None:
        # shards whose settings nothing records cannot be trusted: set aside, made again
        for shard in sorted(folder.glob("shard-*.npz")):
            set_aside(shard, f"its folder's {MANIFEST} is damaged")
    if stored is not None:
        if stored != wanted:
            changed = _differences(stored, wanted)
            raise ValueError(f"--out {folder} holds maps made with other settings (they "
                             f"differ in {changed}); choose another --out or remove it")
        return folder
    write_atomic(path, (json.dumps(wanted, indent=2) + "\n").encode())
    return folder


def _differences(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    """The dotted names of the entries where two manifests differ, e.g.
    ``method.posterior`` (the posterior's weights) or ``method.settings.lam``."""
    names = []
    for key in sorted(set(stored) | set(wanted)):
        old, new = stored.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            names += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            names.append(f"{prefix}{key}")
    return names


SHARD_KEYS = ("indices", "maps", "u", "seconds")


def read_shard(folder: Path, k: int, indices: Tensor | None = None) -> dict | None:
    """Shard ``k``'s arrays, checked: every key, one map and one U per index, and the
    ``indices`` the plan gives it (when given). ``None`` when it is not written; a damaged
    one is moved aside (:mod:`.healing`) and is ``None`` too."""
    path = folder / shard_name(k)
    part = read_npz_or_set_aside(path, SHARD_KEYS)
    if part is None:
        return None
    n = len(part["indices"])
    problem = None
    if part["maps"].ndim != 3 or len(part["maps"]) != n or part["u"].shape != (n,):
        problem = (f"{n} indices, maps {part['maps'].shape}, U {part['u'].shape}: they do "
                   "not match")
    elif indices is not None and not np.array_equal(part["indices"], indices.numpy()):
        problem = "its image indices are not those of its shard"
    elif not (np.isfinite(part["maps"]).all() and np.isfinite(part["u"]).all()):
        problem = "it holds NaN or infinite values"
    if problem is not None:
        set_aside(path, problem)
        return None
    return part


def finished_shards(folder: Path, plan: ShardPlan) -> set[int]:
    """The shards of ``plan`` whose file is written and whole (a damaged one is moved aside
    and so is not finished)."""
    return {k for k in range(plan.count) if read_shard(folder, k, plan.shard(k)) is not None}


def attribute_shard(spec: MethodSpec, images: Tensor, indices: Tensor, *, kind: str,
                    seed: int, batch_size: int,
                    device: torch.device | str) -> tuple[Tensor, Tensor]:
    """``(maps [n, H, W], U [n])`` of one shard's ``images``, ``batch_size`` at a time;
    a random method draws from one generator per image, seeded by its index."""
    maps = attribute_in_batches(spec, images, batch_size, device,
                                generators=index_generators(seed, indices.tolist()))
    probs = predict_probs(spec.method.posterior, images, batch_size=batch_size, device=device)
    return maps, uncertainty(probs, kind)


def write_shard(folder: Path, k: int, indices: Tensor, maps: Tensor, u: Tensor,
                seconds: float) -> Path:
    buffer = io.BytesIO()
    # compressed: a map of segments repeats each value over its segment's pixels
    np.savez_compressed(buffer, indices=indices.numpy(), maps=maps.numpy(), u=u.numpy(),
                        seconds=np.float64(seconds))
    path = folder / shard_name(k)
    write_atomic(path, buffer.getvalue())
    return path


def manifest_for(spec: MethodSpec, *, data: dict, shard_size: int, kind: str,
                 seed: int, weights: dict[str, str] | None = None) -> dict:
    """What the maps depend on: the method's key (class, settings, segments, posterior),
    the data, the shard size, the uncertainty explained and, for uattr's own posteriors,
    the SHA-256 of the weights (:mod:`uattr.zoo.weights`)."""
    # a random method here has always drawn one generator per image, seeded by the image's
    # index in the split (the manifest's seed): the benchmarks' "draws" marker is moot
    method = {name: value for name, value in method_key(spec).items() if name != "draws"}
    manifest = {"method": method, "data": data, "shard_size": shard_size,
                "uncertainty": kind, "seed": seed}
    if weights:
        manifest["weights"] = dict(sorted(weights.items()))
    return manifest


@dataclass(frozen=True)
class AttributedSet:
    """Everything a folder holds: ``maps [N, H, W]``, the split's ``indices [N]`` (in
    increasing order) and the uncertainty ``u [N]`` the maps explain, with the
    ``manifest`` and the ``timing`` rows of the invocations that wrote them."""

    maps: Tensor
    indices: Tensor
    u: Tensor
    manifest: dict
    timing: list[dict]


def load_maps(folder: str | os.PathLike) -> AttributedSet:
    """Read back a folder written by ``uattr attribute`` (every finished shard)."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        raise FileNotFoundError(f"{folder} has no {MANIFEST}: it is not a folder of "
                                "`uattr attribute`")
    manifest = read_json_or_set_aside(folder / MANIFEST)
    if manifest is None:
        raise ValueError(f"{folder}'s {MANIFEST} is damaged: rerun `uattr attribute` with "
                         "the same settings to make the folder again")
    shards = sorted(folder.glob("shard-*.npz"))
    if not shards:
        raise ValueError(f"{folder} holds no finished shard yet")
    parts = [read_shard(folder, int(path.stem.split("-")[1])) for path in shards]
    if any(part is None for part in parts):
        raise ValueError(f"{folder} had damaged shards (moved aside): rerun `uattr attribute` "
                         "with the same settings to compute them again")
    indices = torch.from_numpy(np.concatenate([p["indices"] for p in parts]))
    order = torch.argsort(indices)
    maps = torch.from_numpy(np.concatenate([p["maps"] for p in parts]))[order]
    u = torch.from_numpy(np.concatenate([p["u"] for p in parts]))[order]
    return AttributedSet(maps, indices[order], u, manifest, read_timing(folder))


def most_uncertain(result: AttributedSet, images: Tensor, kind: str,
                   top: int = 10) -> tuple[list[dict], Figure]:
    """The ``top`` most uncertain images of ``result`` and where their maps point: one row
    each (its index, its uncertainty ``U <kind>``, the top-left corner of the box of
    highest mean attribution, of the detection benchmark's patch size) and a figure of
    the images, maps and boxes. ``images``: the split the maps were made of."""
    size = default_patch_size(*result.maps.shape[-2:])
    chosen = result.u.argsort(descending=True, stable=True)[:top]
    boxes = find_box(result.maps[chosen], size)  # [top, 4]
    rows = [{"image": int(result.indices[i]), f"U {kind}": float(result.u[i]),
             f"box of highest mean attribution ({size}×{size}: top, left)":
                 f"{int(box[0])}, {int(box[1])}"} for i, box in zip(chosen, boxes, strict=True)]
    picked = result.indices[chosen]
    figure = viz.explanation_grid(
        images[picked], None, result.maps[chosen], boxes=boxes,
        titles=[f"#{int(i)} U={float(result.u[j]):.2f}" for i, j in zip(picked, chosen,
                                                                        strict=True)])
    return rows, figure


def read_timing(folder: str | os.PathLike) -> list[dict]:
    """The rows of ``timing.json``: one per finished invocation (none before the first)."""
    rows = read_json_or_set_aside(Path(folder) / TIMING)
    return rows if isinstance(rows, list) else []


def shard_seconds(folder: Path, shards: list[int]) -> float:
    """The compute seconds the ``shards`` record (each on its worker), summed; a shard
    written before shards recorded their time counts 0."""
    total = 0.0
    for k in shards:
        part = read_shard(folder, k)
        total += float(part["seconds"]) if part is not None else 0.0
    return total


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what :mod:`platform` knows of it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


class InvocationRecord:
    """This invocation's row of ``timing.json``, rewritten (atomically) after each shard
    it finishes, so that a killed invocation leaves the row of the shards it wrote.

    ``seconds`` is wall-clock time from the first shard's dispatch (Ray's start
    included) to the last finished shard's file; ``shard seconds`` sums the compute time
    those shards record, so ``shard seconds / seconds`` is how many shards ran at once.
    ``complete`` is false until every shard the invocation set out to write is written
    (a killed one keeps false); ``cpu`` is the model of the driver's CPU (on a cluster
    the workers' may differ). An invocation that finishes no shard writes no row."""

    def __init__(self, folder: Path, *, planned: int, workers: int | None,
                 address: str | None) -> None:
        self.folder, self.planned = folder, planned
        self.earlier = read_timing(folder)
        self.where = (f"Ray at {address}" if address is not None else
                      f"local Ray, {workers} workers" if workers is not None else
                      "one process")
        self.started = datetime.now(timezone.utc)
        self.start = time.perf_counter()
        self.shards: list[int] = []
        self.images = 0
        self.compute = 0.0  # the finished shards' own seconds, summed as they come
        self.row: dict | None = None

    def finished(self, k: int, images: int) -> dict:
        """Count shard ``k`` (of ``images`` images) as written and rewrite the row."""
        self.shards.append(k)
        self.images += images
        self.compute += shard_seconds(self.folder, [k])  # reads shard k's file only
        seconds = time.perf_counter() - self.start
        self.row = {"invocation": len(self.earlier) + 1,
                    "started": self.started.isoformat(timespec="seconds"),
                    "where": self.where, "cpu": cpu_model(), "cpus": os.cpu_count(),
                    "shards": len(self.shards), "images": self.images,
                    "seconds": round(seconds, 1),
                    "images/s": round(self.images / seconds, 4) if seconds > 0 else 0.0,
                    "shard seconds": round(self.compute, 1),
                    "complete": len(self.shards) == self.planned}
        write_atomic(self.folder / TIMING,
                     (json.dumps([*self.earlier, self.row], indent=2) + "\n").encode())
        return self.row


class ShardWorker:
    """What computes shards, loaded once: the posterior the settings choose, the method
    row ``method`` of the tables and the split's images. ``run(k, indices)`` attributes
    shard k and writes its file; ``before_shard(k)``, when given, runs first (a hook for
    logging, or for tests that make a worker fail)."""

    def __init__(self, settings: Settings, method: str, folder: str | os.PathLike,
                 before_shard: Callable[[int], None] | None = None,
                 threads: int | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)  # one Ray worker per CPU: one thread each
        from ..zoo import data
        from .amortized import load_or_train_amortized
        from .job import load_posterior, load_vae
        from .registry import detection_methods, needs_amortized, registry_row

        try:
            row = registry_row(method)
        except ValueError as error:
            raise ValueError(f"--method: {error}") from None
        self.settings = settings
        posterior, self.posterior_info = load_posterior(settings)
        self.weights = dict(self.posterior_info.get("weights", {}))
        vae = amortized = None
        if row.generative:
            vae, vae_info = load_vae(settings)
            self.weights.update(vae_info["weights"])
        if needs_amortized([method], settings.method):
            explainer, amortized_info = load_or_train_amortized(posterior, settings)
            self.weights.update(amortized_info["weights"])
            amortized = explainer.network
        self.spec = detection_methods(posterior, settings.method, vae, amortized)[method]
        where = settings.data
        self.images = data.load(where.dataset, where.split, root=where.data_dir).images
        self.folder = Path(folder)
        self.before_shard = before_shard

    def run(self, k: int, indices: list[int]) -> int:
        """Attribute shard ``k`` (the split's ``indices``), write its file, return ``k``."""
        if self.before_shard is not None:
            self.before_shard(k)
        index = torch.tensor(indices, dtype=torch.long)
        start = time.perf_counter()
        maps, u = attribute_shard(self.spec, self.images[index], index,
                                  kind=self.settings.method.uncertainty,
                                  seed=self.settings.method.seed,
                                  batch_size=self.settings.batch_size,
                                  device=self.settings.device)
        write_shard(self.folder, k, index, maps, u, time.perf_counter() - start)
        return k


def attribute_dataset(settings: Settings, method: str, folder: str | os.PathLike, *,
                      limit: int | None = None, shard_size: int = 200,
                      workers: int | None = None, address: str | None = None,
                      before_shard: Callable[[int], None] | None = None,
                      stop_after: float | None = None,
                      log: Callable[[str], None] = print) -> AttributedSet:
    """The maps of every image of the settings' split (the first ``limit``), by
    ``method`` (a row of the tables), written to ``folder`` shard by shard; finished
    shards are skipped. With ``workers`` (a local Ray of that many CPUs) or ``address``
    (an existing Ray cluster) the shards run as Ray tasks, else in this process, without
    importing Ray.

    ``stop_after`` (seconds): no shard starts later than this after the first one could;
    the shards already running finish, and the maps returned are those written so far
    (a job under a wall-time limit continues by calling this again)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size}")
    if stop_after is not None and not stop_after >= 0:
        raise ValueError(f"stop_after must be a number of seconds >= 0, got {stop_after}")
    driver = ShardWorker(settings, method, folder)  # also trains or loads the posterior once
    where = settings.data
    total = len(driver.images) if limit is None else min(limit, len(driver.images))
    plan = ShardPlan(torch.arange(total), shard_size)
    data_key = {"dataset": where.dataset, "split": where.split, "data_dir": where.data_dir,
                "images": total}
    folder = open_folder(folder, manifest_for(driver.spec, data=data_key,
                                              shard_size=shard_size,
                                              kind=settings.method.uncertainty,
                                              seed=settings.method.seed,
                                              weights=driver.weights))
    for partial in folder.glob("tmp*.tmp"):  # what a killed writer left (write_atomic)
        partial.unlink(missing_ok=True)
    done = finished_shards(folder, plan)
    todo = [k for k in range(plan.count) if k not in done]
    if done:
        log(f"{len(done)} of {plan.count} shards already written in {folder}: skipped")
    shards = {k: plan.shard(k).tolist() for k in todo}
    images = sum(len(v) for v in shards.values())
    record = InvocationRecord(folder, planned=len(todo), workers=workers, address=address)
    deadline = None if stop_after is None else time.monotonic() + stop_after

    def may_start() -> bool:
        return deadline is None or time.monotonic() < deadline

    with tqdm(total=images, unit="image",
              desc=f"{method}: {len(todo)} shards") as bar:

        def written(k: int) -> None:
            record.finished(k, len(shards[k]))
            bar.update(len(shards[k]))

        if workers is None and address is None:
            driver.before_shard = before_shard
            for k in todo:
                if not may_start():
                    break
                written(driver.run(k, shards[k]))
        elif todo and may_start():  # no Ray, and no worker loading the posterior, for
            from .distributed import run_on_ray  # a finished folder or a spent budget

            run_on_ray(ShardWorker, shards, (settings, method, str(folder), before_shard),
                       workers=workers, address=address, progress=written,
                       may_start=may_start)
    if record.row is not None:
        row = record.row
        log(f"{row['images']} images in {row['shards']} shards took {row['seconds']:.0f} s "
            f"({row['images/s']:.3g} images/s, {row['where']}); recorded in "
            f"{folder / TIMING}")
    left = len(todo) - len(record.shards)
    if left:
        log(f"no shard started after {stop_after:g} s: {left} of {plan.count} shards not "
            f"yet written; the same call continues from the {plan.count - left} written")
    return load_maps(folder)
