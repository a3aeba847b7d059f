"""Plots of a run, for people who would rather look than read."""
from __future__ import annotations

import csv
from pathlib import Path


def plot_curves(metrics_csv: Path, png: Path) -> Path | None:
    """Training losses per step and dev metrics per epoch from a Lightning CSV log, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    columns = rows[0].keys()
    losses = [c for c in columns if c in ("train/loss", "train/ce") or c.startswith("train/kd")]
    dev = [c for c in columns if c.startswith("dev")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in losses:
        points = [(int(r["step"]), float(r[name])) for r in rows if r.get(name)]
        if points:
            left.plot(*zip(*points), label=name, linewidth=1)
    left.set(xlabel="step", ylabel="loss", title="training")
    left.legend(fontsize=8)
    for name in dev:
        points = sorted({int(r["epoch"]): float(r[name]) for r in rows if r.get(name)}.items())
        if points:
            right.plot(*zip(*points), marker="o", label=name)
    right.set(xlabel="epoch", ylabel="metric", title="dev")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
