"""Experiment loggers that need more than a ``_target_``."""
from __future__ import annotations

import logging
import netrc
import os

log = logging.getLogger(__name__)


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(offline: bool | None = None, **kwargs):
    """A ``WandbLogger`` that runs offline when no API key is configured (``offline=null``), so runs never block
    on a login prompt; sync them later with ``wandb sync``."""
    from pytorch_lightning.loggers import WandbLogger

    if offline is None:
        offline = os.environ.get("WANDB_MODE") == "offline" or not has_wandb_credentials()
        if offline:
            why = "WANDB_MODE=offline" if os.environ.get("WANDB_MODE") == "offline" else "no W&B API key found"
            log.info("W&B: %s, logging offline under %s (upload later with `wandb sync`)", why, kwargs.get("save_dir"))
    return WandbLogger(offline=offline, **kwargs)


def finish_wandb() -> None:
    """Close the active W&B run, so that each job of a multirun gets its own."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
