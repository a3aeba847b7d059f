"""The config's own resolvers, registered when ``dkd`` is imported (before any config is resolved)."""
from __future__ import annotations

from omegaconf import OmegaConf


def launcher_setting(key: str, default=None):
    """``${launcher:nodes,1}``: ``hydra.launcher.<key>`` of the launcher running this job, or ``default`` where the
    launcher has no such setting (the basic launcher). conf/trainer uses it so that under ``hydra/launcher=slurm`` the
    trainer's ``num_nodes`` and ``devices`` are the job's nodes and tasks per node, and Lightning's SLURM environment
    forms multi-node DDP from srun's tasks without trainer flags."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return default
    value = OmegaConf.select(HydraConfig.get(), f"launcher.{key}", default=None)
    return default if value is None else value


def register() -> None:
    OmegaConf.register_new_resolver("launcher", launcher_setting, replace=True)
