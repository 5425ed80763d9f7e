"""Runs the study's jobs as separate processes, a few at a time, each row's jobs in order; a job whose marker exists
is done and skipped, so a study that was stopped resumes where it stopped."""

import json
import logging
import os
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from .protocol import Job


logger = logging.getLogger(__name__)


class JobFailed(RuntimeError):
    """A job of the study exited with an error; its log holds the reason."""


def job_environment(threads: int) -> dict:
    """One process per core: each job's torch, OpenMP and MKL thread pools get `threads` threads, no more, so that
    parallel jobs do not oversubscribe the cores."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def run_job(job: Job, environment: dict) -> float:
    """Runs one job unless it is done; returns its wall time in seconds (0 when skipped). The wall time, when the job
    started and the machine's load then are written to `job.timing`, so that the report has them whatever run of a
    resumed study measured them."""
    if job.marker.exists():
        return 0.0
    job.log.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    with open(job.log, "w") as log:
        result = subprocess.run(job.command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    if result.returncode != 0 or not job.marker.exists():
        raise JobFailed(f"{job.name} failed (exit code {result.returncode}); see {job.log}")
    seconds = time.perf_counter() - start
    job.timing.write_text(json.dumps({"wall_s": seconds, "started": started, "load_average": load_average}) + "\n")
    return seconds


def run_rows(rows: Sequence[Sequence[Job]], parallel: int = 2, threads: int = 1) -> dict[str, float]:
    """Runs every row's jobs in order, `parallel` rows at a time; returns the wall time of each job that ran."""
    environment = job_environment(threads)
    timings: dict[str, float] = {}

    def run_row(jobs: Sequence[Job]) -> None:
        for job in jobs:
            seconds = run_job(job, environment)
            if seconds:
                timings[job.name] = seconds
                logger.info(f"{job.name}: {seconds:.0f} s")

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for future in [pool.submit(run_row, jobs) for jobs in rows]:
            future.result()
    return timings


__all__ = ["JobFailed", "job_environment", "run_job", "run_rows"]
