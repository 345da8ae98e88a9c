"""The papers' experiments: the benchmarks (:mod:`.benchmarks`, each its library function
and its job), the studies of the optimization-based method (:mod:`.studies`), the
methods they compare (:mod:`.registry`), their settings (:mod:`.settings`), what a job
works with and the report it writes (:mod:`.job`), and resumable run folders
(:mod:`.runs`)."""

from .job import Job, open_job
from .settings import DataSettings, MethodSettings, PosteriorSettings, Settings

__all__ = ["DataSettings", "Job", "MethodSettings", "PosteriorSettings", "Settings",
           "open_job"]
