"""Work on Ray: a local Ray that uattr starts (``workers``) or a cluster (``address``).
Ray is imported here only, when asked for.

Shards of ``uattr attribute`` (:func:`run_on_ray`): each worker is an actor that loads
the posterior, the method and the images once (:class:`~.attribute.ShardWorker`) and
takes shard after shard from a pool; a shard's maps go to its file on the shared folder,
only its image count comes back to the driver.
An actor whose process dies is restarted and its shard retried (``max_restarts``,
``max_task_retries``): per-image generators make the retried shard's maps the same.

Cells of the benchmarks (:func:`compute_cells`): each missing (method, images) cell is a
task that computes it on one thread and stores it in the run folder, as one process
would; the benchmark then loads every cell and writes its table as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["compute_cells", "ray_session", "run_on_ray"]

# a dead worker is restarted and its shard tried again this many times before the run fails
RETRIES = 3


@contextmanager
def ray_session(workers: int | None, address: str | None) -> Iterator[object]:
    """The ``ray`` module, connected: to a Ray already started in this process, to the
    cluster at ``address``, or to a local Ray of ``workers`` CPUs that is shut down after."""
    try:
        import ray
    except ImportError as error:
        raise ImportError("--workers and --address need Ray: `pip install 'uattr[ray]'` "
                          "(make installs it)") from error
    started = not ray.is_initialized()
    if started:
        if address is not None:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _store_cell(folder: str, name: str, config: dict, compute: Callable) -> str:
    """A Ray task: compute one cell on one thread and store it in the run folder."""
    import torch

    from .batch_store import compute_and_store_cell
    from .runs import RunFolder

    torch.set_num_threads(1)  # one task per CPU
    compute_and_store_cell(RunFolder(folder), name, config, compute)
    return name


def compute_cells(folder: Path, cells: list, *, workers: int | None, address: str | None,
                  log: Callable[[str], None] = print) -> None:
    """Compute ``cells`` (:class:`~.common.Cell`) as Ray tasks, each storing its
    cell in ``folder``; returns when all are stored."""
    with ray_session(workers, address) as ray:
        task = ray.remote(num_cpus=1, max_retries=RETRIES)(_store_cell)
        pending = [task.remote(str(folder), cell.name, cell.config, cell.compute)
                   for cell in cells]
        log(f"{len(cells)} cells on Ray ({int(ray.cluster_resources().get('CPU', 1))} CPUs)")
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            log(f"{ray.get(done[0])}: computed on Ray")


def run_on_ray(worker: type, shards: dict[int, list[int]], worker_args: tuple, *,
               workers: int | None, address: str | None,
               progress: Callable[[int], None],
               may_start: Callable[[], bool] = lambda: True) -> None:
    """Run every shard ``k -> indices`` on Ray actors of class ``worker`` (uattr
    attribute's :class:`~.attribute.ShardWorker`, passed in so that this module imports
    none of the experiments layer) built from ``worker_args``; ``progress(k)`` after
    shard ``k`` is written. A shard is handed to a free actor only while ``may_start()``
    holds; those running then finish."""
    with ray_session(workers, address) as ray:
        from ray.util import ActorPool

        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = min(workers or cpus, len(shards)) or 1
        actor = ray.remote(num_cpus=1, max_restarts=RETRIES,
                           max_task_retries=RETRIES)(worker)
        pool = ActorPool([actor.remote(*worker_args, threads=1) for _ in range(count)])
        waiting = list(shards.items())[::-1]  # popped from the end: the split's order

        def start_next() -> None:
            if waiting and may_start():
                pool.submit(lambda a, item: a.run.remote(*item), waiting.pop())

        for _ in range(count):  # one shard per actor; each finished one frees its actor
            start_next()
        while pool.has_next():
            progress(pool.get_next_unordered())
            start_next()
