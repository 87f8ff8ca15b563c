#!/usr/bin/env python3
"""Tracked workflows side by side with the same canvas run natively by Celery.

    python3 benchmarks/run.py [--backends embedded,pg-redis,pg-rabbitmq] [--reps 5]
    DW_DB_NAME=dw_history python3 benchmarks/run.py --backends pg --rows history

For each backend it migrates a fresh database, starts one worker process
(prefork, concurrency 2), runs every row tracked and native in the same run
(after a warm-up), and prints min / median / max and the ratio of medians.
``DW_DB_NAME``, ``DW_BENCH_REDIS_BROKER`` and ``DW_BENCH_REDIS_RESULTS`` choose
the PostgreSQL database and the Redis databases (each run empties them).
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "example_project")]

from runtests import ensure_venv  # noqa: E402

PG_DB = os.environ.get("DW_DB_NAME", "dw_bench")  # dropped and created again by each run
# Redis databases of the broker and the result backend (purged by the runs)
REDIS_BROKER = os.environ.get("DW_BENCH_REDIS_BROKER", "redis://localhost:6379/12")
REDIS_RESULTS = os.environ.get("DW_BENCH_REDIS_RESULTS", "redis://localhost:6379/13")

BACKENDS = {
    "embedded": {"DW_DB_NAME": str(ROOT / ".var" / "bench.sqlite3")},
    # PostgreSQL with the filesystem broker: for rows that need no worker (history)
    "pg": {"DW_DATABASE": "postgres", "DW_DB_NAME": PG_DB},
    "pg-redis": {
        "DW_DATABASE": "postgres",
        "DW_DB_NAME": PG_DB,
        "CELERY_BROKER_URL": REDIS_BROKER,
        "CELERY_RESULT_BACKEND": REDIS_RESULTS,
    },
    "pg-rabbitmq": {
        "DW_DATABASE": "postgres",
        "DW_DB_NAME": PG_DB,
        "CELERY_BROKER_URL": "amqp://guest:guest@localhost:5672//",
        "CELERY_RESULT_BACKEND": REDIS_RESULTS,
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="embedded,pg-redis")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    options = parser.parse_args()
    python = ensure_venv()
    status = 0
    for name in options.backends.split(","):
        env = {
            **os.environ,
            **BACKENDS[name],
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example_project")]),
        }
        status |= subprocess.call(
            [python, "-m", "benchmarks.suite", name, str(options.reps), options.rows],
            cwd=ROOT,
            env=env,
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
