"""DKD entry point: `python train.py [group=option ...] [key=value ...]` (see README)."""
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import dkd  # noqa: F401 - registers the ${launcher:...} resolver of conf/trainer

os.environ.setdefault("DKD_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from dkd.errors import UserError
    from dkd.run import run  # imported here so that `--help` and `--cfg` stay fast

    try:
        return run(cfg)
    except UserError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
