"""Which code and command produced a result: the git commit of the DKD checkout that ran it, so that a number in the
docs can name its commit (``metrics.json`` → ``code``), and the command line of the job (→ ``command``, ``choices``)."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from dkd.paths import ROOT


def code_version(root: Path = ROOT) -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the checkout holding this package (dirty: tracked files changed since
    that commit); None outside a git checkout (an installed wheel) or without git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "dkd", "conf", "train.py"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def invocation() -> dict:
    """The command that reruns this job (``python train.py`` and its overrides; a multirun job's own values) and the
    option chosen in each config group; empty outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hydra = HydraConfig.get()
    return {"command": " ".join(["python train.py", *map(shlex.quote, hydra.overrides.task)]),
            "choices": {k: v for k, v in hydra.runtime.choices.items() if not k.startswith("hydra")}}
