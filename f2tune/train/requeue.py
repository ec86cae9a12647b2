"""SLURM's requeue signal (`#SBATCH --signal=USR1@90`), taken as a stop like SIGTERM's and then a
requeue of the job.

Lightning's own answer to it under SLURM (`SLURMEnvironment(auto_requeue=True)`, the default there)
saves `hpc_ckpt_N.ckpt` from inside the signal handler, at whatever point of a step the signal
came, under DDP with collectives inside the handler, and requeues the job; `--resume` reads
`last.ckpt`, not that file. f2tune instead ends the step, writes `last.ckpt` as for SIGTERM, and
then asks SLURM to requeue the job (`scontrol requeue`), whose next start continues the run when
its command resumes (`f2tune fit RECIPE --auto-resume`).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import lightning.pytorch as pl
from lightning.fabric.plugins.environments import SLURMEnvironment


def requeue_signal(trainer: pl.Trainer) -> int | None:
    """The signal SLURM sends this job for a requeue, where Lightning would requeue on it."""
    environment = trainer._accelerator_connector.cluster_environment
    if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
        return environment.requeue_signal
    return None


def job_id() -> str:
    """The job as `scontrol` names it (`ARRAY_TASK` for a job array's task)."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


def requeue_job() -> tuple[bool, str]:
    """Ask SLURM to requeue this job: whether it did, and what happened, for the run's last message."""
    job = job_id()
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return False, f"job {job} not requeued: no `scontrol` on the PATH"
    done = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        return False, f"requeueing job {job} failed: {why[0] if why else f'status {done.returncode}'}"
    return True, f"job {job} requeued: its next start continues the run"
