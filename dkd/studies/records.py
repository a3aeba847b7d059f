"""What a finished job's ``metrics.json`` says, read one way by the sweep summary (:mod:`dkd.studies.report`) and the
reproduction studies (:mod:`dkd.studies.jobs`, ``tables``, ``plots``). Light on purpose: Hydra loads the sweep
summary at every multirun's start, and the studies' statistics (scipy, statsmodels) are not needed there."""
from __future__ import annotations

import statistics


def collapsed(result: dict) -> bool | None:
    """Whether a job's model predicts one class on a dev split, by the run's own count in its metrics.json (None: not
    recorded, runs before it was, or a regression)."""
    classes = result.get("predicted_classes")
    return None if not classes else min(classes.values()) == 1


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = list(values)
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
