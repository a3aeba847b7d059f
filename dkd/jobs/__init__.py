"""Jobs on a cluster: the sbatch script of ``hydra/launcher=slurm`` (``python -m dkd.jobs.cluster``), preemption and
requeue (``requeue``), and the config resolvers that make a job's trainer and threads follow its launcher
(``resolvers``).

They import only plain helpers (:mod:`dkd.errors`, :mod:`dkd.paths`); the system's trainer, loggers and run use them."""
