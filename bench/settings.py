"""Django settings of the benchmarks: the example project on PostgreSQL and the machine's Redis.

BENCH_PG_NAME (default ``bench_deferred_confirmation``) names the database, created by :func:`bench.report.
fresh_database`; BENCH_REDIS_URL (default ``redis://127.0.0.1:6379/12``) is the broker.  Nothing embedded:
the figures are those of a production-shaped deployment."""

import os

os.environ.setdefault("CELERY_BROKER_URL", os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/"
                      + os.environ.get("BENCH_PG_NAME", "bench_deferred_confirmation"))
os.environ.setdefault("DEBUG", "0")

from example.settings import *  # noqa: F403
from example.settings import LOGGING

# Lifecycle log lines at WARNING: a benchmark measures the pipeline, not the console.
LOGGING["loggers"]["deferred_confirmation"]["level"] = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
