"""``python -m dkd.jobs.cluster [overrides]``: the sbatch script that ``python train.py -m hydra/launcher=slurm
[overrides]`` would submit for each run, printed without submitting (submitit has no dry run of its own): the same
config, hydra-submitit-launcher's parameter mapping and submitit's own sbatch writer. Inside the job the trainer
follows the launcher (``${launcher:...}``, :mod:`dkd.jobs.resolvers`)."""
from __future__ import annotations

import os
import sys
from unittest import mock

from omegaconf import OmegaConf

from dkd.paths import CONF


def sbatch_script(launcher: dict, jobs: int = 1, job_name: str = "train") -> str:
    """The sbatch file submitit writes for ``launcher`` (the resolved ``hydra.launcher`` of ``hydra/launcher=slurm``),
    mapped to submitit's parameters as hydra-submitit-launcher maps them; a sweep of ``jobs`` runs is one job array
    (``--array=0-<jobs-1>%<array_parallelism>``)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit.slurm.slurm import _make_sbatch_string

    params = {k: v for k, v in launcher.items() if k not in ("_target_", "submitit_folder", "max_num_timeout")}
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {k if k in base else f"slurm_{k}": v for k, v in params.items()}
    params["name"] = job_name
    # submitit refuses to build a SLURM executor where there is no srun; the script it writes does not depend on it
    with mock.patch.object(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2)):
        executor = submitit.AutoExecutor(folder=launcher["submitit_folder"], cluster="slurm")
    executor.update_parameters(**params)
    slurm = executor._executor
    return _make_sbatch_string(command=slurm._submitit_command_str, folder=slurm.folder, map_count=jobs,
                               **slurm.parameters)


def first_of_each_sweep(overrides: list[str]) -> tuple[list[str], int]:
    """``seed=1,2,3`` → ``seed=1`` (every job of a sweep gets the same sbatch script), and the command line's number
    of jobs (the product of its sweeps' lengths)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out, jobs = [], 1
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.is_sweep_override():
            values = list(o.sweep_iterator())
            jobs *= len(values)
            out.append(f"{o.get_key_element()}={values[0]}")
        else:
            out.append(o.input_line)
    return out, jobs


def main(argv: list[str] | None = None) -> None:
    from hydra import compose, initialize_config_dir

    overrides, jobs = first_of_each_sweep(list(sys.argv[1:] if argv is None else argv))
    if not any(o.startswith("hydra/launcher=") for o in overrides):
        overrides.append("hydra/launcher=slurm")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    if not str(launcher.get("_target_", "")).endswith("SlurmLauncher"):
        raise SystemExit(f"error: hydra/launcher is {cfg.hydra.runtime.choices['hydra/launcher']}, not a SLURM "
                         f"launcher: use hydra/launcher=slurm.")
    from hydra.core.hydra_config import HydraConfig

    swept = {k: v for k, v in (cfg.hydra.sweeper.get("params") or {}).items()
             if not any(o.split("=", 1)[0].lstrip("+~") == k for o in overrides)}  # an experiment file's sweeps
    jobs *= first_of_each_sweep([f"{k}={v}" for k, v in swept.items()])[1]
    HydraConfig.instance().set_config(cfg)
    inside_a_job = {"SLURM_JOB_ID": "0", "SUBMITIT_EXECUTOR": "slurm"}  # the trainer and threads follow the launcher
    with mock.patch.dict(os.environ, inside_a_job):
        t = OmegaConf.to_container(cfg.trainer, resolve=True)
        threads = cfg.threads
    print(sbatch_script(launcher, jobs))
    print(f"# {jobs} job(s); each job's trainer: num_nodes={t['num_nodes']} devices={t['devices']} "
          f"accelerator={t['accelerator']} strategy={t.get('strategy', 'auto')} precision={t['precision']}; "
          f"threads={threads} per process")


if __name__ == "__main__":
    main()
