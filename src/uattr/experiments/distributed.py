"""Shards as Ray tasks: a local Ray that uattr starts (``workers``) or a cluster
(``address``). Ray is imported here only, when asked for.

Each worker is an actor that loads the posterior, the method and the images once
(:class:`~.attribute.ShardWorker`) and takes shard after shard from a pool; a shard's
maps go to its file on the shared folder, only its image count comes back to the driver.
An actor whose process dies is restarted and its shard retried (``max_restarts``,
``max_task_retries``): per-image generators make the retried shard's maps the same.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["run_on_ray"]

# a dead worker is restarted and its shard tried again this many times before the run fails
RETRIES = 3


def run_on_ray(shards: dict[int, list[int]], worker_args: tuple, *, workers: int | None,
               address: str | None, progress: Callable[[int], None]) -> None:
    """Run every shard ``k -> indices`` on Ray actors built from ``worker_args`` (those of
    :class:`~.attribute.ShardWorker`); ``progress(n)`` after each finished shard."""
    try:
        import ray
    except ImportError as error:
        raise ImportError("--workers and --address need Ray: `pip install 'uattr[ray]'` "
                          "(make installs it)") from error
    from ray.util import ActorPool

    from .attribute import ShardWorker

    started = not ray.is_initialized()
    if started:
        if address is not None:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = workers or cpus
        actor = ray.remote(num_cpus=1, max_restarts=RETRIES,
                           max_task_retries=RETRIES)(ShardWorker)
        pool = ActorPool([actor.remote(*worker_args, threads=1)
                          for _ in range(min(count, len(shards)) or 1)])
        for images in pool.map_unordered(lambda a, item: a.run.remote(*item),
                                         list(shards.items())):
            progress(images)
    finally:
        if started:
            ray.shutdown()
