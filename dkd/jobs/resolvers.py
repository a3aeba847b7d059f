"""The config's own resolvers, registered when ``dkd`` is imported (before any config is resolved)."""
from __future__ import annotations

import os

from omegaconf import OmegaConf


def launcher_setting(key: str, default=None):
    """``${launcher:nodes,1}``: inside a SLURM job started by ``hydra/launcher=slurm``, ``hydra.launcher.<key>``;
    ``default`` anywhere else (the basic launcher, the local submitit launcher, a run without ``-m``). conf/trainer
    uses it so that a SLURM job's trainer has its ``num_nodes`` and its tasks per node as ``devices``, and Lightning's
    SLURM environment forms multi-node DDP from srun's tasks without trainer flags."""
    launcher = job_launcher("SlurmLauncher") if "SLURM_JOB_ID" in os.environ else None
    value = None if launcher is None else OmegaConf.select(launcher, key, default=None)
    return default if value is None else value


def job_cpus(default=None):
    """``${job_cpus:}``: inside a job of ``hydra/launcher=slurm`` or ``local``, ``hydra.launcher.cpus_per_task``;
    ``default`` anywhere else. ``threads`` uses it: torch would otherwise start a thread per core of the machine in
    every job, and jobs side by side (the local launcher starts them all at once) slow each other down severalfold."""
    in_a_job = os.environ.get("SUBMITIT_EXECUTOR") in ("slurm", "local")
    launcher = job_launcher("SlurmLauncher", "LocalLauncher") if in_a_job else None
    value = None if launcher is None else launcher.get("cpus_per_task")
    return default if value is None else value


def job_launcher(*kinds: str):
    """``hydra.launcher`` when Hydra runs this process with one of these launcher classes, else None."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    return launcher if str(launcher.get("_target_", "")).endswith(kinds) else None


def register() -> None:
    OmegaConf.register_new_resolver("launcher", launcher_setting, replace=True)
    OmegaConf.register_new_resolver("job_cpus", job_cpus, replace=True)
