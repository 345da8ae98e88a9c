"""The papers' experiments: the benchmarks (:mod:`.benchmarks`), the studies of the
optimization-based method (:mod:`.studies`), the methods they compare
(:mod:`.registry`), their settings (:mod:`.settings`), the jobs that run them and write
the report (:mod:`.jobs`), and resumable run folders (:mod:`.runs`)."""

from .job import Job, open_job
from .settings import DataSettings, MethodSettings, PosteriorSettings, Settings

__all__ = ["DataSettings", "Job", "MethodSettings", "PosteriorSettings", "Settings",
           "open_job"]
