"""Studies over many runs: the sweep summary and the reproduction report (``python -m dkd.studies.report``), its
studies' design (``design``), the jobs they read (``jobs``), their verdicts (``reproduction``), tables and verdict
table (``tables``) and plots (``plots``), the paired verdict rule (``verdict``), what a job's metrics.json
says (``records``), the labels a job was scored against, read again for the recall per class (``labels``), one class
recovered for jobs run before it was counted (``python -m dkd.studies.backfill``), each teacher of a study scored on
the verdict split (``python -m dkd.studies.teacher_check``), and the speed benchmark (``python -m dkd.studies.bench``).

The top of the house: they may import the system, the strategies and the shipping tools; nothing imports them (Hydra
calls :class:`dkd.studies.report.SweepSummary` at the end of a multirun)."""
